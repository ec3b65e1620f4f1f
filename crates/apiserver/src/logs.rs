//! `GET pods/{name}/log`: container logs, as lines from the node.
//!
//! The API server knows pods, not files or their format: a [`LogSource`] (the node's process
//! runtime, which writes and parses the CRI log files) gives each container instance's log as
//! lines, and this module applies the request's options to them. `timestamps=true` prefixes
//! each line with its RFC 3339 time, `sinceSeconds`/`sinceTime` keep the lines written since
//! then, `tailLines`, `limitBytes` and `previous` behave as kube-apiserver's. `tailLines` and
//! `since` read the log from its end, `limitBytes` alone from its start, only as far as needed.
//! `follow=true` keeps streaming the lines of each write until the instance's output ends or
//! the client goes away.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
pub use podvisor_core::logs::{LogLine, LogReader, LogSource, LogStream};
use serde_json::Value;

use crate::Body;
use crate::status::ApiError;

/// The options of one logs request.
#[derive(Debug, Default)]
pub(crate) struct LogOptions {
    pub(crate) container: Option<String>,
    pub(crate) previous: bool,
    pub(crate) timestamps: bool,
    pub(crate) follow: bool,
    pub(crate) tail_lines: Option<usize>,
    pub(crate) limit_bytes: Option<usize>,
    /// Lines written before this time (milliseconds since the epoch) are left out.
    pub(crate) since: Option<i64>,
    /// Values that are not numbers or times at all: 400, as kube-apiserver's decoding says.
    pub(crate) malformed: Vec<String>,
    /// Options that are not valid (field, message): 422 Invalid, as kube-apiserver's
    /// validation of `PodLogOptions` says.
    pub(crate) invalid: Vec<(&'static str, String)>,
}

impl LogOptions {
    pub(crate) fn from_query(query: &std::collections::HashMap<String, String>) -> LogOptions {
        let flag = |k: &str| matches!(query.get(k).map(String::as_str), Some("true" | "1"));
        let mut malformed = Vec::new();
        let mut invalid = Vec::new();
        let mut number = |k: &'static str, min: i64, rule: &str| -> Option<i64> {
            let v = query.get(k)?;
            match v.parse::<i64>() {
                Ok(n) if n >= min => Some(n),
                Ok(n) => {
                    invalid.push((k, format!("Invalid value: {n}: {rule}")));
                    None
                }
                Err(_) => {
                    malformed.push(format!("{k}: \"{v}\" is not an integer"));
                    None
                }
            }
        };
        let tail_lines = number("tailLines", 0, "must be greater than or equal to 0");
        let limit_bytes = number("limitBytes", 1, "must be greater than 0");
        let since_seconds = number("sinceSeconds", 1, "must be greater than 0");
        let since_time = query.get("sinceTime").filter(|t| !t.is_empty()).and_then(|t| {
            let parsed = crate::meta::parse_rfc3339(t);
            if parsed.is_none() {
                malformed.push(format!("sinceTime: \"{t}\" is not an RFC 3339 time"));
            }
            parsed
        });
        if since_seconds.is_some() && since_time.is_some() {
            invalid.push((
                "",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            ));
        }
        let since = since_time.or_else(|| {
            since_seconds.map(|s| crate::meta::now_millis().saturating_sub(s.saturating_mul(1000)))
        });
        LogOptions {
            container: query.get("container").filter(|c| !c.is_empty()).cloned(),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            follow: flag("follow"),
            tail_lines: tail_lines.and_then(|n| usize::try_from(n).ok()),
            limit_bytes: limit_bytes.and_then(|n| usize::try_from(n).ok()),
            since,
            malformed,
            invalid,
        }
    }
}

/// What a request shows of the lines: which are left out (`since`) and how each looks.
#[derive(Clone, Copy)]
struct Shown {
    timestamps: bool,
    /// Lines written before this time (milliseconds since the epoch) are left out.
    since: Option<i64>,
}

impl Shown {
    fn older(&self, line: &LogLine) -> bool {
        self.since
            .is_some_and(|since| crate::meta::parse_rfc3339(&line.time).is_some_and(|t| t < since))
    }

    /// The output of `lines`.
    fn render(&self, lines: &[LogLine]) -> Vec<String> {
        lines
            .iter()
            .filter(|l| !self.older(l))
            .map(|l| l.render(self.timestamps))
            .collect()
    }
}

