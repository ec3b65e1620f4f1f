//! `GET pods/{name}/log`: container logs, read from the node's CRI-format log files.
//!
//! The API server knows pods, not files: a [`LogSource`] (the node's process runtime) says
//! where each container instance's log is. Lines are served as the container wrote them;
//! `timestamps=true` prefixes each with its RFC 3339 time, `sinceSeconds`/`sinceTime` keep the
//! lines written since then (by each record's CRI timestamp), `tailLines`, `limitBytes` and
//! `previous` behave as kube-apiserver's. `tailLines` and `since` read the file from its end,
//! `limitBytes` alone from its start, only as far as needed. `follow=true` keeps streaming,
//! reading on each write the source reports, until the instance's output ends or the client
//! goes away.

use std::convert::Infallible;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::watch;

use crate::Body;
use crate::status::ApiError;

/// Where container logs are.
pub trait LogSource: Send + Sync {
    /// The log file of instance `restart` (its restart count) of `container` in pod `pod_uid`.
    fn log_path(&self, pod_uid: &str, container: &str, restart: i32) -> Option<PathBuf>;

    /// Notifications of writes to the log file at `path` while its instance's output is still
    /// being written (the file may be replaced by a new one at the same path when rotated);
    /// the sender goes away when the output ends. `None`: nothing writes it any more, so a
    /// follower stops after what is there.
    fn log_updates(&self, path: &Path) -> Option<watch::Receiver<()>> {
        let _ = path;
        None
    }
}

/// How much of the file is read at a time, from its end or its start.
const BLOCK: u64 = 64 * 1024;

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

/// One CRI record: `<time> <stream> <P|F> <text>`.
struct Record<'a> {
    time: &'a str,
    partial: bool,
    text: &'a str,
}

fn parse_record(record: &str) -> Option<Record<'_>> {
    let mut fields = record.splitn(4, ' ');
    let (Some(time), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
        return None;
    };
    Some(Record {
        time,
        partial: tag == "P",
        text: fields.next().unwrap_or(""),
    })
}

/// Turns CRI records into output lines: partial records are joined, and with `timestamps`
/// each line starts with the time of its first record; lines whose first record is older
/// than `since` are left out. Keeps an unfinished line between calls.
#[derive(Default)]
pub(crate) struct Renderer {
    timestamps: bool,
    since: Option<i64>,
    partial: Option<(String, String)>,
}

impl Renderer {
    pub(crate) fn new(timestamps: bool, since: Option<i64>) -> Renderer {
        Renderer {
            timestamps,
            since,
            partial: None,
        }
    }

    /// The lines completed by `records` (whole records, each ending with a newline).
    pub(crate) fn feed(&mut self, records: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for record in records.lines() {
            let Some(r) = parse_record(record) else { continue };
            let (start, mut line) = self
                .partial
                .take()
                .unwrap_or_else(|| (r.time.to_owned(), String::new()));
            line.push_str(r.text);
            if r.partial {
                self.partial = Some((start, line));
                continue;
            }
            if let Some(line) = self.line(&start, &line, "\n") {
                lines.push(line);
            }
        }
        lines
    }

    /// The unfinished line, if any: output that ended without a newline, given back as the
    /// container wrote it.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let (start, line) = self.partial.take()?;
        self.line(&start, &line, "")
    }

    fn line(&self, start: &str, text: &str, end: &str) -> Option<String> {
        if let Some(since) = self.since
            && crate::meta::parse_rfc3339(start).is_some_and(|t| t < since)
        {
            return None;
        }
        Some(if self.timestamps {
            format!("{start} {text}{end}")
        } else {
            format!("{text}{end}")
        })
    }
}

/// What the first read of a log gave: the output, and where a follower goes on.
struct Initial {
    out: String,
    file: Option<File>,
    /// Offset just past the last whole record read.
    offset: u64,
    renderer: Renderer,
    /// `limitBytes` was reached: nothing more is sent.
    full: bool,
    /// How many bytes of the file were read.
    read: u64,
}

