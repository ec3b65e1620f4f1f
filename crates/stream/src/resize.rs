//! Terminal resizes as kubectl sends them (rule 1.10): a stream of JSON objects
//! `{"Width":w,"Height":h}`, not one per message.

use podvisor_core::streams::TerminalSize;
use serde::Deserialize;

/// The most bytes kept while waiting for the end of one resize object.
const MAX_PENDING: usize = 4096;

/// A resize stream the client broke.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    /// Not a JSON object with a `Width` and a `Height` in 0..65535.
    #[error("invalid terminal size: {0}")]
    Invalid(#[source] serde_json::Error),
    /// An object that does not end within 4096 bytes.
    #[error("terminal size message longer than {MAX_PENDING} bytes")]
    TooLong,
}

/// The JSON of client-go's `TerminalSize`: capitalised names (the Go struct has no tags; Go
/// matches names case-insensitively, so lowercase is taken too).
#[derive(Deserialize)]
struct WireSize {
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

/// Turns the bytes of a resize stream, however they are split into messages, into sizes.
#[derive(Debug, Default)]
pub struct ResizeParser {
    pending: Vec<u8>,
}

impl ResizeParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the stream and returns every size completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<TerminalSize>, ResizeError> {
        self.pending.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        {
            let mut objects = serde_json::Deserializer::from_slice(&self.pending).into_iter::<WireSize>();
            loop {
                match objects.next() {
                    Some(Ok(size)) => {
                        consumed = objects.byte_offset();
                        sizes.push(TerminalSize {
                            width: size.width,
                            height: size.height,
                        });
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(ResizeError::Invalid(e)),
                    None => {
                        consumed = objects.byte_offset();
                        break;
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_PENDING {
            return Err(ResizeError::TooLong);
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(width: u16, height: u16) -> TerminalSize {
        TerminalSize { width, height }
    }

    #[test]
    fn objects_split_and_joined_across_messages() {
        let mut p = ResizeParser::new();
        assert_eq!(p.push(b"{\"Width\":80,\"Height\":24}\n").unwrap(), [size(80, 24)]);
        assert_eq!(p.push(b"{\"Width\":100,").unwrap(), []);
        assert_eq!(
            p.push(b"\"Height\":40}\n{\"width\":1,\"height\":2}\n{\"Wid")
                .unwrap(),
            [size(100, 40), size(1, 2)]
        );
        assert_eq!(p.push(b"th\":3,\"Height\":4}").unwrap(), [size(3, 4)]);
        assert!(p.pending.is_empty());
    }

    #[test]
    fn garbage_and_out_of_range_rejected() {
        assert!(matches!(
            ResizeParser::new().push(b"\"text\""),
            Err(ResizeError::Invalid(_))
        ));
        assert!(matches!(
            ResizeParser::new().push(b"{\"Width\":70000,\"Height\":1}"),
            Err(ResizeError::Invalid(_))
        ));
        assert!(matches!(
            ResizeParser::new().push(b"{\"Width\":1}"),
            Err(ResizeError::Invalid(_))
        ));
        let mut p = ResizeParser::new();
        let mut long = b"{\"Width\":1,\"x\":\"".to_vec();
        long.resize(5000, b'a');
        assert!(matches!(p.push(&long), Err(ResizeError::TooLong)));
    }
}
