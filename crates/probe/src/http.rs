//! HTTP GET probes (rules 4.5-4.11) and HTTP lifecycle hooks (rules 8.5-8.6).
//!
//! Each request goes on a new connection (a hyper HTTP/1.1 client connection over a probe
//! socket from [`crate::dial`]), through no proxy, without compression, and
//! for `https` through TLS that accepts any certificate. Same-hostname redirects are followed
//! (the port may change) up to 10 requests in all; a redirect to another hostname is not
//! followed and the 3xx itself is the answer. HTTPS uses HTTP/1.1 only (no ALPN), where the
//! kubelet's Go client may negotiate HTTP/2; the verdict does not depend on it.
//!
//! Unlike Go's client with keep-alives disabled, the request carries no `Connection: close`.
//! With it, the server closes first after its response and its end of every probe connection
//! sits in `TIME_WAIT` for 60 s (100 probes left 100 such sockets in our test). Without it, the
//! server keeps the connection open for a next request that never comes, and the probe drops
//! the connection as soon as it has the response, which resets it (`SO_LINGER` 0): no
//! `TIME_WAIT` on either end. A connection is still never used for a second request. When the
//! server does answer `Connection: close`, the probe still sends no FIN of its own before the
//! RST ([`dial::ProbeStream`]).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use podvisor_core::corev1;
use podvisor_core::runtime::HookResult;
use podvisor_core::{ProbeOutcome, ProbeResult, ProbeTarget};
use tokio::time::Instant;

use crate::conn::{TimedOut, drive, error_chain, within};
use crate::hook::HookWarning;
use crate::port::{self, PortError};
use crate::{
    LIFECYCLE_USER_AGENT, MAX_OUTPUT_BYTES, PROBE_USER_AGENT, dial, join_host_port, output_text, tls,
};

/// How many requests one probe makes at most, the original included (rule 4.9).
pub const MAX_REQUESTS: usize = 10;

/// Why an HTTP GET did not produce a response to judge.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The port does not resolve: a handler error (the result is discarded).
    #[error(transparent)]
    Port(#[from] PortError),
    /// The request could not be built (a path that is no URL path): a handler error.
    #[error("failed to build request for {url:?}: {message}")]
    Build {
        /// The URL as far as it was built.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The exchange failed: refused, reset, timed out, TLS, unparsable response, too many
    /// redirects. For a probe this is a `Failure`, not an error.
    #[error("Get {url:?}: {message}")]
    Transport {
        /// The URL of the request that failed.
        url: String,
        /// What went wrong, in the kubelet's words where it has some.
        message: String,
        /// Whether an HTTPS request was answered in plain HTTP (a hook then retries over HTTP).
        http_response_to_https: bool,
    },
}

/// The URL scheme of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    /// Anything else: the request fails with "unsupported protocol scheme".
    Other(String),
}

impl Scheme {
    fn parse(text: &str) -> Scheme {
        match text.to_ascii_lowercase().as_str() {
            "" | "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Other(other) => other,
        }
    }

    fn default_port(&self) -> u16 {
        match self {
            Scheme::Https => 443,
            _ => 80,
        }
    }
}

/// Where one request goes: scheme, host (without brackets), port, and the path with its query.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Url {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            join_host_port(&self.host, self.port),
            self.path
        )
    }
}

/// A request ready to be sent (and re-sent on redirects).
#[derive(Clone, Debug)]
struct Plan {
    url: Url,
    headers: HeaderMap,
    /// The user's `Host` header, which replaces `host:port` as the request's authority.
    host_override: Option<String>,
    /// Set when a user header is not valid HTTP: Go builds the request and its transport refuses
    /// to send it, so this is a transport failure, not a handler error.
    invalid_header: Option<String>,
}

impl Plan {
    /// The request an `httpGet` action describes (rules 4.5 and 4.6).
    fn new(
        action: &corev1::HTTPGetAction,
        target: &ProbeTarget,
        user_agent: &'static str,
    ) -> Result<Plan, HttpError> {
        let port = port::resolve(&action.port, &target.ports)?;
        let host = action
            .host
            .as_deref()
            .filter(|host| !host.is_empty())
            .unwrap_or(&target.pod_ip);
        let url = Url {
            scheme: Scheme::parse(action.scheme.as_deref().unwrap_or_default()),
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port,
            path: normalize_path(action.path.as_deref().unwrap_or_default()),
        };
        if http::uri::PathAndQuery::try_from(url.path.as_str()).is_err() {
            return Err(HttpError::Build {
                url: url.to_string(),
                message: "invalid path".to_owned(),
            });
        }
        let mut plan = Plan {
            url,
            headers: HeaderMap::new(),
            host_override: None,
            invalid_header: None,
        };
        for user in action.http_headers.iter().flatten() {
            let Ok(name) = HeaderName::from_bytes(user.name.as_bytes()) else {
                plan.invalid_header = Some(format!("net/http: invalid header field name {:?}", user.name));
                continue;
            };
            let Ok(value) = HeaderValue::from_str(&user.value) else {
                plan.invalid_header = Some(format!(
                    "net/http: invalid header field value for {:?}",
                    user.name
                ));
                continue;
            };
            // Repeated names accumulate, in order.
            plan.headers.append(name, value);
        }
        // A user `Host` becomes the authority; it is never sent as a second header.
        plan.host_override = plan
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned);
        plan.headers.remove(header::HOST);
        default_or_drop_empty(
            &mut plan.headers,
            header::USER_AGENT,
            HeaderValue::from_static(user_agent),
        );
        default_or_drop_empty(&mut plan.headers, header::ACCEPT, HeaderValue::from_static("*/*"));
        // No `Connection: close` (Go's client sends one): it makes the server close first and
        // keep the connection in TIME_WAIT. The connection is still never reused; dropping it
        // after the response resets it (see the module docs).
        Ok(plan)
    }
}

