//! SPDY/3.1 as Kubernetes uses it (rules 2.3-2.9): an in-house frame codec and a server-side
//! connection that hands the client's streams to exec or port-forward. No flow control (rule
//! 2.8), pings echoed (2.9), GOAWAY at the end (2.5); the server never opens streams.

mod conn;
mod dictionary;
pub(crate) mod frame;
pub(crate) mod zlib;

use std::io;

pub(crate) use conn::{Conn, Inbound, IncomingStream};
pub(crate) use frame::{header, rst};

/// A SPDY connection the client broke, or that failed.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// Reading or writing the connection failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// A control frame of another SPDY version than 3.
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    /// A control frame type SPDY/3.1 does not define.
    #[error("unknown control frame type {0}")]
    UnknownFrameType(u16),
    /// A control frame whose length does not fit its type.
    #[error("{kind} frame with invalid length {length}")]
    BadLength {
        /// The frame type.
        kind: &'static str,
        /// The length field.
        length: usize,
    },
    /// A header block that decompresses to more than the limit (rule 2.7).
    #[error("header block larger than {limit} bytes decompressed")]
    HeaderBlockTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The zlib stream of the header blocks is broken.
    #[error("header compression: {0}")]
    HeaderCompression(String),
    /// A decompressed header block that does not parse (rule 2.7).
    #[error("invalid header block: {0}")]
    BadHeaderBlock(&'static str),
    /// The client sent no frame for the idle timeout (its pings count).
    #[error("connection idle for {0:?}")]
    Idle(std::time::Duration),
}
