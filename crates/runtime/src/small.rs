//! Reading the small files of `/proc`, cgroupfs and the runtime's records with one `read`.
//!
//! `fs::read_to_string` asks `statx` for the size first. `/proc` and cgroup files say 0, so it
//! starts with a small buffer and reads again as it grows: six reads for a 300-byte
//! `/proc/<pid>/stat`, and one more to see the end. A container's restart reads several of
//! these on its way (the main process's and its monitor's start times, the cgroup's processes,
//! the OOM count, the exit record), and the metrics scraper three per container every 15 s.
//! Here a file is read into a buffer on the stack with one `read`: a `/proc` or cgroup file is
//! generated whole at the first read, and a regular file returns all it has up to the buffer's
//! size, so a read that returns less than the buffer holds the whole file. A file that fills
//! the buffer is read on to its end.
//!
//! A file in a directory the caller holds open ([`parse_in`]) is opened with one step from
//! it: the usage scrape reads its cgroup files so.

use std::ffi::CStr;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The size of the buffer on the stack.
const BUF: usize = 4096;

/// Parses the text of the small file at `path`; `None` when it cannot be read, is not UTF-8,
/// or `parse` says so.
pub(crate) fn parse<T>(path: &Path, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    parse_file(fs::File::open(path).ok()?, parse)
}

/// Parses the text of the small file `name` in the directory `dir` (a descriptor, `O_PATH` is
/// enough), as [`parse`] does.
pub(crate) fn parse_in<T>(dir: &OwnedFd, name: &CStr, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    parse_file(
        fs::File::from(crate::sys::open_in(dir, name, libc::O_RDONLY).ok()?),
        parse,
    )
}

fn parse_file<T>(mut file: fs::File, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let mut buf = [0u8; BUF];
    let len = file.read(&mut buf).ok()?;
    if len == buf.len() {
        let mut all = buf.to_vec();
        file.read_to_end(&mut all).ok()?;
        return parse(std::str::from_utf8(&all).ok()?);
    }
    parse(std::str::from_utf8(&buf[..len]).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_whole_whether_or_not_it_fits_the_buffer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for len in [0, 1, BUF - 1, BUF, BUF + 1, 3 * BUF] {
            let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let path = dir.path().join(format!("f{len}"));
            fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                parse(&path, |t| Some(t.to_owned())).as_deref(),
                Some(text.as_str()),
                "{len} bytes"
            );
        }
        assert_eq!(parse(&dir.path().join("missing"), |t| Some(t.len())), None);
        fs::write(dir.path().join("bad"), [0xff, 0xfe]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parse(&dir.path().join("bad"), |t| Some(t.len())),
            None,
            "not UTF-8"
        );
    }

    #[test]
    fn a_proc_file_is_read_whole() {
        let pid = std::process::id();
        let text = parse(Path::new(&format!("/proc/{pid}/stat")), |t| Some(t.to_owned()))
            .unwrap_or_else(|| panic!("no /proc/{pid}/stat"));
        assert!(text.starts_with(&format!("{pid} (")), "{text}");
        assert!(text.ends_with('\n'), "the line is whole: {text}");
    }
}
