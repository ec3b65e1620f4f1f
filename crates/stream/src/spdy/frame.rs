//! SPDY/3 frames (rule 2.6) and header blocks (rule 2.7): parsing and serializing.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::SpdyError;
use super::zlib::{Deflater, Inflater};

/// Header names and values of a block, names lowercase, several values NUL-joined.
pub(crate) type Headers = Vec<(String, String)>;

/// FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub(crate) const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL on SYN_STREAM.
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes (rule 2.6).
pub(crate) mod rst {
    /// The peer broke the protocol on this stream.
    pub(crate) const PROTOCOL_ERROR: u32 = 1;
    /// A frame for a stream that is not open.
    pub(crate) const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing (too many open).
    pub(crate) const REFUSED_STREAM: u32 = 3;
    /// The stream is not wanted.
    pub(crate) const CANCEL: u32 = 5;
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const NOOP: u16 = 5;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// One frame, as far as Kubernetes' use of SPDY needs its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_id: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// SETTINGS, WINDOW_UPDATE and NOOP: read and dropped (rule 2.8).
    Ignored,
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
}

/// Reads the next frame; `None` at a clean end of the connection (between frames).
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    inflater: &mut Inflater,
) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        let n = reader.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
            };
        }
        got += n;
    }
    // The 24-bit length bounds every frame to 16 MiB - 1 (crate::MAX_FRAME_PAYLOAD).
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    decode(head, body, inflater).map(Some)
}

/// Decodes one frame from its 8-byte head and its body.
pub(crate) fn decode(head: [u8; 8], body: Vec<u8>, inflater: &mut Inflater) -> Result<Frame, SpdyError> {
    let flags = head[4];
    let fin = flags & FLAG_FIN != 0;
    if head[0] & 0x80 == 0 {
        let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        return Ok(Frame::Data {
            stream_id,
            fin,
            data: Bytes::from(body),
        });
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != 3 {
        return Err(SpdyError::UnsupportedVersion(version));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let word = |at: usize| {
        body.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let exact = |name: &'static str, len: usize| {
        if body.len() == len {
            Ok(())
        } else {
            Err(SpdyError::BadLength {
                kind: name,
                length: body.len(),
            })
        }
    };
    let at_least = |name: &'static str, len: usize| {
        if body.len() >= len {
            Ok(())
        } else {
            Err(SpdyError::BadLength {
                kind: name,
                length: body.len(),
            })
        }
    };
    let id31 = |at: usize| word(at).map(|w| w & 0x7fff_ffff).unwrap_or(0);
    Ok(match kind {
        SYN_STREAM => {
            at_least("SYN_STREAM", 10)?;
            Frame::SynStream {
                stream_id: id31(0),
                associated_id: id31(4),
                priority: body[8] >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: parse_block(&inflater.inflate(&body[10..])?)?,
            }
        }
        SYN_REPLY => {
            at_least("SYN_REPLY", 4)?;
            Frame::SynReply {
                stream_id: id31(0),
                fin,
                headers: parse_block(&inflater.inflate(&body[4..])?)?,
            }
        }
        HEADERS => {
            at_least("HEADERS", 4)?;
            Frame::Headers {
                stream_id: id31(0),
                fin,
                headers: parse_block(&inflater.inflate(&body[4..])?)?,
            }
        }
        RST_STREAM => {
            exact("RST_STREAM", 8)?;
            Frame::RstStream {
                stream_id: id31(0),
                status: word(4).unwrap_or(0),
            }
        }
        SETTINGS => {
            at_least("SETTINGS", 4)?;
            let count = word(0).unwrap_or(0) as usize;
            if count.checked_mul(8).and_then(|n| n.checked_add(4)) != Some(body.len()) {
                return Err(SpdyError::BadLength {
                    kind: "SETTINGS",
                    length: body.len(),
                });
            }
            Frame::Ignored
        }
        WINDOW_UPDATE => {
            exact("WINDOW_UPDATE", 8)?;
            Frame::Ignored
        }
        NOOP => Frame::Ignored,
        PING => {
            exact("PING", 4)?;
            Frame::Ping {
                id: word(0).unwrap_or(0),
            }
        }
        GOAWAY => {
            exact("GOAWAY", 8)?;
            Frame::GoAway {
                last_good_stream_id: id31(0),
                status: word(4).unwrap_or(0),
            }
        }
        other => return Err(SpdyError::UnknownFrameType(other)),
    })
}

/// Serializes one frame (never [`Frame::Ignored`], which is only read).
pub(crate) fn encode(frame: &Frame, deflater: &mut Deflater, out: &mut Vec<u8>) -> Result<(), SpdyError> {
    let control = |out: &mut Vec<u8>, kind: u16, flags: u8, body: &[u8]| {
        out.extend_from_slice(&(0x8003u16).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(body);
    };
    let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data { stream_id, fin, data } => {
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.push(fin_flag(*fin));
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
        }
        Frame::SynStream {
            stream_id,
            associated_id,
            priority,
            fin,
            unidirectional,
            headers,
        } => {
            let mut body = stream_id.to_be_bytes().to_vec();
            body.extend_from_slice(&associated_id.to_be_bytes());
            body.extend_from_slice(&[priority << 5, 0]);
            body.extend(deflater.deflate(&block(headers))?);
            let flags = fin_flag(*fin) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
            control(out, SYN_STREAM, flags, &body);
        }
        Frame::SynReply {
            stream_id,
            fin,
            headers,
        }
        | Frame::Headers {
            stream_id,
            fin,
            headers,
        } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) {
                SYN_REPLY
            } else {
                HEADERS
            };
            let mut body = stream_id.to_be_bytes().to_vec();
            body.extend(deflater.deflate(&block(headers))?);
            control(out, kind, fin_flag(*fin), &body);
        }
        Frame::RstStream { stream_id, status } => {
            let body = [stream_id.to_be_bytes(), status.to_be_bytes()].concat();
            control(out, RST_STREAM, 0, &body);
        }
        Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            let body = [last_good_stream_id.to_be_bytes(), status.to_be_bytes()].concat();
            control(out, GOAWAY, 0, &body);
        }
        Frame::Ignored => {}
    }
    Ok(())
}

