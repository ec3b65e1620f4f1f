//! Which protocol a streaming request speaks, from its headers alone, and the headers of the
//! `101 Switching Protocols` that accepts it (rules 1.4-1.7, 1.21, 2.1-2.2, 3.1, 3.6, 3.9,
//! 3.10); or why not, as a status code and message for a Status answer.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::query::{QueryError, parse_ports};

/// The channel protocols of exec and attach over WebSocket (rule 1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelProtocol {
    /// `v5.channel.k8s.io`: binary, JSON status, CLOSE half-closes stdin.
    V5,
    /// `v4.channel.k8s.io`: binary, JSON status.
    V4,
    /// `v4.base64.channel.k8s.io`: text frames in base64, JSON status.
    V4Base64,
    /// `channel.k8s.io`, or no subprotocol at all: binary, plain-text status on failure only.
    V1,
    /// `base64.channel.k8s.io`: text frames in base64, plain-text status on failure only.
    V1Base64,
}

impl ChannelProtocol {
    /// Every protocol this crate serves, with its wire name.
    pub const ALL: [(&'static str, Self); 5] = [
        ("v5.channel.k8s.io", Self::V5),
        ("v4.channel.k8s.io", Self::V4),
        ("v4.base64.channel.k8s.io", Self::V4Base64),
        ("channel.k8s.io", Self::V1),
        ("base64.channel.k8s.io", Self::V1Base64),
    ];

    pub(crate) fn base64(self) -> bool {
        matches!(self, Self::V4Base64 | Self::V1Base64)
    }

    pub(crate) fn json_status(self) -> bool {
        matches!(self, Self::V5 | Self::V4 | Self::V4Base64)
    }
}

/// The exec protocol versions over SPDY (rule 2.1), `X-Stream-Protocol-Version` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpdyVersion {
    /// `channel.k8s.io`.
    V1,
    /// `v2.channel.k8s.io`.
    V2,
    /// `v3.channel.k8s.io`: adds the resize stream.
    V3,
    /// `v4.channel.k8s.io`: the status is JSON.
    V4,
    /// `v5.channel.k8s.io`: on SPDY exactly v4 (rule 2.1). kubectl 1.32 already offers it first
    /// (seen on the wire; the spec marks it newer), so it is what kubectl gets.
    V5,
}

impl SpdyVersion {
    /// Every version served, in the server's order of preference, with its wire name.
    pub const ALL: [(&'static str, Self); 5] = [
        ("v5.channel.k8s.io", Self::V5),
        ("v4.channel.k8s.io", Self::V4),
        ("v3.channel.k8s.io", Self::V3),
        ("v2.channel.k8s.io", Self::V2),
        ("channel.k8s.io", Self::V1),
    ];
}

/// What serves exec or attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecProtocol {
    /// WebSocket channels (section 1).
    WebSocket(ChannelProtocol),
    /// SPDY/3.1 (section 2).
    Spdy(SpdyVersion),
}

/// What serves port-forward (rule 3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortForwardProtocol {
    /// SPDY/3.1 `portforward.k8s.io` tunnelled in WebSocket binary messages (rule 3.6).
    Tunnel,
    /// Plain SPDY/3.1 `portforward.k8s.io` (rule 3.2).
    Spdy,
    /// The WebSocket channel protocol (rule 3.10) for these ports, from the query.
    WebSocket {
        /// `v4.base64.channel.k8s.io`: text frames in base64.
        base64: bool,
        /// The ports, in query order: port `i` is channels `2i` and `2i+1`.
        ports: Vec<u16>,
    },
}

/// An accepted upgrade: the protocol to serve, and the headers of the `101 Switching
/// Protocols` answer (`Upgrade`, `Connection`, and `Sec-WebSocket-Accept` and the chosen
/// `Sec-WebSocket-Protocol`, or `X-Stream-Protocol-Version`).
#[derive(Clone, Debug)]
pub struct Upgrade<P> {
    /// What to pass to the serve function.
    pub protocol: P,
    /// The 101's headers.
    pub headers: HeaderMap,
}

