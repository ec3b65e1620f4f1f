//! [`ApiMetrics`]: request latencies, request counts and open watches, with kube-apiserver's
//! metric names and labels, and the `/metrics` response.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `apiserver_request_duration_seconds` | histogram | `verb`, `dry_run`, `group`, `version`, `resource`, `subresource`, `scope`, `component` |
//! | `apiserver_request_total` | counter | the same and `code` |
//! | `apiserver_longrunning_requests` | gauge | `verb`, `group`, `version`, `resource`, `subresource`, `scope`, `component` |
//!
//! The label values follow kube-apiserver: `verb` is `GET`, `LIST`, `WATCH`, `POST`, `PUT`,
//! `PATCH`, `APPLY`, `DELETE` or `DELETECOLLECTION` for resource requests and the HTTP method
//! otherwise; `scope` is `resource` (a named object, or a create), `namespace`, `cluster` or
//! empty for non-resource paths, whose path is the `subresource` (as kube-apiserver does);
//! `component` is `apiserver`. Watches and followed logs are long-running: they count in
//! `apiserver_longrunning_requests` while open (that is the number of open watches per
//! resource), and their duration and count are recorded when they end, as kube-apiserver
//! does. Requests refused by authentication never reach the handlers and are not recorded.
//! Paths that match nothing are recorded with empty `resource` and `subresource`, and a health
//! check's sub-path (`/livez/<anything>`) as its health path (`/livez`), so no URL a client
//! makes up can grow the number of series: every label value comes from a fixed set.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, header};
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::handlers::{Body, Target};

/// kube-apiserver's buckets for `apiserver_request_duration_seconds`.
const REQUEST_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0,
];

/// The non-resource paths recorded under their own name.
const NON_RESOURCE_PATHS: &[&str] = &[
    "/version",
    "/api",
    "/apis",
    "/openapi/v2",
    "/openapi/v3",
    "/livez",
    "/readyz",
    "/healthz",
    "/metrics",
];

/// `component`: kube-apiserver's value for requests served by the API server itself.
const COMPONENT: &str = "apiserver";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    dry_run: &'static str,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: &'static str,
    component: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestCodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LongRunningLabels {
    verb: &'static str,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: &'static str,
    component: &'static str,
}

/// The metrics a server records and the registry its `/metrics` serves.
pub(crate) type Served = (ApiMetrics, Arc<Registry>);

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

struct Inner {
    request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    request_total: Family<RequestCodeLabels, Counter>,
    longrunning: Family<LongRunningLabels, Gauge>,
}

/// The API server's request metrics (see the [module documentation](self)).
///
/// Cloning is cheap and every clone records into the same metrics. Add them to a registry
/// with [`register`](Self::register) and give both to
/// [`ApiServer::with_metrics`](crate::ApiServer::with_metrics).
#[derive(Clone)]
pub struct ApiMetrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics::new()
    }
}

impl ApiMetrics {
    /// Empty metrics, not yet registered anywhere.
    pub fn new() -> ApiMetrics {
        ApiMetrics {
            inner: Arc::new(Inner {
                request_duration: Family::new_with_constructor(request_histogram),
                request_total: Family::default(),
                longrunning: Family::default(),
            }),
        }
    }

    /// Adds every metric to `registry` (the counter without its `_total` suffix, which the
    /// encoder appends).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            self.inner.request_duration.clone(),
        );
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            self.inner.request_total.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
            self.inner.longrunning.clone(),
        );
    }

    /// Records a finished request.
    fn observe(&self, labels: RequestLabels, code: u16, started: Instant) {
        self.inner
            .request_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.inner
            .request_total
            .get_or_create(&RequestCodeLabels {
                request: labels,
                code: code.to_string(),
            })
            .inc();
    }
}

/// What the metrics need to know about a request, taken before it is handled.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    labels: RequestLabels,
    long_running: bool,
    started: Instant,
}