/// Counts the whole final records in `region` (its first record may be cut and is skipped)
/// and says whether one is older than `since` (records are in time order, so the lines
/// before it are all older).
fn scan(region: &[u8], since: Option<i64>) -> (usize, bool) {
    let text = String::from_utf8_lossy(region);
    let mut finals = 0usize;
    for record in text.split_inclusive('\n').skip(1) {
        if !record.ends_with('\n') {
            break;
        }
        let Some(r) = parse_record(record.trim_end_matches('\n')) else {
            continue;
        };
        if r.partial {
            continue;
        }
        finals += 1;
        if since.is_some_and(|s| crate::meta::parse_rfc3339(r.time).is_some_and(|t| t < s)) {
            return (finals, true);
        }
    }
    (finals, false)
}

/// The first read: from the end for `tailLines`/`since`, from the start otherwise (only up to
/// `limitBytes` when set). Runs on the blocking pool.
fn read_initial(path: &Path, options: &LogOptions, live: bool) -> io::Result<Initial> {
    let mut renderer = Renderer::new(options.timestamps, options.since);
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Initial {
                out: String::new(),
                file: None,
                offset: 0,
                renderer,
                full: false,
                read: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let limit = options.limit_bytes.unwrap_or(usize::MAX);
    let mut read = 0u64;
    let (buf, offset) = if options.tail_lines.is_some() || options.since.is_some() {
        // Backwards, a block at a time, until the records read are enough.
        // Only the records a new block completes are looked at: each is scanned once.
        let mut start = len;
        let mut buf: Vec<u8> = Vec::new();
        let mut finals = 0usize;
        loop {
            let from = start.saturating_sub(BLOCK);
            let mut block = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
            file.seek(SeekFrom::Start(from))?;
            file.read_exact(&mut block)?;
            read += block.len() as u64;
            let completed = block.len() + buf.iter().position(|b| *b == b'\n').map_or(buf.len(), |p| p + 1);
            block.extend_from_slice(&buf);
            buf = block;
            start = from;
            if start == 0 {
                break;
            }
            let (more, older) = scan(&buf[..completed], options.since);
            finals += more;
            if older || options.tail_lines.is_some_and(|t| finals > t) {
                break;
            }
        }
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        buf.truncate(end);
        if start > 0 {
            // Drop the cut record and whatever belongs to a line that began before it: up to
            // and including the first whole final record.
            let text = String::from_utf8_lossy(&buf).into_owned();
            let mut cut = 0;
            for (i, record) in text.split_inclusive('\n').enumerate() {
                cut += record.len();
                if i > 0 && parse_record(record.trim_end_matches('\n')).is_some_and(|r| !r.partial) {
                    break;
                }
            }
            buf.drain(..cut.min(buf.len()));
        }
        (buf, start + end as u64)
    } else {
        // Forwards, until the file ends or `limitBytes` is reached.
        let mut buf = Vec::new();
        let mut carry = Vec::new();
        let (mut at, mut pos) = (0u64, 0u64);
        let mut produced = 0usize;
        let mut probe = Renderer::new(options.timestamps, options.since);
        while at < len && produced < limit {
            let mut block = vec![0u8; usize::try_from(BLOCK.min(len - at)).unwrap_or(0)];
            file.seek(SeekFrom::Start(at))?;
            file.read_exact(&mut block)?;
            read += block.len() as u64;
            at += block.len() as u64;
            carry.extend_from_slice(&block);
            let whole = carry.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let records: Vec<u8> = carry.drain(..whole).collect();
            produced += probe
                .feed(&String::from_utf8_lossy(&records))
                .iter()
                .map(String::len)
                .sum::<usize>();
            pos += whole as u64;
            buf.extend_from_slice(&records);
        }
        (buf, pos)
    };
    let mut lines = renderer.feed(&String::from_utf8_lossy(&buf));
    if !live {
        lines.extend(renderer.finish());
    }
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out: String = lines.concat();
    let full = out.len() >= limit;
    truncate_at(&mut out, limit);
    Ok(Initial {
        out,
        file: Some(file),
        offset,
        renderer,
        full,
        read,
    })
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

/// Reads what was appended to `file` since `offset`: whole records only, moving `offset`
/// past them.
fn read_more(file: &mut File, offset: &mut u64) -> io::Result<String> {
    let len = file.metadata()?.len();
    if len <= *offset {
        return Ok(String::new());
    }
    file.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    file.take(len - *offset).read_to_end(&mut buf)?;
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    buf.truncate(whole);
    *offset += whole as u64;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Follows one log file: on each update, sends the lines appended since; when the file was
/// rotated (a new file at `path`), finishes the old one first; ends with the writer.
struct Follower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    renderer: Renderer,
    /// Bytes that may still be sent (`limitBytes`).
    budget: usize,
}

impl Follower {
    /// Everything new, as output text (blocking).
    fn poll(&mut self, last: bool) -> io::Result<String> {
        let mut records = String::new();
        if let Some(file) = self.file.as_mut() {
            records.push_str(&read_more(file, &mut self.offset)?);
        }
        let mut out: String = self.renderer.feed(&records).concat();
        // A new file at the path: the old one has been read to its end above.
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let open = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if current.is_some() && current != open {
            self.file = File::open(&self.path).ok();
            self.offset = 0;
            if let Some(file) = self.file.as_mut() {
                let records = read_more(file, &mut self.offset)?;
                out.push_str(&self.renderer.feed(&records).concat());
            }
        }
        if last {
            out.extend(self.renderer.finish());
        }
        truncate_at(&mut out, self.budget);
        self.budget -= out.len();
        Ok(out)
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
    let path = source
        .as_ref()
        .and_then(|s| s.log_path(&uid, &container, instance))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no log of container \"{container}\" in pod \"{name}\" on this node"
            ))
        })?;
    // Subscribed before the first read, so no write after it goes unnoticed.
    let updates = match (&source, options.follow && !options.previous) {
        (Some(source), true) => source.log_updates(&path),
        _ => None,
    };
    let live = updates.is_some();
    let limit = options.limit_bytes.unwrap_or(usize::MAX);
    let read_path = path.clone();
    let initial = tokio::task::spawn_blocking(move || read_initial(&read_path, &options, live))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("reading the log: {e}")))?;
    tracing::debug!(path = %path.display(), bytes = initial.read, "log read");
    let Some(mut updates) = updates else {
        return Ok(text_response(Full::new(Bytes::from(initial.out)).boxed()));
    };
    // Follow: send what there is, then the lines written after it, on each write.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let budget = limit.saturating_sub(initial.out.len());
        if !initial.out.is_empty() && tx.send(Bytes::from(initial.out)).await.is_err() {
            return;
        }
        if initial.full {
            return;
        }
        let mut follower = Follower {
            path,
            file: initial.file,
            offset: initial.offset,
            renderer: initial.renderer,
            budget,
        };
        loop {
            let ended = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                changed = updates.changed() => changed.is_err(),
            };
            let Ok((chunk, back)) = tokio::task::spawn_blocking(move || {
                let chunk = follower.poll(ended);
                (chunk, follower)
            })
            .await
            else {
                return;
            };
            follower = back;
            let Ok(chunk) = chunk else { return };
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if ended || follower.budget == 0 {
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
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Turns CRI log records (`<time> <stream> <P|F> <text>`) into output lines: partial records
    /// are joined, and with `timestamps` each line starts with the time of its first record. Partial
    /// records at the end (output that ended without a newline) are the last line, without a
    /// newline, as the container wrote it.
    fn render(records: &str, timestamps: bool) -> Vec<String> {
        let mut r = Renderer::new(timestamps, None);
        let mut lines = r.feed(records);
        lines.extend(r.finish());
        lines
    }

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

    /// A log source over one file, live while `writer` is held.
    struct FakeSource {
        path: PathBuf,
        writer: Mutex<Option<watch::Sender<()>>>,
    }

    impl LogSource for FakeSource {
        fn log_path(&self, _: &str, _: &str, _: i32) -> Option<PathBuf> {
            Some(self.path.clone())
        }
        fn log_updates(&self, _: &Path) -> Option<watch::Receiver<()>> {
            self.writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(watch::Sender::subscribe)
        }
    }

    fn pod() -> Value {
        serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"containerStatuses": [{"name": "c", "containerID": "x", "restartCount": 0}]},
        })
    }

    fn source(dir: &Path, live: bool) -> Arc<FakeSource> {
        Arc::new(FakeSource {
            path: dir.join("0.log"),
            writer: Mutex::new(live.then(|| watch::Sender::new(()))),
        })
    }

    fn append(path: &Path, records: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(records.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
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
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = source(dir.path(), false);
        append(
            &src.path,
            "2026-01-01T00:00:01.000000000Z stdout F one\n\
             2026-01-01T00:00:02.500000000Z stdout P tw\n\
             2026-01-01T00:00:03.000000000Z stdout F o\n\
             2026-01-01T00:00:04.000000000Z stderr F three\n",
        );
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
        append(
            &src.path,
            &format!(
                "{} stdout F old\n{} stdout F new\n",
                at(now - 100_000),
                at(now - 1_000)
            ),
        );
        let recent = get(src.clone(), &[("sinceSeconds", "10"), ("timestamps", "true")]);
        assert_eq!(recent.await.ok(), Some(format!("{} new\n", at(now - 1_000))));
    }

    #[tokio::test]
    async fn invalid_since_options_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = source(dir.path(), false);
        append(&src.path, "2026-01-01T00:00:01.000000000Z stdout F one\n");
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

    #[test]
    fn tail_and_since_read_the_file_from_its_end() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("0.log");
        {
            let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
            for i in 0..200_000 {
                writeln!(f, "2026-01-01T00:00:00.{i:09}Z stdout F line {i}")
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            // The last line in three partial records.
            f.write_all(b"2026-01-01T00:00:01.000000000Z stdout P la\n2026-01-01T00:00:01.100000000Z stdout P s\n2026-01-01T00:00:01.200000000Z stdout F t\n")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 8 * 1024 * 1024);
        let first = |query: &[(&str, &str)]| {
            read_initial(&path, &options(query), false).unwrap_or_else(|e| panic!("{e}"))
        };
        let tail = first(&[("tailLines", "2")]);
        assert_eq!(tail.out, "line 199999\nlast\n");
        assert!(tail.read <= 2 * BLOCK, "read {} bytes for two lines", tail.read);
        let since = first(&[("sinceTime", "2026-01-01T00:00:01Z")]);
        assert_eq!(since.out, "last\n");
        assert!(since.read <= 2 * BLOCK, "read {} bytes for one line", since.read);
        let limited = first(&[("limitBytes", "7")]);
        assert_eq!(limited.out, "line 0\n");
        assert!(limited.read <= BLOCK);
        let all = first(&[]);
        assert_eq!(all.read, len);
        assert!(all.out.ends_with("line 199999\nlast\n"));
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
    async fn follow_streams_each_write_across_rotation_and_ends_with_the_writer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = source(dir.path(), true);
        let notify = || {
            if let Some(w) = src.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                w.send_modify(|()| {});
            }
        };
        append(&src.path, "2026-01-01T00:00:01.000000000Z stdout F one\n");
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
        append(&src.path, "2026-01-01T00:00:02.000000000Z stdout F two\n");
        notify();
        assert_eq!(next_chunk(&mut body).await.as_deref(), Some("two\n"));
        // Rotated: the old file's last line, then the new file's.
        append(&src.path, "2026-01-01T00:00:03.000000000Z stdout P thr\n");
        std::fs::rename(&src.path, dir.path().join("0.log.1")).unwrap_or_else(|e| panic!("{e}"));
        append(&src.path, "2026-01-01T00:00:04.000000000Z stdout F ee\n");
        notify();
        assert_eq!(next_chunk(&mut body).await.as_deref(), Some("three\n"));
        // Output that ends without a newline, then the writer goes: the stream ends with it.
        append(&src.path, "2026-01-01T00:00:05.000000000Z stdout P DONE\n");
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
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = source(dir.path(), false);
        append(&src.path, "2026-01-01T00:00:01.000000000Z stdout F bye\n");
        assert_eq!(
            get(src, &[("follow", "true")]).await.ok().as_deref(),
            Some("bye\n")
        );
    }
}