/// A refused upgrade: answer with `status`, a Status whose `message` is `message`, and
/// `headers` (e.g. `X-Accepted-Stream-Protocol-Versions`, rule 2.2). Any non-101 makes kubectl
/// fall back from WebSocket to SPDY (rules 1.20, 3.9).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// 400 or 403.
    pub status: StatusCode,
    /// The Status's message.
    pub message: String,
    /// Extra response headers, in order (a name may repeat).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }
}

const STREAM_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("x-stream-protocol-version");
const ACCEPTED_STREAM_PROTOCOL_VERSIONS: HeaderName =
    HeaderName::from_static("x-accepted-stream-protocol-versions");
const BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";
const PORT_FORWARD_SPDY: &str = "portforward.k8s.io";
const TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// Negotiates exec or attach: WebSocket when the request is one (rule 1.4), else SPDY/3.1.
pub fn negotiate_exec(headers: &HeaderMap) -> Result<Upgrade<ExecProtocol>, Refusal> {
    if is_websocket(headers) {
        let offered = offered_subprotocols(headers);
        if offered.is_empty() {
            // Rule 1.5: no subprotocol is channel.k8s.io, and nothing is echoed.
            return websocket_upgrade(headers, None).map(|h| Upgrade {
                protocol: ExecProtocol::WebSocket(ChannelProtocol::V1),
                headers: h,
            });
        }
        // Rule 1.6: the first protocol in the client's order that is served.
        let chosen = offered
            .iter()
            .find_map(|o| ChannelProtocol::ALL.iter().find(|(name, _)| name == o))
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unable to upgrade: none of the offered subprotocols [{}] is served, only [{}]",
                        offered.join(" "),
                        ChannelProtocol::ALL.map(|(n, _)| n).join(" ")
                    ),
                )
            })?;
        let headers = websocket_upgrade(headers, Some(chosen.0))?;
        return Ok(Upgrade {
            protocol: ExecProtocol::WebSocket(chosen.1),
            headers,
        });
    }
    let (name, version) = spdy_handshake(headers, &SpdyVersion::ALL)?;
    Ok(Upgrade {
        protocol: ExecProtocol::Spdy(version),
        headers: spdy_upgrade(name),
    })
}

/// Negotiates port-forward (rule 3.1): tunnelled SPDY when a WebSocket request offers a
/// `SPDY/3.1+….k8s.io` subprotocol, the channel protocol for any other WebSocket request
/// (`query` must then name `ports`), plain SPDY otherwise.
pub fn negotiate_port_forward(
    headers: &HeaderMap,
    query: &str,
) -> Result<Upgrade<PortForwardProtocol>, Refusal> {
    if is_websocket(headers) {
        let offered = offered_subprotocols(headers);
        let tunnelled: Vec<&String> = offered
            .iter()
            .filter(|o| o.starts_with(TUNNEL_PREFIX) && o.ends_with(".k8s.io"))
            .collect();
        if !tunnelled.is_empty() {
            // Rule 3.6: strip the prefix and negotiate the SPDY protocol inside.
            let Some(chosen) = tunnelled
                .iter()
                .find(|o| o[TUNNEL_PREFIX.len()..] == *PORT_FORWARD_SPDY)
            else {
                let spdy: Vec<&str> = tunnelled.iter().map(|o| &o[TUNNEL_PREFIX.len()..]).collect();
                let mut refusal = Refusal::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{PORT_FORWARD_SPDY}]",
                        spdy.join(" ")
                    ),
                );
                refusal.headers.push((
                    ACCEPTED_STREAM_PROTOCOL_VERSIONS,
                    HeaderValue::from_static(PORT_FORWARD_SPDY),
                ));
                return Err(refusal);
            };
            let headers = websocket_upgrade(headers, Some(chosen))?;
            return Ok(Upgrade {
                protocol: PortForwardProtocol::Tunnel,
                headers,
            });
        }
        // Rule 3.10: v4 binary or base64, or no subprotocol; v5 has nothing to add here.
        let chosen = if offered.is_empty() {
            None
        } else {
            let found = offered.iter().find_map(|o| match o.as_str() {
                "v4.channel.k8s.io" => Some(("v4.channel.k8s.io", false)),
                "v4.base64.channel.k8s.io" => Some(("v4.base64.channel.k8s.io", true)),
                _ => None,
            });
            Some(found.ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unable to upgrade: none of the offered subprotocols [{}] is served, only [v4.channel.k8s.io v4.base64.channel.k8s.io]",
                        offered.join(" ")
                    ),
                )
            })?)
        };
        let ports = parse_ports(query)
            .map_err(|e: QueryError| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let headers = websocket_upgrade(headers, chosen.map(|c| c.0))?;
        let base64 = chosen.is_some_and(|c| c.1);
        return Ok(Upgrade {
            protocol: PortForwardProtocol::WebSocket { base64, ports },
            headers,
        });
    }
    let (name, ()) = spdy_handshake(headers, &[(PORT_FORWARD_SPDY, ())])?;
    Ok(Upgrade {
        protocol: PortForwardProtocol::Spdy,
        headers: spdy_upgrade(name),
    })
}