/// The uncompressed header block of `headers` (rule 2.7).
fn block(headers: &Headers) -> Vec<u8> {
    let mut b = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        b.extend_from_slice(&(name.len() as u32).to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&(value.len() as u32).to_be_bytes());
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// Parses a decompressed header block, as strictly as spdystream: lowercase, non-empty,
/// distinct names; the block used up exactly.
fn parse_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let s = b.get(at..at + n).ok_or(SpdyError::BadHeaderBlock("truncated"))?;
        at += n;
        Ok(s)
    };
    let len = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let count = len(take(4)?);
    let mut headers: Headers = Vec::new();
    for _ in 0..count {
        let name_len = len(take(4)?);
        let name =
            std::str::from_utf8(take(name_len)?).map_err(|_| SpdyError::BadHeaderBlock("name not UTF-8"))?;
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(SpdyError::BadHeaderBlock("empty or uppercase name"));
        }
        if headers.iter().any(|(n, _)| n == name) {
            return Err(SpdyError::BadHeaderBlock("duplicate name"));
        }
        let name = name.to_owned();
        let value_len = len(take(4)?);
        let value = String::from_utf8(take(value_len)?.to_vec())
            .map_err(|_| SpdyError::BadHeaderBlock("value not UTF-8"))?;
        headers.push((name, value));
    }
    if at != b.len() {
        return Err(SpdyError::BadHeaderBlock("trailing bytes"));
    }
    Ok(headers)
}

/// The value of header `name` (names are lowercase on the wire; compared case-insensitively).
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests;