impl RequestInfo {
    /// Classifies a request as kube-apiserver's metrics do. `target` is its resource path.
    pub(crate) fn new(
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        target: Option<&Target>,
    ) -> RequestInfo {
        let started = Instant::now();
        let dry_run = if query.get("dryRun").is_some_and(|v| !v.is_empty()) {
            "All"
        } else {
            ""
        };
        let Some(target) = target else {
            // Only the known paths themselves, never what a client appended to them: a path
            // that comes from the request must not become a label value.
            let trimmed = path.trim_end_matches('/');
            let subresource = NON_RESOURCE_PATHS
                .iter()
                .find(|p| {
                    trimmed == **p
                        || trimmed
                            .strip_prefix(**p)
                            .is_some_and(|rest| rest.starts_with('/'))
                })
                .map_or_else(String::new, |p| (*p).to_string());
            return RequestInfo {
                labels: RequestLabels {
                    verb: method_verb(method),
                    dry_run,
                    group: String::new(),
                    version: String::new(),
                    resource: String::new(),
                    subresource,
                    scope: "",
                    component: COMPONENT,
                },
                long_running: false,
                started,
            };
        };
        let named = target.name.is_some();
        let scope = if named || *method == Method::POST {
            "resource"
        } else if target.namespace.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        let flag = |key: &str| matches!(query.get(key).map(String::as_str), Some("true" | "1"));
        let verb = match *method {
            Method::GET | Method::HEAD if named => "GET",
            Method::GET | Method::HEAD if flag("watch") => "WATCH",
            Method::GET | Method::HEAD => "LIST",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => {
                let apply = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("application/apply-patch"));
                if apply { "APPLY" } else { "PATCH" }
            }
            Method::DELETE if named => "DELETE",
            Method::DELETE => "DELETECOLLECTION",
            ref other => method_verb(other),
        };
        let subresource = target.sub.clone().unwrap_or_default();
        let long_running = verb == "WATCH" || (subresource == "log" && flag("follow"));
        RequestInfo {
            labels: RequestLabels {
                verb,
                dry_run,
                group: target.resource.group.to_string(),
                version: target.resource.version.to_string(),
                resource: target.resource.plural.to_string(),
                subresource,
                scope,
                component: COMPONENT,
            },
            long_running,
            started,
        }
    }
}

/// The HTTP method as a `verb` label value, from a bounded set.
fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts an open long-running request; on drop (its response body is gone), counts it no
/// more and records it as finished.
struct LongRunning {
    metrics: ApiMetrics,
    gauge_labels: LongRunningLabels,
    info: Option<RequestInfo>,
    code: u16,
}

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.metrics
            .inner
            .longrunning
            .get_or_create(&self.gauge_labels)
            .dec();
        if let Some(info) = self.info.take() {
            self.metrics.observe(info.labels, self.code, info.started);
        }
    }
}

/// Records `response` to the request described by `info`: at once, or, for a long-running
/// request that succeeded, when its body is dropped.
pub(crate) fn record(metrics: &ApiMetrics, info: RequestInfo, response: Response<Body>) -> Response<Body> {
    let code = response.status().as_u16();
    if !(info.long_running && response.status().is_success()) {
        metrics.observe(info.labels, code, info.started);
        return response;
    }
    let l = &info.labels;
    let gauge_labels = LongRunningLabels {
        verb: l.verb,
        group: l.group.clone(),
        version: l.version.clone(),
        resource: l.resource.clone(),
        subresource: l.subresource.clone(),
        scope: l.scope,
        component: l.component,
    };
    metrics.inner.longrunning.get_or_create(&gauge_labels).inc();
    let open = LongRunning {
        metrics: metrics.clone(),
        gauge_labels,
        info: Some(info),
        code,
    };
    response.map(move |body| {
        body.map_frame(move |frame| {
            let _open = &open;
            frame
        })
        .boxed()
    })
}

