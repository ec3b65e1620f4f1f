//! Negotiation tables: what each client sends and what it must get back.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn refused_headers(refusal: &Refusal, name: &str) -> Vec<String> {
    refusal
        .headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .collect()
}

fn ws(protocols: &[&str]) -> HeaderMap {
    let mut h = vec![
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        // RFC 6455's example key; its accept value is given there.
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    h.extend(protocols.iter().map(|p| ("sec-websocket-protocol", *p)));
    headers(&h)
}

fn spdy(versions: &[&str]) -> HeaderMap {
    let mut h = vec![("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];
    h.extend(versions.iter().map(|p| ("x-stream-protocol-version", *p)));
    headers(&h)
}

#[test]
fn websocket_exec_table() {
    let cases: &[(&[&str], Option<ChannelProtocol>, Option<&str>)] = &[
        // kubectl 1.32: v5 only.
        (
            &["v5.channel.k8s.io"],
            Some(ChannelProtocol::V5),
            Some("v5.channel.k8s.io"),
        ),
        // kube-rs: one comma-separated header, client order wins.
        (
            &["v5.channel.k8s.io, v4.channel.k8s.io"],
            Some(ChannelProtocol::V5),
            Some("v5.channel.k8s.io"),
        ),
        (
            &["v4.channel.k8s.io", "v5.channel.k8s.io"],
            Some(ChannelProtocol::V4),
            Some("v4.channel.k8s.io"),
        ),
        (
            &["v4.base64.channel.k8s.io"],
            Some(ChannelProtocol::V4Base64),
            Some("v4.base64.channel.k8s.io"),
        ),
        (
            &["base64.channel.k8s.io"],
            Some(ChannelProtocol::V1Base64),
            Some("base64.channel.k8s.io"),
        ),
        (
            &["x, channel.k8s.io"],
            Some(ChannelProtocol::V1),
            Some("channel.k8s.io"),
        ),
        // No header: channel.k8s.io and no echo.
        (&[], Some(ChannelProtocol::V1), None),
        // Unknown only, and the bearer token never selected (rule 1.21).
        (&["v3.channel.k8s.io"], None, None),
        (
            &[
                "base64url.bearer.authorization.k8s.io.dG9rZW4",
                "v4.channel.k8s.io",
            ],
            Some(ChannelProtocol::V4),
            Some("v4.channel.k8s.io"),
        ),
    ];
    for (offered, want, echo) in cases {
        let got = negotiate_exec(&ws(offered));
        match want {
            Some(p) => {
                let up = got.unwrap_or_else(|e| panic!("{offered:?}: {e}"));
                assert_eq!(up.protocol, ExecProtocol::WebSocket(*p), "{offered:?}");
                assert_eq!(
                    up.headers
                        .get("sec-websocket-protocol")
                        .map(|v| v.to_str().unwrap()),
                    *echo
                );
                assert_eq!(up.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
                assert_eq!(up.headers["connection"], "Upgrade");
                assert_eq!(up.headers["upgrade"], "websocket");
            }
            None => {
                let refusal = got.unwrap_err();
                assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{offered:?}");
            }
        }
    }
}

#[test]
fn bearer_token_is_decoded() {
    let h = ws(&["base64url.bearer.authorization.k8s.io.dG9rZW4, v5.channel.k8s.io"]);
    assert_eq!(bearer_token(&h).as_deref(), Some("token"));
    assert_eq!(bearer_token(&ws(&["v5.channel.k8s.io"])), None);
}

#[test]
fn websocket_handshake_needs_key_and_version_13() {
    let mut h = ws(&["v5.channel.k8s.io"]);
    h.remove("sec-websocket-key");
    assert_eq!(negotiate_exec(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
    let mut h = ws(&["v5.channel.k8s.io"]);
    h.insert("sec-websocket-version", HeaderValue::from_static("8"));
    let refusal = negotiate_exec(&h).unwrap_err();
    assert_eq!(refused_headers(&refusal, "sec-websocket-version"), ["13"]);
}

#[test]
fn spdy_exec_table() {
    let kubectl = [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ];
    let up = negotiate_exec(&spdy(&kubectl)).unwrap();
    assert_eq!(up.protocol, ExecProtocol::Spdy(SpdyVersion::V4));
    assert_eq!(up.headers["x-stream-protocol-version"], "v4.channel.k8s.io");
    assert_eq!(up.headers["upgrade"], "SPDY/3.1");
    assert_eq!(up.headers["connection"], "Upgrade");
    // Newer client-go puts v5 first; comma lists count like repeated headers.
    let up = negotiate_exec(&spdy(&["v5.channel.k8s.io,v4.channel.k8s.io"])).unwrap();
    assert_eq!(up.protocol, ExecProtocol::Spdy(SpdyVersion::V5));
    let up = negotiate_exec(&spdy(&["channel.k8s.io"])).unwrap();
    assert_eq!(up.protocol, ExecProtocol::Spdy(SpdyVersion::V1));

    let none = negotiate_exec(&spdy(&[])).unwrap_err();
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        none.message,
        "unable to upgrade: X-Stream-Protocol-Version is required"
    );

    let unknown = negotiate_exec(&spdy(&["v9.channel.k8s.io"])).unwrap_err();
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    let accepted = refused_headers(&unknown, "x-accepted-stream-protocol-versions");
    assert_eq!(accepted.len(), 5);
    assert_eq!(accepted[1], "v4.channel.k8s.io");

    let no_upgrade =
        negotiate_exec(&headers(&[("x-stream-protocol-version", "v4.channel.k8s.io")])).unwrap_err();
    assert_eq!(no_upgrade.status, StatusCode::BAD_REQUEST);
    assert!(
        no_upgrade
            .message
            .starts_with("unable to upgrade: missing upgrade headers in request: ")
    );
}

#[test]
fn port_forward_table() {
    // kubectl >= 1.31: tunnelled SPDY (rule 3.6).
    let up = negotiate_port_forward(&ws(&["SPDY/3.1+portforward.k8s.io"]), "").unwrap();
    assert_eq!(up.protocol, PortForwardProtocol::Tunnel);
    assert_eq!(
        up.headers["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    let refused = negotiate_port_forward(&ws(&["SPDY/3.1+other.k8s.io"]), "").unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // kube-rs: v5 and v4 offered, v4 answered (rule 3.10), ports required.
    let kube = ws(&["v5.channel.k8s.io, v4.channel.k8s.io"]);
    let up = negotiate_port_forward(&kube, "ports=80,8080").unwrap();
    assert_eq!(
        up.protocol,
        PortForwardProtocol::WebSocket {
            base64: false,
            ports: vec![80, 8080]
        }
    );
    assert_eq!(up.headers["sec-websocket-protocol"], "v4.channel.k8s.io");
    let missing = negotiate_port_forward(&kube, "").unwrap_err();
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.message, QueryError::NoPorts.to_string());
    let up = negotiate_port_forward(&ws(&["v4.base64.channel.k8s.io"]), "ports=1").unwrap();
    assert_eq!(
        up.protocol,
        PortForwardProtocol::WebSocket {
            base64: true,
            ports: vec![1]
        }
    );
    let up = negotiate_port_forward(&ws(&[]), "ports=1").unwrap();
    assert!(up.headers.get("sec-websocket-protocol").is_none());
    assert!(negotiate_port_forward(&ws(&["v5.channel.k8s.io"]), "ports=1").is_err());

    // Plain SPDY (rule 3.2).
    let up = negotiate_port_forward(&spdy(&["portforward.k8s.io"]), "").unwrap();
    assert_eq!(up.protocol, PortForwardProtocol::Spdy);
    assert_eq!(up.headers["x-stream-protocol-version"], "portforward.k8s.io");
    let refused = negotiate_port_forward(&spdy(&["v4.channel.k8s.io"]), "").unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused_headers(&refused, "x-accepted-stream-protocol-versions"),
        ["portforward.k8s.io"]
    );
}