/// The first read: from the end for `tailLines`/`since`, from the start otherwise (only up to
/// `limitBytes` when set). Blocks.
fn first_read(
    reader: &mut dyn LogReader,
    shown: Shown,
    tail: Option<usize>,
    limit: usize,
) -> io::Result<String> {
    let mut lines = if tail.is_some() || shown.since.is_some() {
        let mut seen = 0usize;
        let lines = reader.read_back(&mut |line| {
            seen += 1;
            tail.is_some_and(|t| seen >= t) || shown.older(line)
        })?;
        shown.render(&lines)
    } else {
        let mut produced = 0usize;
        let lines = reader.read_forward(&mut |line| {
            produced += line.render(shown.timestamps).len();
            produced >= limit
        })?;
        shown.render(&lines)
    };
    if let Some(tail) = tail {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    Ok(lines.concat())
}

/// Cuts `out` to at most `limit` bytes, at a character boundary.
fn truncate_at(out: &mut String, limit: usize) {
    if out.len() > limit {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
}

/// 422 Invalid for `PodLogOptions`, one cause per field, as kube-apiserver answers.
fn invalid_options(name: &str, errors: &[(&'static str, String)]) -> ApiError {
    use crate::status::Cause;
    let list: Vec<String> = errors
        .iter()
        .map(|(field, message)| {
            if field.is_empty() {
                message.clone()
            } else {
                format!("{field}: {message}")
            }
        })
        .collect();
    let joined = if list.len() == 1 {
        list.concat()
    } else {
        format!("[{}]", list.join(", "))
    };
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("PodLogOptions \"{name}\" is invalid: {joined}"),
        details: Some(Box::new((String::new(), "PodLogOptions".into(), name.into()))),
        causes: errors
            .iter()
            .map(|(field, message)| {
                let (reason, text) = match message.split_once(": ") {
                    Some(("Forbidden", text)) => ("FieldValueForbidden", text.to_owned()),
                    _ => ("FieldValueInvalid", message.clone()),
                };
                Cause {
                    reason: reason.into(),
                    message: text,
                    field: (*field).into(),
                }
            })
            .collect(),
        continue_token: None,
    }
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
    if !options.malformed.is_empty() {
        return Err(ApiError::bad_request(options.malformed.join(", ")));
    }
    if !options.invalid.is_empty() {
        return Err(invalid_options(&name, &options.invalid));
    }
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
    let follow = options.follow && !options.previous;
    let mut reader = source
        .as_ref()
        .and_then(|s| s.open(&uid, &container, instance, follow))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no log of container \"{container}\" in pod \"{name}\" on this node"
            ))
        })?;
    let shown = Shown {
        timestamps: options.timestamps,
        since: options.since,
    };
    let limit = options.limit_bytes.unwrap_or(usize::MAX);
    let tail = options.tail_lines;
    let (out, mut reader) = tokio::task::spawn_blocking(move || {
        let out = first_read(reader.as_mut(), shown, tail, limit);
        (out, reader)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out = out.map_err(|e| ApiError::internal(format!("reading the log: {e}")))?;
    let full = out.len() >= limit;
    truncate_at(&mut out, limit);
    if !reader.live() {
        return Ok(text_response(Full::new(Bytes::from(out)).boxed()));
    }
    // Follow: send what there is, then the lines written after it, on each write.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut budget = limit.saturating_sub(out.len());
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
        if full {
            return;
        }
        loop {
            let ended = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                changed = reader.changed() => !changed,
            };
            let Ok((lines, back)) = tokio::task::spawn_blocking(move || {
                let lines = reader.read_new(ended);
                (lines, reader)
            })
            .await
            else {
                return;
            };
            reader = back;
            let Ok(lines) = lines else { return };
            let mut chunk = shown.render(&lines).concat();
            truncate_at(&mut chunk, budget);
            budget -= chunk.len();
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if ended || budget == 0 {
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
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::watch;

    /// A log held as lines, live while `writer` is held; its reader honours `enough` as
    /// the runtime's does, so a request that stops reading too early loses lines.
    struct FakeSource {
        lines: Arc<Mutex<Vec<LogLine>>>,
        writer: Mutex<Option<watch::Sender<()>>>,
    }

    struct FakeReader {
        lines: Arc<Mutex<Vec<LogLine>>>,
        updates: Option<watch::Receiver<()>>,
        next: usize,
    }

    impl LogSource for FakeSource {
        fn open(&self, _: &str, _: &str, _: i32, follow: bool) -> Option<Box<dyn LogReader>> {
            let updates = match follow {
                true => self
                    .writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(watch::Sender::subscribe),
                false => None,
            };
            Some(Box::new(FakeReader {
                lines: self.lines.clone(),
                updates,
                next: 0,
            }))
        }
    }

    impl FakeReader {
        /// The lines not read yet; an unfinished last one only once the output ended.
        fn take(&mut self, ended: bool) -> Vec<LogLine> {
            let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            let mut upto = lines.len();
            if self.live() && !ended && lines.last().is_some_and(|l| !l.complete) {
                upto -= 1;
            }
            let new = lines[self.next.min(upto)..upto].to_vec();
            self.next = self.next.max(upto);
            new
        }
    }

    #[async_trait::async_trait]
    impl LogReader for FakeReader {
        fn live(&self) -> bool {
            self.updates.is_some()
        }
        fn read_back(&mut self, enough: &mut dyn FnMut(&LogLine) -> bool) -> io::Result<Vec<LogLine>> {
            let mut lines = self.take(false);
            let from = lines.iter().rposition(enough).unwrap_or(0);
            Ok(lines.split_off(from))
        }
        fn read_forward(&mut self, enough: &mut dyn FnMut(&LogLine) -> bool) -> io::Result<Vec<LogLine>> {
            let mut lines = self.take(false);
            if let Some(stop) = lines.iter().position(enough) {
                lines.truncate(stop + 1);
            }
            Ok(lines)
        }
        async fn changed(&mut self) -> bool {
            let Some(updates) = self.updates.as_mut() else {
                return false;
            };
            updates.changed().await.is_ok()
        }
        fn read_new(&mut self, ended: bool) -> io::Result<Vec<LogLine>> {
            Ok(self.take(ended))
        }
    }

    fn pod() -> Value {
        serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"containerStatuses": [{"name": "c", "containerID": "x", "restartCount": 0}]},
        })
    }

    fn source(live: bool) -> Arc<FakeSource> {
        Arc::new(FakeSource {
            lines: Arc::default(),
            writer: Mutex::new(live.then(|| watch::Sender::new(()))),
        })
    }

    /// Output written at `time`: `text` ends a line with `\n`, continues it otherwise.
    fn append(source: &FakeSource, time: &str, text: &str) {
        let mut lines = source.lines.lock().unwrap_or_else(|e| e.into_inner());
        let (text, complete) = match text.strip_suffix('\n') {
            Some(t) => (t, true),
            None => (text, false),
        };
        match lines.last_mut() {
            Some(last) if !last.complete => {
                last.text.push_str(text);
                last.complete = complete;
            }
            _ => lines.push(LogLine {
                time: time.to_owned(),
                stream: LogStream::Stdout,
                text: text.to_owned(),
                complete,
            }),
        }
    }

    fn options(query: &[(&str, &str)]) -> LogOptions {
        let q = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LogOptions::from_query(&q)
    }

    async fn get(source: Arc<FakeSource>, query: &[(&str, &str)]) -> Result<String, ApiError> {
        let resp = serve(Some(source), pod(), options(query), Default::default()).await?;
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
            .await
            .unwrap_or_else(|_| panic!("the log did not end"))
            .unwrap_or_else(|e| match e {});
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }

    fn at(millis: i64) -> String {
        let base = crate::meta::rfc3339(millis);
        format!(
            "{}.{:03}000000Z",
            base.trim_end_matches('Z'),
            millis.rem_euclid(1000)
        )
    }

    #[tokio::test]
    async fn since_time_and_since_seconds_keep_the_lines_written_since() {
        let src = source(false);
        append(&src, "2026-01-01T00:00:01.000000000Z", "one\n");
        append(&src, "2026-01-01T00:00:02.500000000Z", "tw");
        append(&src, "2026-01-01T00:00:03.000000000Z", "o\n");
        append(&src, "2026-01-01T00:00:04.000000000Z", "three\n");
        let since = |t: &'static str| {
            let src = src.clone();
            async move { get(src, &[("sinceTime", t)]).await }
        };
        assert_eq!(
            since("2026-01-01T00:00:02Z").await.ok().as_deref(),
            Some("two\nthree\n")
        );
        // An offset is honoured: 01:00:04+01:00 is 00:00:04Z.
        assert_eq!(
            since("2026-01-01T01:00:04+01:00").await.ok().as_deref(),
            Some("three\n")
        );
        assert_eq!(since("2027-01-01T00:00:00Z").await.ok().as_deref(), Some(""));
        let both = get(
            src.clone(),
            &[("sinceTime", "2026-01-01T00:00:02Z"), ("tailLines", "1")],
        );
        assert_eq!(both.await.ok().as_deref(), Some("three\n"));

        let now = crate::meta::now_millis();
        append(&src, &at(now - 100_000), "old\n");
        append(&src, &at(now - 1_000), "new\n");
        let recent = get(src.clone(), &[("sinceSeconds", "10"), ("timestamps", "true")]);
        assert_eq!(recent.await.ok(), Some(format!("{} new\n", at(now - 1_000))));
    }

    #[tokio::test]
    async fn tail_limit_and_timestamps_apply_to_lines() {
        let src = source(false);
        for (i, text) in ["one\n", "two\n", "three\n", "DONE"].into_iter().enumerate() {
            append(&src, &format!("2026-01-01T00:00:0{i}.000000000Z"), text);
        }
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[], "one\ntwo\nthree\nDONE"),
            (&[("tailLines", "2")], "three\nDONE"),
            (&[("tailLines", "0")], ""),
            (&[("limitBytes", "6")], "one\ntw"),
            (
                &[("tailLines", "1"), ("timestamps", "true")],
                "2026-01-01T00:00:03.000000000Z DONE",
            ),
            (
                &[("limitBytes", "40"), ("timestamps", "true")],
                "2026-01-01T00:00:00.000000000Z one\n2026-",
            ),
        ];
        for (query, want) in cases {
            assert_eq!(
                get(src.clone(), query).await.ok().as_deref(),
                Some(want),
                "{query:?}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_since_options_are_refused_naming_the_field() {
        let src = source(false);
        append(&src, "2026-01-01T00:00:01.000000000Z", "one\n");
        for (query, code, field) in [
            (&[("sinceSeconds", "0")][..], 422, "sinceSeconds"),
            (&[("sinceSeconds", "soon")][..], 400, "sinceSeconds"),
            (&[("sinceTime", "yesterday")][..], 400, "sinceTime"),
            (
                &[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")][..],
                422,
                "sinceTime",
            ),
            (&[("tailLines", "-1")][..], 422, "tailLines"),
            (&[("limitBytes", "0")][..], 422, "limitBytes"),
        ] {
            let err = get(src.clone(), query)
                .await
                .err()
                .unwrap_or_else(|| panic!("{query:?} accepted"));
            let status = err.to_status();
            assert_eq!(status["code"], code, "{query:?}: {status}");
            assert!(
                status["message"].as_str().unwrap_or_default().contains(field),
                "{status}"
            );
            if code == 422 {
                assert_eq!(status["details"]["kind"], "PodLogOptions", "{status}");
            }
        }
    }

    /// The next chunk of a streamed body, or `None` once it ended.
    async fn next_chunk(body: &mut Body) -> Option<String> {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap_or_else(|_| panic!("no chunk within 5 s"))?;
        let frame = frame.unwrap_or_else(|e| match e {});
        Some(String::from_utf8_lossy(&frame.into_data().unwrap_or_default()).into_owned())
    }

    #[tokio::test]
    async fn follow_streams_each_write_and_ends_with_the_writer() {
        let src = source(true);
        let notify = || {
            if let Some(w) = src.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                w.send_modify(|()| {});
            }
        };
        append(&src, "2026-01-01T00:00:01.000000000Z", "one\n");
        let resp = serve(
            Some(src.clone()),
            pod(),
            options(&[("follow", "true")]),
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
        let mut body = resp.into_body();
        assert_eq!(next_chunk(&mut body).await.as_deref(), Some("one\n"));
        append(&src, "2026-01-01T00:00:02.000000000Z", "two\n");
        notify();
        assert_eq!(next_chunk(&mut body).await.as_deref(), Some("two\n"));
        // A line written in two parts is sent once it is finished.
        append(&src, "2026-01-01T00:00:03.000000000Z", "thr");
        notify();
        append(&src, "2026-01-01T00:00:04.000000000Z", "ee\n");
        notify();
        assert_eq!(next_chunk(&mut body).await.as_deref(), Some("three\n"));
        // Output that ends without a newline, then the writer goes: the stream ends with it.
        append(&src, "2026-01-01T00:00:05.000000000Z", "DONE");
        notify();
        drop(src.writer.lock().unwrap_or_else(|e| e.into_inner()).take());
        let mut rest = String::new();
        while let Some(chunk) = next_chunk(&mut body).await {
            rest.push_str(&chunk);
        }
        assert_eq!(rest, "DONE");
    }

    #[tokio::test]
    async fn follow_of_a_finished_instance_returns_what_there_is() {
        let src = source(false);
        append(&src, "2026-01-01T00:00:01.000000000Z", "bye\n");
        assert_eq!(
            get(src, &[("follow", "true")]).await.ok().as_deref(),
            Some("bye\n")
        );
    }
}
