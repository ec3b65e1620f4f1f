//! Reading the CRI log files back as lines ([`CriLogReader`], the runtime's [`LogSource`]):
//! records parsed, partial records joined, the first read from the file's end or start only as
//! far as the caller needs, then following on each write across rotations until the instance's
//! output ends.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use podvisor_core::logs::{LogLine, LogReader, LogSource, LogStream};
use tokio::sync::watch;

use crate::ProcessRuntime;

/// How much of the file is read at a time, from its end or its start.
pub const BLOCK: u64 = 64 * 1024;

/// One CRI record: `<time> <stream> <P|F> <text>`.
struct Record<'a> {
    time: &'a str,
    stream: LogStream,
    partial: bool,
    text: &'a str,
}

/// Parses one record (without its newline); `None` for a line that is not one.
fn parse_record(record: &str) -> Option<Record<'_>> {
    let mut fields = record.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
        return None;
    };
    Some(Record {
        time,
        stream: if stream == "stderr" {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        },
        partial: tag == "P",
        text: fields.next().unwrap_or(""),
    })
}

/// Joins records into lines, keeping an unfinished line between calls.
#[derive(Default)]
pub(crate) struct Joiner {
    pub(crate) partial: Option<LogLine>,
}

impl Joiner {
    /// The lines finished by `records` (whole records, each ending with a newline).
    pub(crate) fn feed(&mut self, records: &[u8]) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for record in String::from_utf8_lossy(records).lines() {
            let Some(r) = parse_record(record) else { continue };
            let mut line = self.partial.take().unwrap_or_else(|| LogLine {
                time: r.time.to_owned(),
                stream: r.stream,
                text: String::new(),
                complete: false,
            });
            line.text.push_str(r.text);
            if r.partial {
                self.partial = Some(line);
            } else {
                line.complete = true;
                lines.push(line);
            }
        }
        lines
    }
}

/// Where the first line starts in `region`, a piece of the file from its end backwards whose
/// first record may be cut: just after the first final record that is not the first record.
fn first_line_start(region: &[u8]) -> Option<usize> {
    let mut at = 0;
    for (i, record) in region.split_inclusive(|b| *b == b'\n').enumerate() {
        at += record.len();
        if i > 0
            && parse_record(String::from_utf8_lossy(record).trim_end_matches('\n'))
                .is_some_and(|r| !r.partial)
        {
            return Some(at);
        }
    }
    None
}

/// The output bytes of the records appended to a log file from a point on, across rotations,
/// as an attached client wants them (a full record's text with its newline, a partial
/// record's without): how attach reaches the output of a container whose monitor writes its
/// log. Output written between a last read and a rotation is not seen.
pub(crate) struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of `file`.
    identity: Option<(u64, u64)>,
    offset: u64,
}

impl Tail {
    /// From the end of the file as it is now.
    pub(crate) fn at_end(path: PathBuf) -> Tail {
        let file = File::open(&path).ok();
        let meta = file.as_ref().and_then(|f| f.metadata().ok());
        Tail {
            identity: meta.as_ref().map(|m| (m.dev(), m.ino())),
            offset: meta.map_or(0, |m| m.len()),
            file,
            path,
        }
    }

    /// The output of the whole records appended since the last read, by stream.
    pub(crate) fn read(&mut self) -> Vec<(LogStream, Vec<u8>)> {
        let now = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let mut out = self.drain();
        if now.is_some() && now != self.identity {
            // Rotated: the new file from its start.
            self.file = File::open(&self.path).ok();
            self.identity = now;
            self.offset = 0;
            out.extend(self.drain());
        }
        out
    }

