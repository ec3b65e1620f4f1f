//! `GET pods/{name}/log`: container logs, read from the node's CRI-format log files.
//!
//! The API server knows pods, not files: a [`LogSource`] (the node's process runtime) says
//! where each container instance's log is. Lines are served as the container wrote them;
//! `timestamps=true` prefixes each with its RFC 3339 time, `tailLines`, `limitBytes` and
//! `previous` behave as kube-apiserver's, and `follow=true` keeps streaming until the instance
//! ends or the client goes away.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use crate::Body;
use crate::status::ApiError;

/// Where container logs are.
pub trait LogSource: Send + Sync {
    /// The log file of instance `restart` (its restart count) of `container` in pod `pod_uid`.
    fn log_path(&self, pod_uid: &str, container: &str, restart: i32) -> Option<PathBuf>;
}

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The options of one logs request.
#[derive(Debug, Default)]
pub(crate) struct LogOptions {
    pub(crate) container: Option<String>,
    pub(crate) previous: bool,
    pub(crate) timestamps: bool,
    pub(crate) follow: bool,
    pub(crate) tail_lines: Option<usize>,
    pub(crate) limit_bytes: Option<usize>,
}

impl LogOptions {
    pub(crate) fn from_query(query: &std::collections::HashMap<String, String>) -> LogOptions {
        let flag = |k: &str| matches!(query.get(k).map(String::as_str), Some("true" | "1"));
        LogOptions {
            container: query.get("container").filter(|c| !c.is_empty()).cloned(),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            follow: flag("follow"),
            tail_lines: query.get("tailLines").and_then(|v| v.parse().ok()),
            limit_bytes: query.get("limitBytes").and_then(|v| v.parse().ok()),
        }
    }
}

/// Turns CRI log records (`<time> <stream> <P|F> <text>`) into output lines: partial records
/// are joined, and with `timestamps` each line starts with the time of its first record. Partial
/// records at the end (output that ended without a newline) are the last line, without a
/// newline, as the container wrote it.
pub(crate) fn render(records: &str, timestamps: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut partial: Option<(String, String)> = None;
    for record in records.lines() {
        let mut fields = record.splitn(4, ' ');
        let (Some(time), Some(_stream), Some(tag), text) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let text = text.unwrap_or("");
        let (start, mut line) = partial.take().unwrap_or_else(|| (time.to_owned(), String::new()));
        line.push_str(text);
        if tag == "P" {
            partial = Some((start, line));
            continue;
        }
        lines.push(if timestamps {
            format!("{start} {line}\n")
        } else {
            format!("{line}\n")
        });
    }
    if let Some((start, line)) = partial {
        lines.push(if timestamps {
            format!("{start} {line}")
        } else {
            line
        });
    }
    lines
}

fn text_response(body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Serves the log of a container of `pod` (a stored Pod object).
pub(crate) async fn serve(
    source: Option<Arc<dyn LogSource>>,
    pod: Value,
    options: LogOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let spec_names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let container = match options.container.clone() {
        Some(c) => {
            if !spec_names.contains(&c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c
        }
        None => {
            let regular: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match regular.as_slice() {
                [only] => (*only).to_owned(),
                many => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        many.join(" ")
                    )));
                }
            }
        }
    };
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .find(|s| s["name"].as_str() == Some(container.as_str()))
        .cloned();
    let started = status
        .as_ref()
        .is_some_and(|s| s["containerID"].is_string() || s["lastState"]["terminated"].is_object());
    let restarts = status
        .as_ref()
        .and_then(|s| s["restartCount"].as_i64())
        .unwrap_or(0);
    if !started {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let instance = if options.previous {
        if restarts == 0 {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        restarts - 1
    } else {
        restarts
    };
    let instance = i32::try_from(instance).unwrap_or(0);
    let path = source
        .as_ref()
        .and_then(|s| s.log_path(&uid, &container, instance))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no log of container \"{container}\" in pod \"{name}\" on this node"
            ))
        })?;
    let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let mut lines = render(&text, options.timestamps);
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out: String = lines.concat();
    if let Some(limit) = options.limit_bytes {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    if !options.follow || options.previous {
        return Ok(text_response(Full::new(Bytes::from(out)).boxed()));
    }
    // Follow: send what there is, then new complete records as the file grows.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let timestamps = options.timestamps;
    let mut offset = text.len();
    tokio::spawn(async move {
        if tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
        let mut pending = String::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                () = tokio::time::sleep(FOLLOW_POLL) => {}
            }
            let Ok(all) = tokio::fs::read(&path).await else {
                return;
            };
            if all.len() < offset {
                // Rotated: start over at the new file's beginning.
                offset = 0;
            }
            pending.push_str(&String::from_utf8_lossy(&all[offset..]));
            offset = all.len();
            let Some(end) = pending.rfind('\n') else { continue };
            let complete: String = pending.drain(..=end).collect();
            let chunk = render(&complete, timestamps).concat();
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
    });
    let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let frames = futures_util::StreamExt::map(chunks, |b| Ok::<_, Infallible>(Frame::data(b)));
    Ok(text_response(BodyExt::boxed(StreamBody::new(frames))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records_become_lines() {
        let records = "2026-01-01T00:00:00.1Z stdout F hello\n\
                       2026-01-01T00:00:01.2Z stderr P par\n\
                       2026-01-01T00:00:01.3Z stderr F tial\n\
                       2026-01-01T00:00:02.4Z stdout F \n";
        assert_eq!(render(records, false), ["hello\n", "partial\n", "\n"]);
        assert_eq!(render(records, true)[1], "2026-01-01T00:00:01.2Z partial\n");
    }

    #[test]
    fn output_without_a_final_newline_keeps_its_last_line() {
        let records = "2026-01-01T00:00:00.1Z stdout F first\n\
                       2026-01-01T00:00:01.2Z stdout P DONE\n";
        assert_eq!(render(records, false).concat(), "first\nDONE");
        assert_eq!(render(records, true)[1], "2026-01-01T00:00:01.2Z DONE");
    }
}
