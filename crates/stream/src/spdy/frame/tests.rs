//! Frame round trips, hand-written wire bytes and rejected frames.

use super::*;

fn round_trip(frames: &[Frame]) {
    let (mut deflater, mut inflater) = (Deflater::new(), Inflater::new());
    let mut wire = Vec::new();
    for f in frames {
        encode(f, &mut deflater, &mut wire).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut reader = &wire[..];
    for f in frames {
        let got = rt
            .block_on(read_frame(&mut reader, &mut inflater))
            .unwrap()
            .unwrap();
        assert_eq!(&got, f);
    }
    assert_eq!(rt.block_on(read_frame(&mut reader, &mut inflater)).unwrap(), None);
}

fn hs(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn every_frame_round_trips() {
    round_trip(&[
        Frame::SynStream {
            stream_id: 1,
            associated_id: 0,
            priority: 7,
            fin: false,
            unidirectional: false,
            headers: hs(&[("streamtype", "error")]),
        },
        Frame::SynStream {
            stream_id: 3,
            associated_id: 1,
            priority: 0,
            fin: true,
            unidirectional: true,
            headers: hs(&[("port", "80"), ("requestid", "0"), ("streamtype", "data")]),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: vec![],
        },
        Frame::Headers {
            stream_id: 3,
            fin: true,
            headers: hs(&[("x", "a\0b")]),
        },
        Frame::Data {
            stream_id: 3,
            fin: false,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 0x7fff_ffff,
            fin: true,
            data: Bytes::new(),
        },
        Frame::RstStream {
            stream_id: 5,
            status: rst::CANCEL,
        },
        Frame::Ping { id: 0xffff_ffff },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: 0,
        },
    ]);
}

/// kubectl 1.32's first frame of a SPDY exec (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`),
/// captured on the wire: SYN_STREAM 1 with `streamtype: error`, its header block compressed by
/// Go's compress/zlib (spdystream) with the SPDY dictionary.
const KUBECTL_SYN_STREAM: &[u8] = &[
    0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x62, 0x60, 0x60, 0x60, 0x04, 0xa7, 0xb3, 0x92, 0xa2, 0xd4,
    0xc4, 0x5c, 0x68, 0x51, 0xc2, 0x9a, 0x0a, 0x0a, 0x68, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
];

#[test]
fn decodes_a_syn_stream_captured_from_kubectl() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut reader = KUBECTL_SYN_STREAM;
    let frame = rt
        .block_on(read_frame(&mut reader, &mut Inflater::new()))
        .unwrap()
        .unwrap();
    let Frame::SynStream {
        stream_id,
        fin,
        unidirectional,
        headers,
        ..
    } = frame
    else {
        panic!("{frame:?}")
    };
    assert_eq!((stream_id, fin, unidirectional), (1, false, false));
    assert_eq!(headers, hs(&[("streamtype", "error")]));
    assert!(reader.is_empty());
}

#[test]
fn hand_written_wire_bytes() {
    let mut inflater = Inflater::new();
    // PING id 1 as a SPDY/3 client writes it.
    let ping = decode(
        [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04],
        vec![0, 0, 0, 1],
        &mut inflater,
    );
    assert_eq!(ping.unwrap(), Frame::Ping { id: 1 });
    // DATA on stream 3, FIN.
    let data = decode(
        [0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02],
        b"hi".to_vec(),
        &mut inflater,
    );
    assert_eq!(
        data.unwrap(),
        Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"hi")
        }
    );
    // SETTINGS with one entry, and WINDOW_UPDATE: read and dropped (rule 2.8).
    let settings = decode(
        [0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12],
        vec![0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0],
        &mut inflater,
    );
    assert_eq!(settings.unwrap(), Frame::Ignored);
    let window = decode(
        [0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8],
        vec![0, 0, 0, 1, 0, 0, 1, 0],
        &mut inflater,
    );
    assert_eq!(window.unwrap(), Frame::Ignored);
    // Our GOAWAY bytes exactly.
    let mut out = Vec::new();
    encode(
        &Frame::GoAway {
            last_good_stream_id: 9,
            status: 0,
        },
        &mut Deflater::new(),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        [
            0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 9, 0, 0, 0, 0
        ]
    );
}

#[test]
fn broken_frames_are_errors() {
    let mut inflater = Inflater::new();
    let mut d = |head: [u8; 8], body: Vec<u8>| decode(head, body, &mut inflater).unwrap_err();
    assert!(matches!(
        d([0x80, 0x02, 0, 6, 0, 0, 0, 4], vec![0; 4]),
        SpdyError::UnsupportedVersion(2)
    ));
    assert!(matches!(
        d([0x80, 0x03, 0, 10, 0, 0, 0, 0], vec![]),
        SpdyError::UnknownFrameType(10)
    ));
    assert!(matches!(
        d([0x80, 0x03, 0, 6, 0, 0, 0, 3], vec![0; 3]),
        SpdyError::BadLength { kind: "PING", .. }
    ));
    assert!(matches!(
        d([0x80, 0x03, 0, 3, 0, 0, 0, 4], vec![0; 4]),
        SpdyError::BadLength { .. }
    ));
    assert!(matches!(
        d([0x80, 0x03, 0, 1, 0, 0, 0, 9], vec![0; 9]),
        SpdyError::BadLength { .. }
    ));
    assert!(matches!(
        d([0x80, 0x03, 0, 4, 0, 0, 0, 8], vec![0, 0, 0, 9, 0, 0, 0, 0]),
        SpdyError::BadLength { .. }
    ));
    // A SYN_STREAM whose block is not zlib.
    assert!(matches!(
        d([0x80, 0x03, 0, 1, 0, 0, 0, 12], vec![0; 12]),
        SpdyError::HeaderCompression(_)
    ));
}

#[test]
fn header_blocks_parsed_strictly() {
    assert_eq!(
        parse_block(&block(&hs(&[("a", "1"), ("b", "")]))).unwrap(),
        hs(&[("a", "1"), ("b", "")])
    );
    let bad = |pairs: &[(&str, &str)]| parse_block(&block(&hs(pairs))).unwrap_err();
    assert!(matches!(bad(&[("Port", "1")]), SpdyError::BadHeaderBlock(_)));
    assert!(matches!(
        bad(&[("a", "1"), ("a", "2")]),
        SpdyError::BadHeaderBlock(_)
    ));
    assert!(matches!(bad(&[("", "1")]), SpdyError::BadHeaderBlock(_)));
    let mut trailing = block(&hs(&[("a", "1")]));
    trailing.push(0);
    assert!(parse_block(&trailing).is_err());
    // A count far beyond the bytes present fails without allocating for it.
    assert!(parse_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(parse_block(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert_eq!(header(&hs(&[("streamtype", "data")]), "StreamType"), Some("data"));
}

#[test]
fn eof_inside_a_frame_is_an_error() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut inflater = Inflater::new();
    let mut partial: &[u8] = &[0x80, 0x03, 0x00];
    assert!(rt.block_on(read_frame(&mut partial, &mut inflater)).is_err());
    let mut short_body: &[u8] = &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0];
    assert!(rt.block_on(read_frame(&mut short_body, &mut inflater)).is_err());
}
