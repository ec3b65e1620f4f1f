//! Container logs as lines: the seam between whatever keeps container logs (the process
//! runtime, the one crate that writes and reads the CRI log format) and the API server's
//! `pods/log`, which applies a request's options (since, tail, limit, timestamps, follow) to
//! lines.

use std::io;

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a container's output, its parts joined (a long line is written in several
/// records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When its first part was written: RFC 3339 with nanoseconds, as the log holds it.
    pub time: String,
    /// The stream of its first part.
    pub stream: LogStream,
    /// The text, without its newline.
    pub text: String,
    /// The line ended with a newline; `false` for output that ended without one (given back
    /// as the container wrote it).
    pub complete: bool,
}

impl LogLine {
    /// The line as the container wrote it (with its newline, if it had one), after its time
    /// and a space with `timestamps` (`kubectl logs --timestamps`).
    pub fn render(&self, timestamps: bool) -> String {
        let end = if self.complete { "\n" } else { "" };
        if timestamps {
            format!("{} {}{end}", self.time, self.text)
        } else {
            format!("{}{end}", self.text)
        }
    }
}

/// Where container logs are.
pub trait LogSource: Send + Sync {
    /// A reader of the log of instance `restart` (its restart count) of `container` in pod
    /// `pod_uid`, or `None` if this node has no log of it. With `follow`, the reader is
    /// subscribed to the instance's writes before it reads anything, so no write after its
    /// first read goes unnoticed.
    fn open(&self, pod_uid: &str, container: &str, restart: i32, follow: bool) -> Option<Box<dyn LogReader>>;
}

/// One container instance's log, read as lines. The reading methods block (call them off the
/// async workers); only [`changed`](Self::changed) waits.
#[async_trait::async_trait]
pub trait LogReader: Send {
    /// Whether the instance's output is still being written and this reader follows it: then
    /// a last line without a newline is held back until it is finished or the output ends.
    fn live(&self) -> bool;

    /// The first read, from the end: lines are handed to `enough`, newest first, and reading
    /// stops at the first line it accepts (or at the log's start). Returns every line read,
    /// oldest first; the log is read from its end only as far as needed.
    fn read_back(&mut self, enough: &mut dyn FnMut(&LogLine) -> bool) -> io::Result<Vec<LogLine>>;

    /// The first read, from the start: lines are handed to `enough` in order, and reading
    /// stops once it accepts one. Returns every line read.
    fn read_forward(&mut self, enough: &mut dyn FnMut(&LogLine) -> bool) -> io::Result<Vec<LogLine>>;

    /// Waits for the next write: `false` once the output ended (at once when not
    /// [`live`](Self::live)).
    async fn changed(&mut self) -> bool;

    /// The lines finished since the last read (across a rotation of the log); with `ended`,
    /// also the last line without a newline.
    fn read_new(&mut self, ended: bool) -> io::Result<Vec<LogLine>>;
}