    fn drain(&mut self) -> Vec<(LogStream, Vec<u8>)> {
        let Some(file) = self.file.as_mut() else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if file
            .take((len - self.offset).min(4 * BLOCK))
            .read_to_end(&mut buf)
            .is_err()
        {
            return Vec::new();
        }
        let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        buf.truncate(whole);
        self.offset += whole as u64;
        let mut out: Vec<(LogStream, Vec<u8>)> = Vec::new();
        for record in buf.split(|b| *b == b'\n').filter(|r| !r.is_empty()) {
            let mut fields = record.splitn(4, |b| *b == b' ');
            let (Some(_), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let stream = if stream == b"stderr" {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            let mut text = fields.next().unwrap_or_default().to_vec();
            if tag != b"P" {
                text.push(b'\n');
            }
            match out.last_mut() {
                Some((s, bytes)) if *s == stream => bytes.extend_from_slice(&text),
                _ => out.push((stream, text)),
            }
        }
        out
    }
}

/// One instance's CRI log file, read as lines; see the module docs.
pub struct CriLogReader {
    path: PathBuf,
    /// Opened at the first read (a log not written yet reads as empty).
    file: Option<File>,
    /// Offset just past the last whole record read: where following goes on.
    offset: u64,
    joiner: Joiner,
    updates: Option<watch::Receiver<()>>,
    /// How many bytes of the file the first read read.
    read: u64,
}

impl CriLogReader {
    /// A reader of the log at `path`, following the writes `updates` reports (`None`: the
    /// output ended, or no following).
    pub fn new(path: PathBuf, updates: Option<watch::Receiver<()>>) -> CriLogReader {
        CriLogReader {
            path,
            file: None,
            offset: 0,
            joiner: Joiner::default(),
            updates,
            read: 0,
        }
    }

    /// How many bytes of the file the first read read.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Opens the file and says how long it is, or `None` when it is not there yet.
    fn open(&mut self) -> io::Result<Option<u64>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(self
            .file
            .as_ref()
            .map(File::metadata)
            .transpose()?
            .map(|m| m.len()))
    }

    fn read_at(&mut self, from: u64, len: u64) -> io::Result<Vec<u8>> {
        let file = self.file.as_mut().ok_or(io::ErrorKind::NotFound)?;
        let mut block = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        self.read += len;
        Ok(block)
    }

    /// The last line without a newline: held back while following, a line otherwise.
    fn unfinished(&mut self, lines: &mut Vec<LogLine>) {
        if !self.live() {
            lines.extend(self.joiner.partial.take());
        }
    }

    /// Reads what was appended since `offset`: whole records only, moving `offset` past them.
    fn read_more(&mut self) -> io::Result<Vec<u8>> {
        let offset = self.offset;
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let len = file.metadata()?.len();
        if len <= offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        file.take(len - offset).read_to_end(&mut buf)?;
        let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        buf.truncate(whole);
        self.offset += whole as u64;
        Ok(buf)
    }
}

#[async_trait::async_trait]
impl LogReader for CriLogReader {
    fn live(&self) -> bool {
        self.updates.is_some()
    }

    fn read_back(&mut self, enough: &mut dyn FnMut(&LogLine) -> bool) -> io::Result<Vec<LogLine>> {
        let Some(len) = self.open()? else {
            return Ok(Vec::new());
        };
        // `pending` is the file from `start` up to where lines were already taken; lines are
        // taken from just after a final record, so each block's records are parsed once.
        let mut start = len;
        let mut pending: Vec<u8> = Vec::new();
        let mut end: Option<u64> = None;
        let mut first_region = true;
        let mut newest_first: Vec<LogLine> = Vec::new();
        loop {
            let from = start.saturating_sub(BLOCK);
            let mut block = self.read_at(from, start - from)?;
            block.extend_from_slice(&pending);
            pending = block;
            start = from;
            if end.is_none() {
                // A record being written after the last newline is not there yet.
                match pending.iter().rposition(|b| *b == b'\n') {
                    Some(p) => {
                        pending.truncate(p + 1);
                        end = Some(start + p as u64 + 1);
                    }
                    None if start > 0 => continue,
                    None => {
                        pending.clear();
                        end = Some(0);
                    }
                }
            }
            let cut = if start == 0 {
                Some(0)
            } else {
                first_line_start(&pending)
            };
            let Some(cut) = cut else { continue };
            let mut joiner = Joiner::default();
            let mut lines = joiner.feed(&pending[cut..]);
            if first_region {
                // The records after the last final one: a line the output did not finish.
                first_region = false;
                self.joiner = joiner;
                self.unfinished(&mut lines);
            }
            pending.truncate(cut);
            let mut stop = false;
            for line in lines.into_iter().rev() {
                stop = stop || enough(&line);
                newest_first.push(line);
            }
            if stop || start == 0 {
                break;
            }
        }
        self.offset = end.unwrap_or(0);
        newest_first.reverse();
        Ok(newest_first)
    }