/// Sets `name` to `default` unless the user gave it; removes it if the user's first value for it
/// is empty (an empty `Accept` removes the header, an empty `User-Agent` sends none).
fn default_or_drop_empty(headers: &mut HeaderMap, name: HeaderName, default: HeaderValue) {
    match headers.get(&name) {
        None => {
            headers.insert(name, default);
        }
        Some(value) if value.is_empty() => {
            headers.remove(&name);
        }
        Some(_) => {}
    }
}

/// The request target for a user's `path`: the fragment dropped, a leading `/` ensured, and bytes
/// that may not appear in a request line percent-encoded.
fn normalize_path(path: &str) -> String {
    let without_fragment = path.split('#').next().unwrap_or_default();
    let mut out = String::with_capacity(without_fragment.len() + 1);
    if !without_fragment.starts_with('/') {
        out.push('/');
    }
    for byte in without_fragment.bytes() {
        let plain = byte.is_ascii_graphic()
            && !matches!(
                byte,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `reference` starts with a URL scheme (`letter *( letter / digit / + - . ) ":"`).
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Resolves a `Location` header against the URL that answered with it (RFC 3986 reference
/// resolution, by the `url` crate); the fragment is dropped and the path normalised as a
/// request path.
fn resolve_location(base: &Url, location: &str) -> Result<Url, String> {
    let base = url::Url::parse(&base.to_string()).map_err(|error| error.to_string())?;
    let next = base.join(location).map_err(|error| error.to_string())?;
    let scheme = Scheme::parse(next.scheme());
    let host = next
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| format!("no host in {next}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = next.port().unwrap_or_else(|| scheme.default_port());
    let path = match next.query() {
        Some(query) => format!("{}?{query}", next.path()),
        None => next.path().to_owned(),
    };
    Ok(Url {
        scheme,
        host,
        port,
        path: normalize_path(&path),
    })
}

/// What one request got back: status, `Location`, and the body up to 10 KiB (with the error that
/// ended reading it early, if one did).
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
    body_error: Option<String>,
}

/// Go's message for a client timeout before the response headers.
const HEADER_TIMEOUT: &str = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";
/// Go's message for a client timeout while the body is read.
const BODY_TIMEOUT: &str =
    "context deadline exceeded (Client.Timeout or context cancellation while reading body)";

/// Sends the plan's request and follows same-hostname redirects, within `deadline` if any.
async fn fetch(plan: &Plan, deadline: Option<Instant>) -> Result<Answer, HttpError> {
    let mut url = plan.url.clone();
    let mut host_override = plan.host_override.clone();
    let mut requests = 0;
    loop {
        let answer = exchange(plan, &url, host_override.as_deref(), deadline).await?;
        requests += 1;
        let followed = matches!(answer.status, 301 | 302 | 303 | 307 | 308);
        let Some(location) = answer.location.as_deref().filter(|_| followed) else {
            return Ok(answer);
        };
        if location.is_empty() {
            return Ok(answer);
        }
        let next = resolve_location(&url, location).map_err(|error| HttpError::Transport {
            url: url.to_string(),
            message: format!("failed to parse Location header {location:?}: {error}"),
            http_response_to_https: false,
        })?;
        // Only the hostname is compared, with the original request's: the port may change.
        if next.host != plan.url.host {
            return Ok(answer);
        }
        if requests >= MAX_REQUESTS {
            return Err(HttpError::Transport {
                url: next.to_string(),
                message: format!("stopped after {MAX_REQUESTS} redirects"),
                http_response_to_https: false,
            });
        }
        // A custom Host survives a relative redirect only, as in Go's client.
        if has_scheme(location) {
            host_override = None;
        }
        url = next;
    }
}

/// One request on a new connection.
async fn exchange(
    plan: &Plan,
    url: &Url,
    host_override: Option<&str>,
    deadline: Option<Instant>,
) -> Result<Answer, HttpError> {
    let failed = |message: String| HttpError::Transport {
        url: url.to_string(),
        message,
        http_response_to_https: false,
    };
    if let Scheme::Other(scheme) = &url.scheme {
        return Err(failed(format!("unsupported protocol scheme {scheme:?}")));
    }
    if let Some(invalid) = &plan.invalid_header {
        return Err(failed(invalid.clone()));
    }
    let authority = host_override
        .map(str::to_owned)
        .unwrap_or_else(|| join_host_port(&url.host, url.port));
    let mut request = http::Request::get(url.path.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|error| HttpError::Build {
            url: url.to_string(),
            message: error.to_string(),
        })?;
    *request.headers_mut() = plan.headers.clone();
    let host = HeaderValue::from_str(&authority)
        .map_err(|_| failed(format!("invalid Host header {authority:?}")))?;
    request.headers_mut().insert(header::HOST, host);

    let stream = match within(deadline, dial::connect(&url.host, url.port)).await {
        Err(TimedOut) => return Err(failed(HEADER_TIMEOUT.to_owned())),
        Ok(Err(error)) => return Err(failed(error.to_string())),
        Ok(Ok(stream)) => stream,
    };
    if url.scheme != Scheme::Https {
        return send(TokioIo::new(stream), request, deadline)
            .await
            .map_err(failed);
    }
    let connector = tls::connector().map_err(|error| failed(format!("tls: {error}")))?;
    let name = tls::server_name(&url.host).map_err(failed)?;
    let handshake = connector.connect(name, tls::Sniff::new(stream)).into_fallible();
    match within(deadline, handshake).await {
        Err(TimedOut) => Err(failed(HEADER_TIMEOUT.to_owned())),
        Ok(Err((_error, sniffed))) if sniffed.saw_http() => Err(HttpError::Transport {
            url: url.to_string(),
            message: "http: server gave HTTP response to HTTPS client".to_owned(),
            http_response_to_https: true,
        }),
        Ok(Err((error, _))) => Err(failed(format!("tls: {}", error_chain(&error)))),
        Ok(Ok(tls)) => send(TokioIo::new(tls), request, deadline).await.map_err(failed),
    }
}

/// Sends `request` on a new HTTP/1.1 connection over `io` and reads the answer.
async fn send<T>(
    io: T,
    request: http::Request<Empty<Bytes>>,
    deadline: Option<Instant>,
) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|error| error_chain(&error))?;
    let work = async {
        let response = match within(deadline, sender.send_request(request)).await {
            Err(TimedOut) => return Err(HEADER_TIMEOUT.to_owned()),
            Ok(Err(error)) => return Err(error_chain(&error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (body, body_error) = read_capped(response.into_body(), deadline).await;
        Ok(Answer {
            status,
            location,
            body,
            body_error,
        })
    };
    drive(work, conn).await
}

/// Reads at most [`MAX_OUTPUT_BYTES`] of `body`; hitting the cap is not an error.
async fn read_capped(
    mut body: hyper::body::Incoming,
    deadline: Option<Instant>,
) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    while out.len() < MAX_OUTPUT_BYTES {
        match within(deadline, body.frame()).await {
            Err(TimedOut) => return (out, Some(BODY_TIMEOUT.to_owned())),
            Ok(None) => break,
            Ok(Some(Err(error))) => return (out, Some(error_chain(&error))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_OUTPUT_BYTES - out.len();
                    out.extend_from_slice(data.get(..room).unwrap_or(&data));
                }
            }
        }
    }
    (out, None)
}

/// Runs an HTTP GET probe within `timeout` and judges the final response (rule 4.11): 2xx →
/// `Success` with the body as output; 3xx (a redirect not followed) → `Warning`; anything else →
/// `Failure` with `HTTP probe failed with statuscode: <code>`; a transport error or timeout →
/// `Failure` with the error. A port that does not resolve, or a body that cannot be read, is a
/// handler error.
pub async fn probe(action: &corev1::HTTPGetAction, target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    let plan = match Plan::new(action, target, PROBE_USER_AGENT) {
        Ok(plan) => plan,
        Err(error) => return ProbeResult::errored(error.to_string()),
    };
    let deadline = Instant::now() + timeout;
    // Every step has the deadline; the margin is a backstop that never decides a verdict.
    let fetched = tokio::time::timeout_at(
        deadline + Duration::from_millis(250),
        fetch(&plan, Some(deadline)),
    )
    .await;
    let answer = match fetched {
        Err(_elapsed) => {
            return ProbeResult::new(
                ProbeOutcome::Failure,
                format!("Get {:?}: {HEADER_TIMEOUT}", plan.url.to_string()),
            );
        }
        Ok(Err(error @ HttpError::Transport { .. })) => {
            return ProbeResult::new(ProbeOutcome::Failure, error.to_string());
        }
        Ok(Err(error)) => return ProbeResult::errored(error.to_string()),
        Ok(Ok(answer)) => answer,
    };
    if let Some(error) = answer.body_error {
        return ProbeResult::errored(format!("Get {:?}: {error}", plan.url.to_string()));
    }
    let body = output_text(&answer.body);
    match answer.status {
        200..=299 => ProbeResult::new(ProbeOutcome::Success, body),
        300..=399 => ProbeResult::new(
            ProbeOutcome::Warning,
            format!("Probe terminated redirects, Response body: {body}"),
        ),
        code => ProbeResult::new(
            ProbeOutcome::Failure,
            format!("HTTP probe failed with statuscode: {code}"),
        ),
    }
}

/// Runs an HTTP GET lifecycle hook: no timeout, any response of any status succeeds, only a
/// transport error fails. An HTTPS hook answered in plain HTTP is retried once over HTTP without
/// the `Authorization` header; if that succeeds the hook succeeds and the returned
/// [`HookWarning`] (`LifecycleHTTPFallback`) says so.
pub async fn hook(action: &corev1::HTTPGetAction, target: &ProbeTarget) -> (HookResult, Option<HookWarning>) {
    let path = action.path.as_deref().unwrap_or_default();
    let failed = |error: &HttpError| {
        HookResult::Failed(format!("HTTP lifecycle hook ({path}) failed - error: {error}"))
    };
    let plan = match Plan::new(action, target, LIFECYCLE_USER_AGENT) {
        Ok(plan) => plan,
        Err(error) => return (failed(&error), None),
    };
    let error = match fetch(&plan, None).await {
        Ok(_) => return (HookResult::Succeeded, None),
        Err(error) => error,
    };
    let HttpError::Transport {
        http_response_to_https: true,
        ..
    } = &error
    else {
        return (failed(&error), None);
    };
    let mut fallback = plan.clone();
    fallback.url.scheme = Scheme::Http;
    fallback.headers.remove(header::AUTHORIZATION);
    match fetch(&fallback, None).await {
        Ok(_) => {
            let warning = HookWarning {
                container_id: target.container_id.clone(),
                reason: HookWarning::LIFECYCLE_HTTP_FALLBACK,
                message: format!(
                    "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                    join_host_port(&plan.url.host, plan.url.port)
                ),
            };
            (HookResult::Succeeded, Some(warning))
        }
        // The kubelet reports the original error when the retry fails too.
        Err(_) => (failed(&error), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url {
            scheme: Scheme::Http,
            host: "10.0.0.1".into(),
            port: 8080,
            path: "/a/b/c?x=1".into(),
        }
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("healthz"), "/healthz");
        assert_eq!(normalize_path("/a b?q=1#frag"), "/a%20b?q=1");
        assert_eq!(normalize_path("/é"), "/%C3%A9");
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let at = |location: &str| resolve_location(&base(), location).map(|url| url.to_string());
        assert_eq!(at("/x").as_deref(), Ok("http://10.0.0.1:8080/x"));
        assert_eq!(at("d").as_deref(), Ok("http://10.0.0.1:8080/a/b/d"));
        assert_eq!(at("../d?y").as_deref(), Ok("http://10.0.0.1:8080/a/d?y"));
        assert_eq!(at("?y=2").as_deref(), Ok("http://10.0.0.1:8080/a/b/c?y=2"));
        assert_eq!(at("//other:81/p").as_deref(), Ok("http://other:81/p"));
        assert_eq!(at("HTTPS://10.0.0.1/z").as_deref(), Ok("https://10.0.0.1:443/z"));
        assert_eq!(at("http://[::1]:9/").as_deref(), Ok("http://[::1]:9/"));
        assert!(at("http://bad host/").is_err());
        // Dot segments go (RFC 3986, 5.2.4); a fragment is not sent.
        assert_eq!(at("/a/./b/../c").as_deref(), Ok("http://10.0.0.1:8080/a/c"));
        assert_eq!(at("/../..").as_deref(), Ok("http://10.0.0.1:8080/"));
        assert_eq!(at("../..").as_deref(), Ok("http://10.0.0.1:8080/"));
        assert_eq!(at("e#frag").as_deref(), Ok("http://10.0.0.1:8080/a/b/e"));
    }

    #[test]
    fn odd_locations_never_panic() {
        for location in [
            "http:",
            "http://",
            "//",
            ":",
            "http://[::1",
            "?",
            "../../..",
            "/%zz",
            "a\u{0}b",
            "https://user:pw@h:99999/",
            "x:y",
            "\u{1F600}",
        ] {
            let _ = resolve_location(&base(), location);
        }
    }
}