/// The `/metrics` response: `registry` in the OpenMetrics text format when the client asks
/// for it, in the Prometheus text format 0.0.4 otherwise.
pub(crate) fn exposition(registry: &Registry, accept: &str) -> Response<Body> {
    let mut text = String::new();
    let (encoded, content_type) = if accept.contains("application/openmetrics-text") {
        (
            prometheus_client::encoding::text::encode(&mut text, registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    // Writing into a String fails only if a metric's own encoding does: then what there is
    // would be an incomplete scrape, so the scrape fails (as Prometheus' handler answers).
    let (code, text, content_type) = match encoded {
        Ok(()) => (http::StatusCode::OK, text, content_type),
        Err(_) => {
            tracing::error!("encoding the metrics failed");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "error encoding the metrics: a metric could not be written\n".to_owned(),
                "text/plain; charset=utf-8",
            )
        }
    };
    let mut response = Response::new(http_body_util::Full::new(bytes::Bytes::from(text)).boxed());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn info(method: Method, path: &str, query: &[(&str, &str)]) -> RequestInfo {
        let query = query
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let target = crate::handlers::route(path);
        RequestInfo::new(&method, path, &query, &HeaderMap::new(), target.as_ref())
    }

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, registry).unwrap();
        text
    }

    fn ok() -> Response<Body> {
        Response::new(http_body_util::Full::new(bytes::Bytes::new()).boxed())
    }

    #[test]
    fn requests_are_labelled_as_kube_apiserver_labels_them() {
        let metrics = ApiMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let pods = "/api/v1/namespaces/default/pods";
        record(&metrics, info(Method::GET, pods, &[]), ok());
        record(&metrics, info(Method::POST, pods, &[]), ok());
        record(&metrics, info(Method::GET, &format!("{pods}/web"), &[]), ok());
        record(&metrics, info(Method::DELETE, "/api/v1/nodes", &[]), ok());
        record(&metrics, info(Method::GET, "/livez/ping", &[]), ok());
        let mut missing = ok();
        *missing.status_mut() = StatusCode::NOT_FOUND;
        record(&metrics, info(Method::GET, "/no/such/thing", &[]), missing);
        let text = encoded(&registry);
        for line in [
            r#"apiserver_request_duration_seconds_count{verb="LIST",dry_run="",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver"} 1"#,
            r#"apiserver_request_total{verb="POST",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="200"} 1"#,
            r#"apiserver_request_total{verb="GET",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="200"} 1"#,
            r#"apiserver_request_total{verb="DELETECOLLECTION",dry_run="",group="",version="v1",resource="nodes",subresource="",scope="cluster",component="apiserver",code="200"} 1"#,
            r#"apiserver_request_total{verb="GET",dry_run="",group="",version="",resource="",subresource="/livez",scope="",component="apiserver",code="200"} 1"#,
            r#"apiserver_request_total{verb="GET",dry_run="",group="",version="",resource="",subresource="",scope="",component="apiserver",code="404"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn made_up_paths_do_not_grow_the_series() {
        let metrics = ApiMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        record(&metrics, info(Method::GET, "/livez/a", &[]), ok());
        let one = encoded(&registry).len();
        for i in 0..200 {
            record(
                &metrics,
                info(Method::GET, &format!("/livez/{i}-random"), &[]),
                ok(),
            );
            record(&metrics, info(Method::GET, &format!("/no/such/{i}"), &[]), ok());
            record(
                &metrics,
                info(Method::GET, &format!("/api/v1/namespaces/ns{i}/pods/p{i}"), &[]),
                ok(),
            );
        }
        let text = encoded(&registry);
        assert!(
            !text.contains("random") && !text.contains("ns1") && !text.contains("p1\""),
            "{text}"
        );
        // A handful of series (one per distinct label set), not hundreds.
        assert!(
            text.len() < one * 4,
            "{} bytes after 600 requests, {one} after one",
            text.len()
        );
    }

    #[test]
    fn an_open_watch_counts_until_its_body_is_dropped() {
        let metrics = ApiMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let watch = info(
            Method::GET,
            "/apis/discovery.k8s.io/v1/endpointslices",
            &[("watch", "1")],
        );
        let response = record(&metrics, watch, ok());
        let open = r#"apiserver_longrunning_requests{verb="WATCH",group="discovery.k8s.io",version="v1",resource="endpointslices",subresource="",scope="cluster",component="apiserver"}"#;
        let text = encoded(&registry);
        assert!(text.contains(&format!("{open} 1")), "{text}");
        assert!(
            !text.contains("apiserver_request_total{"),
            "recorded when it ends: {text}"
        );
        drop(response);
        let text = encoded(&registry);
        assert!(text.contains(&format!("{open} 0")), "{text}");
        assert!(text.contains(r#"apiserver_request_total{verb="WATCH""#), "{text}");
    }

    #[test]
    fn the_exposition_format_follows_the_accept_header() {
        let registry = Registry::default();
        let classic = exposition(&registry, "*/*");
        assert_eq!(
            classic.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let open = exposition(&registry, "application/openmetrics-text;version=1.0.0");
        assert!(
            open.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
    }

    /// A collector whose encoding fails.
    #[derive(Debug)]
    struct Broken;

    impl prometheus_client::collector::Collector for Broken {
        fn encode(
            &self,
            _: prometheus_client::encoding::DescriptorEncoder<'_>,
        ) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
    }

    #[tokio::test]
    async fn a_scrape_whose_encoding_fails_is_a_500_not_a_partial_200() {
        let metrics = ApiMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(Broken));
        for accept in ["*/*", "application/openmetrics-text;version=1.0.0"] {
            let response = exposition(&registry, accept);
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{accept}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                &body[..],
                b"error encoding the metrics: a metric could not be written\n"
            );
        }
    }
}
