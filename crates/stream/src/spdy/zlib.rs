//! SPDY/3 header compression (rule 2.7): one zlib stream per direction for the whole
//! connection, primed with the SPDY dictionary, each header block ending in a sync flush.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::SpdyError;
use super::dictionary::{DICTIONARY, DICTIONARY_ID};
use crate::MAX_HEADER_BLOCK;

/// Room added to the output buffer per round.
const STEP: usize = 4096;

/// The inflating side: the client's header blocks.
pub(crate) struct Inflater {
    z: Decompress,
}

impl Inflater {
    pub(crate) fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block (all of `input`), at most [`MAX_HEADER_BLOCK`] bytes out.
    pub(crate) fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(STEP.min(MAX_HEADER_BLOCK + 1));
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < STEP {
                out.reserve(STEP);
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            let result = self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.z.total_in() - in_before) as usize;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::HeaderCompression("the zlib stream ended".into()));
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    // zlib asks for the dictionary at the first block (Z_NEED_DICT).
                    Some(DICTIONARY_ID) => {
                        self.z
                            .set_dictionary(&DICTIONARY)
                            .map_err(|e| SpdyError::HeaderCompression(e.to_string()))?;
                        continue;
                    }
                    Some(other) => {
                        return Err(SpdyError::HeaderCompression(format!(
                            "unknown preset dictionary {other:#010x}"
                        )));
                    }
                    None => return Err(SpdyError::HeaderCompression(e.to_string())),
                },
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::HeaderBlockTooLarge {
                    limit: MAX_HEADER_BLOCK,
                });
            }
            let spare = out.capacity() > out.len();
            if consumed == input.len() && spare {
                // All input taken and zlib stopped short of filling the buffer: the block is out.
                return Ok(out);
            }
            if consumed < input.len() && self.z.total_in() == in_before && out.len() == out_before && spare {
                return Err(SpdyError::HeaderCompression("zlib made no progress".into()));
            }
        }
    }
}

/// The deflating side: our header blocks.
pub(crate) struct Deflater {
    z: Compress,
    primed: bool,
}

impl Deflater {
    pub(crate) fn new() -> Self {
        Self {
            z: Compress::new(Compression::default(), true),
            primed: false,
        }
    }

    /// Compresses one header block, ending it with a sync flush.
    pub(crate) fn deflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if !self.primed {
            // Before the first deflate call, so the zlib header carries FDICT and the id.
            self.z
                .set_dictionary(&DICTIONARY)
                .map_err(|e| SpdyError::HeaderCompression(e.to_string()))?;
            self.primed = true;
        }
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(STEP);
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::HeaderCompression(e.to_string()))?;
            consumed += (self.z.total_in() - before) as usize;
            if consumed == input.len() && out.capacity() > out.len() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two consecutive header blocks of one stream, compressed by CPython's zlib (the C zlib)
    /// with `zlib.compressobj(level=9, zdict=DICTIONARY)` and `Z_SYNC_FLUSH` after each: the
    /// port-forward error and data streams' headers `port: 8080`, `requestid: 0`,
    /// `streamtype: error|data`.
    const PYTHON_BLOCKS: [&[u8]; 2] = [
        &[
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b, 0x04, 0x4e, 0xea, 0x16,
            0x06, 0x16, 0x06, 0x40, 0x9a, 0xb3, 0x08, 0x12, 0x5f, 0x99, 0xa0, 0x74, 0xcc, 0x68, 0x00, 0x4e,
            0x89, 0x25, 0x45, 0xa9, 0x89, 0xb9, 0xd0, 0xc2, 0x86, 0x35, 0x15, 0x14, 0x15, 0x00, 0x00, 0x00,
            0x00, 0xff, 0xff,
        ],
        &[
            0x22, 0x53, 0x33, 0xa8, 0xa4, 0x4a, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff,
        ],
    ];

    fn block(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut b = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            b.extend((k.len() as u32).to_be_bytes());
            b.extend(k.as_bytes());
            b.extend((v.len() as u32).to_be_bytes());
            b.extend(v.as_bytes());
        }
        b
    }

    #[test]
    fn inflates_blocks_compressed_by_c_zlib() {
        let mut inflater = Inflater::new();
        let first = inflater.inflate(PYTHON_BLOCKS[0]).unwrap();
        assert_eq!(
            first,
            block(&[("port", "8080"), ("requestid", "0"), ("streamtype", "error")])
        );
        let second = inflater.inflate(PYTHON_BLOCKS[1]).unwrap();
        assert_eq!(
            second,
            block(&[("port", "8080"), ("requestid", "0"), ("streamtype", "data")])
        );
    }

    #[test]
    fn deflated_blocks_carry_the_dictionary_id_and_round_trip() {
        let mut deflater = Deflater::new();
        let mut inflater = Inflater::new();
        let blocks = [
            block(&[]),
            block(&[("streamtype", "stdout")]),
            block(&[("a", &"x".repeat(100_000))]),
        ];
        let mut compressed = Vec::new();
        for b in &blocks {
            compressed.push(deflater.deflate(b).unwrap());
        }
        // zlib header: CMF 0x78, FLG with FDICT (0x20), then the dictionary's Adler-32.
        assert_eq!(compressed[0][0], 0x78);
        assert_ne!(compressed[0][1] & 0x20, 0);
        assert_eq!(compressed[0][2..6], DICTIONARY_ID.to_be_bytes());
        // Sync flush: every block ends with the empty stored block.
        for c in &compressed {
            assert_eq!(c[c.len() - 4..], [0x00, 0x00, 0xff, 0xff]);
        }
        for (b, c) in blocks.iter().zip(&compressed) {
            assert_eq!(&inflater.inflate(c).unwrap(), b);
        }
    }

    #[test]
    fn oversized_and_corrupt_blocks_rejected() {
        let mut deflater = Deflater::new();
        let huge = deflater.deflate(&vec![b'a'; MAX_HEADER_BLOCK + 10]).unwrap();
        assert!(huge.len() < 64 << 10, "compresses well: {}", huge.len());
        assert!(matches!(
            Inflater::new().inflate(&huge),
            Err(SpdyError::HeaderBlockTooLarge { .. })
        ));
        assert!(matches!(
            Inflater::new().inflate(&[1, 2, 3, 4]),
            Err(SpdyError::HeaderCompression(_))
        ));
        // A zlib stream that names another dictionary.
        assert!(matches!(
            Inflater::new().inflate(&[0x78, 0xf9, 0, 0, 0, 1, 0x02, 0x00]),
            Err(SpdyError::HeaderCompression(_))
        ));
    }
}