/// The bearer token a client offered as the subprotocol
/// `base64url.bearer.authorization.k8s.io.<base64url token>` (rule 1.21), for the API server to
/// authenticate; negotiation itself never selects that protocol.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    all_values(headers, &header::SEC_WEBSOCKET_PROTOCOL)
        .find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX).map(str::to_owned))
        .and_then(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()
        })
        .and_then(|token| String::from_utf8(token).ok())
}

/// Rule 1.4: `Upgrade: websocket` and a `Connection` that contains `upgrade`.
fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
    });
    upgrade && connection_upgrade(headers)
}

fn connection_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("upgrade"))
    })
}

/// Every value of a header, split on commas and trimmed (rule 1.6, 2.2).
fn all_values<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The offered subprotocols in the client's order, the bearer token stripped (rule 1.21).
fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    all_values(headers, &header::SEC_WEBSOCKET_PROTOCOL)
        .filter(|p| !p.starts_with(BEARER_PROTOCOL_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// The 101's headers for a WebSocket upgrade (RFC 6455 section 4.2.2; rule 1.6: the bare
/// `Upgrade` in `Connection`, which kube-rs compares whole).
fn websocket_upgrade(headers: &HeaderMap, protocol: Option<&str>) -> Result<HeaderMap, Refusal> {
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing Sec-WebSocket-Key",
        )
    })?;
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut refusal = Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: Sec-WebSocket-Version must be 13",
        );
        refusal
            .headers
            .push((header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13")));
        return Err(refusal);
    }
    let mut out = HeaderMap::new();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: bad Sec-WebSocket-Key",
        )
    })?;
    out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = protocol {
        // Offered names came from a valid header value, so they are valid values.
        if let Ok(value) = HeaderValue::from_str(protocol) {
            out.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
    Ok(out)
}

/// Rule 2.2: the version list, then the upgrade headers.
fn spdy_handshake<T: Copy>(
    headers: &HeaderMap,
    supported: &[(&'static str, T)],
) -> Result<(&'static str, T), Refusal> {
    let offered: Vec<&str> = all_values(headers, &STREAM_PROTOCOL_VERSION).collect();
    if offered.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        ));
    }
    let Some(&(name, value)) = offered
        .iter()
        .find_map(|o| supported.iter().find(|(n, _)| n == o))
    else {
        let names: Vec<&str> = supported.iter().map(|(n, _)| *n).collect();
        let mut refusal = Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
                offered.join(" "),
                names.join(" ")
            ),
        );
        for n in names {
            refusal
                .headers
                .push((ACCEPTED_STREAM_PROTOCOL_VERSIONS, HeaderValue::from_static(n)));
        }
        return Err(refusal);
    };
    let spdy = headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"))
    });
    if !spdy || !connection_upgrade(headers) {
        let shown = |n: HeaderName| {
            headers
                .get_all(&n)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
        };
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unable to upgrade: missing upgrade headers in request: Connection: {:?}, Upgrade: {:?}",
                shown(header::CONNECTION),
                shown(header::UPGRADE)
            ),
        ));
    }
    Ok((name, value))
}

fn spdy_upgrade(protocol: &'static str) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    out.insert(STREAM_PROTOCOL_VERSION, HeaderValue::from_static(protocol));
    out
}

#[cfg(test)]
mod tests;