    fn read_forward(&mut self, enough: &mut dyn FnMut(&LogLine) -> bool) -> io::Result<Vec<LogLine>> {
        let Some(len) = self.open()? else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::new();
        let mut carry = Vec::new();
        let mut at = 0u64;
        let mut stop = false;
        while at < len && !stop {
            let block = self.read_at(at, BLOCK.min(len - at))?;
            at += block.len() as u64;
            carry.extend_from_slice(&block);
            let whole = carry.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let records: Vec<u8> = carry.drain(..whole).collect();
            self.offset += whole as u64;
            for line in self.joiner.feed(&records) {
                stop = stop || enough(&line);
                lines.push(line);
            }
        }
        self.unfinished(&mut lines);
        Ok(lines)
    }

    async fn changed(&mut self) -> bool {
        match self.updates.as_mut() {
            Some(updates) => updates.changed().await.is_ok(),
            None => false,
        }
    }

    fn read_new(&mut self, ended: bool) -> io::Result<Vec<LogLine>> {
        let records = self.read_more()?;
        let mut lines = self.joiner.feed(&records);
        // A new file at the path (rotated): the old one has been read to its end above.
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let open = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if current.is_some() && current != open {
            self.file = File::open(&self.path).ok();
            self.offset = 0;
            let records = self.read_more()?;
            lines.extend(self.joiner.feed(&records));
        }
        if ended {
            lines.extend(self.joiner.partial.take());
        }
        Ok(lines)
    }
}

impl LogSource for ProcessRuntime {
    fn open(&self, pod_uid: &str, container: &str, restart: i32, follow: bool) -> Option<Box<dyn LogReader>> {
        let path = self.log_path(pod_uid, container, restart)?;
        let updates = if follow { self.log_updates(&path) } else { None };
        Some(Box::new(CriLogReader::new(path, updates)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    fn texts(lines: &[LogLine], timestamps: bool) -> Vec<String> {
        lines.iter().map(|l| l.render(timestamps)).collect()
    }

    fn append(path: &Path, records: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(records.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }

    fn all(reader: &mut CriLogReader) -> Vec<LogLine> {
        reader
            .read_forward(&mut |_| false)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn cri_records_become_lines() {
        let mut joiner = Joiner::default();
        let lines = joiner.feed(
            b"2026-01-01T00:00:00.1Z stdout F hello\n\
              2026-01-01T00:00:01.2Z stderr P par\n\
              2026-01-01T00:00:01.3Z stderr F tial\n\
              2026-01-01T00:00:02.4Z stdout F \n",
        );
        assert_eq!(texts(&lines, false), ["hello\n", "partial\n", "\n"]);
        assert_eq!(texts(&lines, true)[1], "2026-01-01T00:00:01.2Z partial\n");
        assert_eq!(lines[1].stream, LogStream::Stderr);
    }

    #[test]
    fn output_without_a_final_newline_keeps_its_last_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("0.log");
        append(
            &path,
            "2026-01-01T00:00:00.1Z stdout F first\n2026-01-01T00:00:01.2Z stdout P DONE\n",
        );
        let lines = all(&mut CriLogReader::new(path.clone(), None));
        assert_eq!(texts(&lines, false).concat(), "first\nDONE");
        assert_eq!(texts(&lines, true)[1], "2026-01-01T00:00:01.2Z DONE");
        let back = CriLogReader::new(path, None).read_back(&mut |_| false);
        assert_eq!(back.ok(), Some(lines));
    }

    #[test]
    fn a_missing_log_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = CriLogReader::new(dir.path().join("0.log"), None);
        assert_eq!(all(&mut reader), []);
        assert_eq!(reader.read_back(&mut |_| false).ok(), Some(vec![]));
    }

    #[test]
    fn the_first_read_reads_the_file_only_as_far_as_needed() {
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
        let reader = || CriLogReader::new(path.clone(), None);
        let back = |enough: &mut dyn FnMut(&LogLine) -> bool| {
            let mut reader = reader();
            let lines = reader.read_back(enough).unwrap_or_else(|e| panic!("{e}"));
            (lines, reader.bytes_read())
        };

        let mut seen = 0;
        let (lines, read) = back(&mut |_| {
            seen += 1;
            seen >= 2
        });
        let last_two = &lines[lines.len() - 2..];
        assert_eq!(texts(last_two, false), ["line 199999\n", "last\n"]);
        assert_eq!(last_two[1].time, "2026-01-01T00:00:01.000000000Z");
        assert!(read <= 2 * BLOCK, "read {read} bytes for two lines");

        let (lines, read) = back(&mut |l| l.time.as_str() < "2026-01-01T00:00:01");
        assert_eq!(texts(&lines[lines.len() - 1..], false), ["last\n"]);
        assert!(read <= 2 * BLOCK, "read {read} bytes for one line");

        let mut first = reader();
        let lines = first
            .read_forward(&mut |_| true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&lines[..1], false), ["line 0\n"]);
        assert!(first.bytes_read() <= BLOCK);

        let mut whole = reader();
        let lines = all(&mut whole);
        assert_eq!(whole.bytes_read(), len);
        assert_eq!(lines.len(), 200_001);
        assert_eq!(back(&mut |_| false), (lines, len));
    }

    #[tokio::test]
    async fn following_reads_each_write_across_rotation_and_ends_with_the_writer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("0.log");
        let writer = watch::Sender::new(());
        append(
            &path,
            "2026-01-01T00:00:01.000000000Z stdout F one\n2026-01-01T00:00:01.500000000Z stdout P o\n",
        );
        let mut reader = CriLogReader::new(path.clone(), Some(writer.subscribe()));
        assert!(reader.live());
        // While followed, the unfinished line is held back.
        let first = reader.read_back(&mut |_| false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&first, false), ["one\n"]);
        let next = async |reader: &mut CriLogReader| {
            let ended = !reader.changed().await;
            (
                texts(&reader.read_new(ended).unwrap_or_else(|e| panic!("{e}")), false),
                ended,
            )
        };
        append(&path, "2026-01-01T00:00:02.000000000Z stdout F ne\n");
        writer.send_modify(|()| {});
        assert_eq!(next(&mut reader).await, (vec!["one\n".to_owned()], false));
        // Rotated: the old file's last line, then the new file's.
        append(&path, "2026-01-01T00:00:03.000000000Z stdout P thr\n");
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap_or_else(|e| panic!("{e}"));
        append(&path, "2026-01-01T00:00:04.000000000Z stdout F ee\n");
        writer.send_modify(|()| {});
        assert_eq!(next(&mut reader).await, (vec!["three\n".to_owned()], false));
        // Output that ends without a newline, then the writer goes: the last line comes.
        append(&path, "2026-01-01T00:00:05.000000000Z stdout P DONE\n");
        writer.send_modify(|()| {});
        assert_eq!(next(&mut reader).await, (vec![], false));
        drop(writer);
        assert_eq!(next(&mut reader).await, (vec!["DONE".to_owned()], true));
    }
}
