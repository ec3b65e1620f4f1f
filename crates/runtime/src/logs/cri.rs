//! The writing side of the CRI log format, with nothing but `core` and `alloc`: the record
//! encoding, the line splitter and the size-rotated file. Two programs compile this one file:
//! the runtime (as `logs::cri`, its files through `std`) and the container monitor
//! (`sys/monitor/program.rs`, which includes it by path and has no `std`, its files through its
//! own system calls), so the format has one home however the bytes reach the disk.
//!
//! A record is `<RFC 3339 nano UTC timestamp> <stdout|stderr> <F|P> <text>\n`; a line longer
//! than [`MAX_LINE`] becomes `P` (partial) records and a final `F` record, as containerd writes
//! them. The current file is `<restart>.log`, rotated ones `<restart>.log.1` (newest) up to
//! `<restart>.log.<max_files - 1>`. Reading the files back is `logs::read`, in the runtime only.

extern crate alloc;

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::time::Duration;

/// The longest line written as one record; longer ones are split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Log files are readable by the node's user and group only: container output can hold
/// secrets, as with the kubelet's `/var/log/pods`.
pub const LOG_MODE: u32 = 0o640;

/// Appends the time `since_epoch` (after 1970-01-01 UTC) to `out` as RFC 3339 in UTC with nine
/// fraction digits (`2006-01-02T15:04:05.000000000Z`), allocating nothing of its own.
fn push_timestamp(out: &mut Vec<u8>, since_epoch: Duration) {
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // From 1970 on: never negative.
    push_digits(out, u64::try_from(y).unwrap_or(0), 4);
    out.push(b'-');
    push_digits(out, u64::from(m), 2);
    out.push(b'-');
    push_digits(out, u64::from(d), 2);
    out.push(b'T');
    push_digits(out, rem / 3600, 2);
    out.push(b':');
    push_digits(out, rem / 60 % 60, 2);
    out.push(b':');
    push_digits(out, rem % 60, 2);
    out.push(b'.');
    push_digits(out, u64::from(since_epoch.subsec_nanos()), 9);
    out.push(b'Z');
}

/// `value` in decimal, zero-padded to `width` digits (more if it needs them).
pub fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = value;
    while n < width || v > 0 {
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    out.extend(digits[..n].iter().rev());
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

/// Appends one record to `out`, stamped `since_epoch` (after 1970-01-01 UTC).
pub fn encode(out: &mut Vec<u8>, since_epoch: Duration, stream: &str, partial: bool, text: &[u8]) {
    push_timestamp(out, since_epoch);
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// Cuts one stream's bytes into records: each line (without its newline) is a full record, a
/// line longer than [`MAX_LINE`] is cut into partial ones, and what is left at the end of the
/// stream is a partial record (`printf DONE` logs `DONE`, read back without a newline).
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    /// Feeds bytes read from the stream; `emit(partial, text)` gets each complete record.
    pub fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(bool, &[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(pos) if pos <= MAX_LINE => {
                    emit(false, &rest[..pos]);
                    start += pos + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    emit(true, &rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
    }

    /// The stream ended: what is pending becomes a partial record.
    pub fn finish(&mut self, emit: &mut dyn FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            emit(true, &self.pending);
            self.pending.clear();
        }
    }
}

/// What [`RotatingFile`] needs of the file system, paths as bytes: the runtime's is `std`'s,
/// the monitor's its own system calls.
pub trait LogFs {
    /// An open file.
    type File;
    /// What fails.
    type Error;
    /// Creates (truncates) `path` with [`LOG_MODE`], also when it existed with another mode.
    fn create(path: &[u8]) -> Result<Self::File, Self::Error>;
    /// Opens `path` to append to it (created with [`LOG_MODE`] if missing), with its size.
    fn append(path: &[u8]) -> Result<(Self::File, u64), Self::Error>;
    /// Writes all of `bytes`.
    fn write_all(file: &mut Self::File, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Removes `path`; a missing one is no error.
    fn remove(path: &[u8]) -> Result<(), Self::Error>;
    /// Renames `from` to `to`; a missing `from` is no error when `missing_ok`.
    fn rename(from: &[u8], to: &[u8], missing_ok: bool) -> Result<(), Self::Error>;
}

/// A container instance's log file, rotated by size.
pub struct RotatingFile<F: LogFs> {
    path: Vec<u8>,
    file: Option<F::File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    fs: PhantomData<F>,
}

impl<F: LogFs> RotatingFile<F> {
    /// Creates (truncates) the file, mode [`LOG_MODE`].
    pub fn create(path: Vec<u8>, max_bytes: u64, max_files: u32) -> Result<Self, F::Error> {
        let file = F::create(&path)?;
        Ok(RotatingFile {
            path,
            file: Some(file),
            size: 0,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
            fs: PhantomData,
        })
    }

    /// Opens the file to append to it (created by whoever started the instance).
    pub fn append(path: Vec<u8>, max_bytes: u64, max_files: u32) -> Result<Self, F::Error> {
        let (file, size) = F::append(&path)?;
        Ok(RotatingFile {
            path,
            file: Some(file),
            size,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
            fs: PhantomData,
        })
    }

    /// Writes records (whole ones: `bytes` is what [`encode`] appended, one or many), rotating
    /// before a record that would take the file past its size, so a file holds at most its
    /// size of whole records (a single record larger than that gets a file of its own). A
    /// batch of many records, as one read of a full pipe gives, is split between files.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), F::Error> {
        while !bytes.is_empty() {
            let room = usize::try_from(self.max_bytes.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let take = if bytes.len() <= room {
                bytes.len()
            } else {
                // The whole records that fit; into an empty file, at least the first record.
                let fits = bytes[..room].iter().rposition(|b| *b == b'\n').map(|i| i + 1);
                match fits {
                    Some(n) => n,
                    None if self.size == 0 => bytes
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(bytes.len(), |i| i + 1),
                    None => 0,
                }
            };
            if take > 0 {
                self.append_bytes(&bytes[..take])?;
                bytes = &bytes[take..];
            }
            if !bytes.is_empty() {
                self.rotate()?;
            }
        }
        Ok(())
    }

    fn append_bytes(&mut self, bytes: &[u8]) -> Result<(), F::Error> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(F::append(&self.path)?.0),
        };
        F::write_all(file, bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `<path>.<n>`.
    fn rotated(&self, n: u32) -> Vec<u8> {
        let mut name = self.path.clone();
        name.push(b'.');
        push_digits(&mut name, u64::from(n), 1);
        name
    }

    fn rotate(&mut self) -> Result<(), F::Error> {
        self.file = None;
        if self.max_files <= 1 {
            F::remove(&self.path)?;
        } else {
            let last = self.max_files - 1;
            F::remove(&self.rotated(last))?;
            for n in (1..last).rev() {
                F::rename(&self.rotated(n), &self.rotated(n + 1), true)?;
            }
            F::rename(&self.path, &self.rotated(1), false)?;
        }
        self.file = Some(F::create(&self.path)?);
        self.size = 0;
        Ok(())
    }
}
