//! Routing and the verbs: get, list, watch, create, update, patch, delete, deletecollection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use podvisor_core::corev1::{ConfigMap, Pod, Secret, Service};
use podvisor_store::{ListOptions, ObjectKey, Preconditions, Store, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::body::{self, FieldValidation};
use crate::discovery;
use crate::events;
use crate::meta::{self, metadata_mut, now_millis, rfc3339};
use crate::patch::{self, PatchType};
use crate::resources::Resource;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Result};
use crate::table::{self, IncludeObject};

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) bookmark_interval: Duration,
    pub(crate) logs: Option<Arc<dyn crate::logs::LogSource>>,
    /// Where Services get their ClusterIPs and node ports.
    pub(crate) service_ranges: crate::alloc::ServiceRanges,
    /// Request metrics, and the registry `/metrics` serves.
    pub(crate) metrics: Option<crate::metrics::Served>,
    /// The server's budgets.
    pub(crate) limits: crate::limits::Limits,
    /// Initial watch events shared between watches.
    pub(crate) initial_lists: crate::initial::InitialLists,
}

/// Events a watch buffers for its client (each at most one object, 1.5 MiB).
const WATCH_BUFFER: usize = 16;

/// Held from a Service's address allocation until it is stored.
static SERVICE_ALLOCATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// The `Status` response for an error.
pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status(), &[])
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(h) = hex {
                    out.push(h);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

/// A request for a resource path.
pub(crate) struct Target {
    pub(crate) resource: &'static Resource,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
}

pub(crate) fn route(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let namespaced_target = match rest {
        ["namespaces", ns, plural, more @ ..] => Resource::find(group, version, plural)
            .filter(|r| r.namespaced)
            .map(|r| (r, Some((*ns).to_string()), more)),
        _ => None,
    };
    let (resource, namespace, more) = match namespaced_target {
        Some(t) => t,
        None => {
            let (plural, more) = rest.split_first()?;
            (Resource::find(group, version, plural)?, None, more)
        }
    };
    let (name, sub) = match more {
        [] => (None, None),
        [name] => (Some((*name).to_string()), None),
        [name, sub] => (Some((*name).to_string()), Some((*sub).to_string())),
        _ => return None,
    };
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if let Some(s) = &sub
        && !resource.subresources.contains(&s.as_str())
    {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        sub,
    })
}

/// Handles one request.
pub(crate) async fn handle<B>(state: Arc<State>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let info = state.metrics.as_ref().map(|_| {
        let query = parse_query(req.uri().query());
        crate::metrics::RequestInfo::new(&method, &path, &query, req.headers(), route(&path).as_ref())
    });
    let result = dispatch(&state, req).await;
    let response = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, message = %e.message, "request failed");
            error_response(&e)
        }
    };
    match (&state.metrics, info) {
        (Some((metrics, _)), Some(info)) => crate::metrics::record(metrics, info, response),
        _ => response,
    }
}

async fn dispatch<B>(state: &Arc<State>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v, &[]));
    match path.trim_end_matches('/') {
        "/version" => return ok(discovery::version()),
        "/api" => return ok(discovery::api_versions()),
        "/apis" => return ok(discovery::api_group_list()),
        "/openapi/v3" => return ok(discovery::openapi_root()),
        "/metrics" if req.method() == Method::GET => {
            let (_, registry) = state.metrics.as_ref().ok_or_else(|| ApiError::no_route(&path))?;
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            return Ok(crate::metrics::exposition(registry, accept.unwrap_or("")));
        }
        p if p == "/livez"
            || p == "/readyz"
            || p == "/healthz"
            || p.starts_with("/livez/")
            || p.starts_with("/readyz/")
            || p.starts_with("/healthz/") =>
        {
            let mut resp = Response::new(full("ok"));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(resp);
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        return discovery::openapi_group_version(rest).map_or_else(|| Err(ApiError::no_route(&path)), ok);
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", v] => {
            return discovery::resource_list("", v).map_or_else(|| Err(ApiError::no_route(&path)), ok);
        }
        ["apis", g] => return discovery::api_group(g).map_or_else(|| Err(ApiError::no_route(&path)), ok),
        ["apis", g, v] => {
            return discovery::resource_list(g, v).map_or_else(|| Err(ApiError::no_route(&path)), ok);
        }
        _ => {}
    }
    let target = route(&path).ok_or_else(|| ApiError::no_route(&path))?;
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let method = req.method().clone();
    let ctx = Ctx {
        state: state.clone(),
        target,
        query,
        accept,
    };
    if ctx.target.sub.as_deref() == Some("log") {
        if ctx.target.resource.plural != "pods" || ctx.target.name.is_none() {
            return Err(ApiError::no_route(&path));
        }
        let pod = ctx
            .store()
            .get(&ctx.key(ctx.name()))
            .await
            .map_err(|e| ctx.store_err(e))?;
        let options = crate::logs::LogOptions::from_query(&ctx.query);
        return crate::logs::serve(state.logs.clone(), pod.object, options, state.shutdown.clone()).await;
    }
    match (method, ctx.target.name.is_some()) {
        (Method::GET, false) => {
            if matches!(ctx.query.get("watch").map(String::as_str), Some("true" | "1")) {
                ctx.watch().await
            } else {
                ctx.list().await
            }
        }
        (Method::GET, true) => ctx.get().await,
        (Method::POST, false) => {
            let bytes = body::read(req.into_body()).await?;
            ctx.create(body::decode_request(&content_type, bytes, ctx.field_validation()).await?)
                .await
        }
        (Method::PUT, true) => {
            let bytes = body::read(req.into_body()).await?;
            ctx.update(body::decode_request(&content_type, bytes, ctx.field_validation()).await?)
                .await
        }
        (Method::PATCH, true) => {
            let kind = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let bytes = body::read(req.into_body()).await?;
            let patch: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            ctx.patch(kind, patch).await
        }
        (Method::DELETE, named) => {
            let bytes = body::read(req.into_body()).await?;
            let options = if bytes.is_empty() {
                Value::Null
            } else {
                body::decode_request(&content_type, bytes, FieldValidation::Ignore).await?
            };
            if named {
                ctx.delete(options).await
            } else {
                ctx.delete_collection(options).await
            }
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// Deletes one object as a client's plain `DELETE` would (graceful for pods, marked while
/// finalizers remain); for the namespace controller.
pub(crate) async fn delete_object(
    state: &Arc<State>,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let ctx = Ctx {
        state: state.clone(),
        target: Target {
            resource,
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            sub: None,
        },
        query: HashMap::new(),
        accept: "application/json".into(),
    };
    ctx.delete(Value::Null).await.map(|_| ())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    k: String,
    rv: u64,
}

struct Ctx {
    state: Arc<State>,
    target: Target,
    query: HashMap<String, String>,
    accept: String,
}

impl Ctx {
    fn r(&self) -> &'static Resource {
        self.target.resource
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or("")
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(
            self.r().store_key(),
            self.target.namespace.clone().unwrap_or_default(),
            name,
        )
    }

    fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    fn store_err(&self, e: StoreError) -> ApiError {
        ApiError::from_store(e, self.r(), self.name())
    }

    fn respond(&self, code: StatusCode, object: &Value, warnings: &[String]) -> Result<Response<Body>> {
        if table::wants_table(&self.accept) {
            let rv = meta::str_at(object, "metadata.resourceVersion")
                .unwrap_or("")
                .to_string();
            let t = table::table(
                self.r(),
                std::slice::from_ref(object),
                &rv,
                None,
                self.include(),
                now_millis(),
            );
            return Ok(json_response(code, &t, warnings));
        }
        if events::is_events_v1(self.r()) {
            return Ok(json_response(code, &events::to_events_v1(object), warnings));
        }
        Ok(json_response(code, object, warnings))
    }

    /// A request body's object as stored (events.k8s.io Events are stored as core Events).
    fn inward(&self, object: Value) -> Value {
        if events::is_events_v1(self.r()) {
            events::to_core(&object)
        } else {
            object
        }
    }

    /// A stored object as this resource's version shows it.
    fn outward(&self, object: Value) -> Value {
        if events::is_events_v1(self.r()) {
            events::to_events_v1(&object)
        } else {
            object
        }
    }

    /// Whether the request is a server-side dry run (`dryRun=All` in the query, or in the
    /// body's `DeleteOptions`): everything is checked and answered, nothing is persisted.
    fn dry_run(&self, options: &Value) -> bool {
        self.query.contains_key("dryRun")
            || options
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty())
    }

    fn field_validation(&self) -> FieldValidation {
        FieldValidation::parse(self.query.get("fieldValidation").map(String::as_str))
    }

    fn include(&self) -> IncludeObject {
        IncludeObject::parse(self.query.get("includeObject").map(String::as_str))
    }

    fn predicate(&self) -> Result<podvisor_store::Predicate> {
        let labels = LabelSelector::parse(self.query.get("labelSelector").map_or("", String::as_str))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(
            self.query.get("fieldSelector").map_or("", String::as_str),
            self.r().plural,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Arc::new(move |o: &Value| labels.matches(o) && fields.matches(o)))
    }

    async fn get(&self) -> Result<Response<Body>> {
        let v = self
            .store()
            .get(&self.key(self.name()))
            .await
            .map_err(|e| self.store_err(e))?;
        self.respond(StatusCode::OK, &v.object, &[])
    }

    async fn list(&self) -> Result<Response<Body>> {
        // A list "not older than" a revision the store has not reached: the same bounded wait
        // and 504 as a watch (kube-apiserver's watch cache answers both alike).
        let rv = crate::options::resource_version(&self.query)?;
        if rv > 0
            && let Some(current) = self.wait_for_revision(rv).await?
        {
            return Err(ApiError::too_large_resource_version(rv, current));
        }
        let limit =
            crate::options::int_param::<i64>(&self.query, "limit")?.and_then(|l| usize::try_from(l).ok());
        let continue_after = match self.query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                let t: ContinueToken = serde_json::from_slice(&raw)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                Some(t.k)
            }
            None => None,
        };
        let options = ListOptions {
            predicate: Some(self.predicate()?),
            limit,
            continue_after,
        };
        let list = self
            .store()
            .list(&self.r().store_key(), self.target.namespace.as_deref(), options)
            .await
            .map_err(|e| self.store_err(e))?;
        let rv = list.revision.to_string();
        let token = list.continue_after.map(|k| {
            let raw = serde_json::to_vec(&ContinueToken { k, rv: list.revision }).unwrap_or_default();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        });
        let items: Vec<Value> = list.items.into_iter().map(|v| v.object).collect();
        if table::wants_table(&self.accept) {
            let t = table::table(
                self.r(),
                &items,
                &rv,
                token.as_deref(),
                self.include(),
                now_millis(),
            );
            return Ok(json_response(StatusCode::OK, &t, &[]));
        }
        let items: Vec<Value> = items.into_iter().map(|o| self.outward(o)).collect();
        let mut metadata = json!({"resourceVersion": rv});
        if let Some(t) = token {
            metadata["continue"] = json!(t);
            if let Some(n) = list.remaining {
                metadata["remainingItemCount"] = json!(n);
            }
        }
        let out = json!({"kind": format!("{}List", self.r().kind), "apiVersion": self.r().api_version(), "metadata": metadata, "items": items});
        Ok(json_response(StatusCode::OK, &out, &[]))
    }

    async fn watch(&self) -> Result<Response<Body>> {
        // timeoutSeconds counts from the request's start, the initial list included.
        let started = tokio::time::Instant::now();
        let predicate = self.predicate()?;
        let rv = crate::options::resource_version(&self.query)?;
        let bookmarks = self
            .query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true" || v == "1");
        let timeout = crate::options::int_param::<i64>(&self.query, "timeoutSeconds")?
            .map_or(1800, |t| u64::try_from(t).unwrap_or(0));
        let deadline = started
            .checked_add(Duration::from_secs(timeout))
            .unwrap_or_else(|| started + Duration::from_secs(86_400 * 365));
        // A revision the store has not reached yet: wait a bounded time for it, then answer
        // as kube-apiserver does (an ERROR event with a 504 "Too large resource version").
        let too_large = if rv > 0 {
            self.wait_for_revision(rv).await?
        } else {
            None
        };
        let resource = self.r();
        let as_table = table::wants_table(&self.accept);
        let include = self.include();
        let store_key = resource.store_key();
        let ns = self.target.namespace.clone();
        let render = move |kind: &str, object: Value| -> Bytes {
            let object = if as_table && kind != "BOOKMARK" && kind != "ERROR" {
                let rv = meta::str_at(&object, "metadata.resourceVersion")
                    .unwrap_or("")
                    .to_string();
                table::table(resource, &[object], &rv, None, include, now_millis())
            } else if events::is_events_v1(resource) && kind != "BOOKMARK" && kind != "ERROR" {
                events::to_events_v1(&object)
            } else {
                object
            };
            let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        // rv 0 / unset: synthetic ADDED events for the current state, then changes. They are
        // kept encoded, and shared by every watch that asks for the same list at the same
        // revision, until the client has taken them.
        let (initial, from) = if rv == 0 && too_large.is_none() {
            let current = self
                .store()
                .current_revision()
                .await
                .map_err(|e| self.store_err(e))?;
            let cache_key = format!(
                "{store_key}\0{}\0{}\0{}\0{as_table}\0{include:?}",
                ns.as_deref().unwrap_or(""),
                self.query.get("labelSelector").map_or("", String::as_str),
                self.query.get("fieldSelector").map_or("", String::as_str),
            );
            let list_predicate = predicate.clone();
            self.state
                .initial_lists
                .get_or_build(cache_key, current, || async {
                    let list = self
                        .store()
                        .list(
                            &store_key,
                            ns.as_deref(),
                            ListOptions {
                                predicate: Some(list_predicate),
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(|e| self.store_err(e))?;
                    let lines: Vec<Bytes> = list
                        .items
                        .into_iter()
                        .map(|v| render("ADDED", v.object))
                        .collect();
                    Ok::<_, ApiError>((Arc::new(lines), list.revision))
                })
                .await?
        } else {
            (Arc::new(Vec::new()), rv)
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(WATCH_BUFFER);
        let stream = if let Some(current) = too_large {
            let status = ApiError::too_large_resource_version(rv, current).to_status();
            let _ = tx.send(render("ERROR", status)).await;
            None
        } else {
            self.watch_store(&store_key, ns.as_deref(), from, &tx, &render)
                .await?
        };
        let shutdown = self.state.shutdown.clone();
        let stalled = self.state.limits.stalled_watch_timeout;
        let bookmark_every = self.state.bookmark_interval;
        let kind = resource.kind;
        let api_version = resource.api_version();
        let run = async move {
            for line in initial.iter() {
                if tokio::time::timeout(stalled, tx.send(line.clone()))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    return;
                }
            }
            let Some(mut stream) = stream else { return };
            let mut ticker = tokio::time::interval(bookmark_every);
            ticker.tick().await;
            let mut last = from;
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        let b = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}});
                        if tokio::time::timeout(stalled, tx.send(render("BOOKMARK", b))).await.map_or(true, |r| r.is_err()) { return; }
                    }
                    event = stream.next() => match event {
                        Some(Ok(ev)) => {
                            last = ev.revision;
                            let Some((kind, object)) = crate::selectors::selected_event(ev, predicate.as_ref()) else { continue };
                            // A client that takes nothing for this long is dropped, as
                            // kube-apiserver drops a watcher whose buffer stays full.
                            if tokio::time::timeout(stalled, tx.send(render(kind, object))).await.map_or(true, |r| r.is_err()) { return; }
                        }
                        Some(Err(StoreError::Expired { requested, compacted })) => {
                            let _ = tx.send(render("ERROR", ApiError::expired(requested, compacted).to_status())).await;
                            return;
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(render("ERROR", ApiError::internal(e.to_string()).to_status())).await;
                            return;
                        }
                        None => return,
                    }
                }
            }
        };
        // The deadline covers the initial events too: a client that never reads is dropped at
        // its timeout like any other.
        tokio::spawn(async move {
            tokio::select! {
                () = run => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = shutdown.cancelled() => {}
            }
        });
        // At the deadline the response ends, events still buffered for a slow reader included.
        let frames = tokio_stream_from(rx)
            .take_until(tokio::time::sleep_until(deadline))
            .map(|b| Ok::<_, Infallible>(Frame::data(b)));
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }

    /// Waits up to [`crate::limits::Limits::too_large_resource_version_wait`] for the store to
    /// reach `rv`; `Some(current)` if it did not.
    async fn wait_for_revision(&self, rv: u64) -> Result<Option<u64>> {
        let now = tokio::time::Instant::now();
        let until = now
            .checked_add(self.state.limits.too_large_resource_version_wait)
            .unwrap_or(now);
        loop {
            let current = self
                .store()
                .current_revision()
                .await
                .map_err(|e| self.store_err(e))?;
            if current >= rv {
                return Ok(None);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(Some(current));
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(50))).await;
        }
    }

    /// Opens the store's watch from `from`; a compacted revision becomes an ERROR event
    /// (410 Expired) and no stream.
    async fn watch_store(
        &self,
        store_key: &str,
        ns: Option<&str>,
        from: u64,
        tx: &tokio::sync::mpsc::Sender<Bytes>,
        render: &(dyn Fn(&str, Value) -> Bytes + Send + Sync),
    ) -> Result<Option<podvisor_store::WatchStream>> {
        match self.store().watch(store_key, ns, from).await {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::Expired { requested, compacted }) => {
                let status = ApiError::expired(requested, compacted).to_status();
                let _ = tx.send(render("ERROR", status)).await;
                Ok(None)
            }
            Err(e) => Err(self.store_err(e)),
        }
    }

    /// Checks kind and apiVersion, applies the URL's namespace, and validates fields.
    fn admit_shape(&self, mut object: Value) -> Result<(Value, Vec<String>)> {
        let r = self.r();
        let Some(map) = object.as_object_mut() else {
            return Err(ApiError::bad_request("the request body is not a JSON object"));
        };
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or(r.kind)
            .to_string();
        let av = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| r.api_version());
        if kind != r.kind || av != r.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            ))
            .with_kind_mismatch(&kind, r.kind));
        }
        map.insert("kind".into(), json!(r.kind));
        map.insert("apiVersion".into(), json!(av));
        let (mut object, warnings) = body::validate_fields(r, &object, self.field_validation())?;
        let meta = metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
        if r.namespaced {
            let url_ns = self.target.namespace.clone().unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        Ok((object, warnings))
    }

    /// Defaulting and validation of the typed kinds; returns validation warnings.
    fn default_and_validate(&self, object: &mut Value, old: Option<&Value>) -> Result<Vec<String>> {
        let r = self.r();
        let name = meta::str_at(object, "metadata.name").unwrap_or("").to_string();
        let bad = |e: serde_json::Error| ApiError::bad_request(e.to_string());
        let warnings = match (r.group, r.plural) {
            ("", "pods") => {
                let mut pod: Pod = serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::defaults::default_pod(&mut pod);
                let result = match old {
                    Some(o) => {
                        let old: Pod = serde_json::from_value(o.clone()).map_err(bad)?;
                        podvisor_api::validation::validate_pod_update(&old, &pod)
                    }
                    None => podvisor_api::validation::validate_pod(&pod),
                };
                let w = result.map_err(|e| ApiError::invalid(r, &name, &e))?;
                *object = serde_json::to_value(&pod).map_err(bad)?;
                w.iter().map(ToString::to_string).collect()
            }
            ("", "services") => {
                let mut svc: Service = serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::defaults::default_service(&mut svc);
                let w = podvisor_api::validation::validate_service(&svc)
                    .map_err(|e| ApiError::invalid(r, &name, &e))?;
                *object = serde_json::to_value(&svc).map_err(bad)?;
                w.iter().map(ToString::to_string).collect()
            }
            ("", "configmaps") => {
                let cm: ConfigMap = serde_json::from_value(object.clone()).map_err(bad)?;
                let result = match old {
                    Some(o) => {
                        let old: ConfigMap = serde_json::from_value(o.clone()).map_err(bad)?;
                        podvisor_api::validation::validate_config_map_update(&old, &cm)
                    }
                    None => podvisor_api::validation::validate_config_map(&cm),
                };
                result.map_err(|e| ApiError::invalid(r, &name, &e))?;
                Vec::new()
            }
            ("", "secrets") => {
                let mut secret: Secret = serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::validation::fold_string_data(&mut secret);
                podvisor_api::defaults::default_secret(&mut secret);
                let result = match old {
                    Some(o) => {
                        let old: Secret = serde_json::from_value(o.clone()).map_err(bad)?;
                        podvisor_api::validation::validate_secret_update(&old, &secret)
                    }
                    None => podvisor_api::validation::validate_secret(&secret),
                };
                result.map_err(|e| ApiError::invalid(r, &name, &e))?;
                *object = serde_json::to_value(&secret).map_err(bad)?;
                Vec::new()
            }
            (_, "events") if old.is_none() => {
                let event: podvisor_core::corev1::Event =
                    serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::validation::validate_event(&event, events::is_events_v1(r))
                    .map_err(|e| ApiError::invalid(r, &name, &e))?;
                Vec::new()
            }
            _ => Vec::new(),
        };
        Ok(warnings)
    }

    /// Gives a new Service its ClusterIP and node ports (`crate::alloc`); the stored Services
    /// are the allocation table.
    async fn allocate_service_addresses(&self, object: &mut Value) -> Result<()> {
        let all = self
            .store()
            .list("services", None, ListOptions::default())
            .await
            .map_err(|e| self.store_err(e))?;
        let used = crate::alloc::InUse::from_services(all.items.iter().map(|v| &v.object));
        crate::alloc::allocate(&self.state.service_ranges, object, &used).map_err(|e| {
            let name = meta::str_at(object, "metadata.name").unwrap_or("");
            ApiError::invalid_field(self.r(), name, &e.field, "FieldValueInvalid", &e.message)
        })
    }

    async fn create(&self, object: Value) -> Result<Response<Body>> {
        let (object, mut warnings) = self.admit_shape(object)?;
        let mut object = self.inward(object);
        let r = self.r();
        {
            let meta =
                metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            if name.is_empty() {
                match meta.get("generateName").and_then(Value::as_str) {
                    Some(prefix) if !prefix.is_empty() => {
                        let generated = meta::generate_name(prefix);
                        meta.insert("name".into(), json!(generated));
                    }
                    _ => {
                        return Err(ApiError::invalid_field(
                            r,
                            "",
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        ));
                    }
                }
            }
            meta.insert("uid".into(), json!(meta::new_uid()));
            meta.insert("creationTimestamp".into(), json!(rfc3339(now_millis())));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("resourceVersion");
            meta.remove("selfLink");
            meta.remove("managedFields");
        }
        if r.plural == "namespaces" && r.group.is_empty() {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        warnings.extend(self.default_and_validate(&mut object, None)?);
        if r.group.is_empty() && r.plural == "pods" {
            // As kube-apiserver's pod strategy: a new pod is Pending, with its QoS class.
            let pod: Pod =
                serde_json::from_value(object.clone()).map_err(|e| ApiError::bad_request(e.to_string()))?;
            object["status"] = json!({"phase": "Pending", "qosClass": podvisor_lifecycle::qos_class(&pod)});
        }
        // Service creates are serialised from allocation to write, so two never get one address.
        let _allocating = if r.group.is_empty() && r.plural == "services" {
            let guard = SERVICE_ALLOCATION.lock().await;
            self.allocate_service_addresses(&mut object).await?;
            Some(guard)
        } else {
            None
        };
        if r.namespaced {
            let ns = self.target.namespace.clone().unwrap_or_default();
            let namespaces =
                Resource::find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("no namespaces"))?;
            let Ok(namespace) = self
                .store()
                .get(&ObjectKey::new("namespaces", "", ns.as_str()))
                .await
            else {
                return Err(ApiError::not_found(namespaces, &ns));
            };
            if crate::namespaces::terminating(&namespace.object) {
                let name = meta::str_at(&object, "metadata.name").unwrap_or("");
                return Err(crate::namespaces::refuse_create(r, name, &ns));
            }
        }
        let name = meta::str_at(&object, "metadata.name").unwrap_or("").to_string();
        if self.dry_run(&Value::Null) {
            return self.respond(StatusCode::CREATED, &object, &warnings);
        }
        let created = self
            .store()
            .create(&self.key(&name), object)
            .await
            .map_err(|e| ApiError::from_store(e, r, &name))?;
        self.respond(StatusCode::CREATED, &created.object, &warnings)
    }

    /// Writes `new` over the stored `old` (revision `rev`), keeping server-owned fields.
    async fn replace(
        &self,
        mut new: Value,
        old: &Value,
        rev: u64,
        mut warnings: Vec<String>,
    ) -> Result<Response<Body>> {
        let r = self.r();
        let name = self.name().to_string();
        let status_only = self.target.sub.as_deref() == Some("status");
        if status_only {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            new = merged;
        } else if r.subresources.contains(&"status")
            && let Some(status) = old.get("status")
        {
            new["status"] = status.clone();
        }
        if meta::str_at(&new, "metadata.name") != Some(name.as_str()) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let expected = meta::str_at(&new, "metadata.resourceVersion").and_then(|v| v.parse::<u64>().ok());
        if let Some(e) = expected
            && e != rev
        {
            return Err(ApiError::conflict(r, &name));
        }
        if let (Some(m), Some(om)) = (metadata_mut(&mut new), old.get("metadata")) {
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match om.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        if !status_only {
            warnings.extend(self.default_and_validate(&mut new, Some(old))?);
        }
        // Removing the last finalizer of an object being deleted completes its deletion.
        let deleting = meta::str_at(&new, "metadata.deletionTimestamp").is_some();
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let pre = Preconditions {
            resource_version: Some(rev),
            uid: None,
        };
        if self.dry_run(&Value::Null) {
            return self.respond(StatusCode::OK, &new, &warnings);
        }
        // A namespace also waits for its spec.finalizers (`crate::namespaces` clears them).
        let namespace_finalizers = r.group.is_empty()
            && r.plural == "namespaces"
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if deleting && finalizers_empty && !namespace_finalizers && r.plural != "pods" {
            let gone = self
                .store()
                .delete(&self.key(&name), pre)
                .await
                .map_err(|e| self.store_err(e))?;
            return self.respond(StatusCode::OK, &gone.object, &warnings);
        }
        let updated = self
            .store()
            .update(&self.key(&name), new, pre)
            .await
            .map_err(|e| self.store_err(e))?;
        self.respond(StatusCode::OK, &updated.object, &warnings)
    }

    async fn update(&self, object: Value) -> Result<Response<Body>> {
        let (object, warnings) = self.admit_shape(object)?;
        let object = self.inward(object);
        let cur = self
            .store()
            .get(&self.key(self.name()))
            .await
            .map_err(|e| self.store_err(e))?;
        self.replace(object, &cur.object, cur.revision, warnings).await
    }

    async fn patch(&self, kind: PatchType, patch: Value) -> Result<Response<Body>> {
        for _ in 0..5 {
            let cur = self
                .store()
                .get(&self.key(self.name()))
                .await
                .map_err(|e| self.store_err(e))?;
            // events.k8s.io Events are patched as that version shows them.
            let shown = events::is_events_v1(self.r()).then(|| events::to_events_v1(&cur.object));
            let mut patched =
                patch::apply_off_workers(kind, shown.unwrap_or_else(|| cur.object.clone()), patch.clone())
                    .await?;
            // A patch without a resourceVersion applies to whatever is current.
            let pinned = patch.pointer("/metadata/resourceVersion").is_some();
            if !pinned && let Some(m) = metadata_mut(&mut patched) {
                m.insert("resourceVersion".into(), json!(cur.revision.to_string()));
            }
            let (patched, warnings) = self.admit_shape(patched)?;
            let patched = self.inward(patched);
            match self.replace(patched, &cur.object, cur.revision, warnings).await {
                Err(e) if e.code == 409 && !pinned => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(self.r(), self.name()))
    }

    async fn delete(&self, options: Value) -> Result<Response<Body>> {
        let r = self.r();
        let name = self.name().to_string();
        let key = self.key(&name);
        let is_namespace = r.group.is_empty() && r.plural == "namespaces";
        if is_namespace && crate::namespaces::IMMORTAL.contains(&name.as_str()) {
            return Err(ApiError::forbidden(r, &name, "this namespace may not be deleted"));
        }
        let crate::options::DeleteOptions {
            grace_period_seconds,
            precondition_resource_version: pre_rv,
            precondition_uid: pre_uid,
        } = crate::options::DeleteOptions::parse(&self.query, &options)?;
        let dry_run = self.dry_run(&options);
        for _ in 0..5 {
            let cur = self.store().get(&key).await.map_err(|e| self.store_err(e))?;
            let pre = Preconditions {
                resource_version: Some(cur.revision),
                uid: pre_uid.clone(),
            };
            if pre_rv.is_some_and(|rv| rv != cur.revision) {
                return Err(ApiError::conflict(r, &name));
            }
            let o = &cur.object;
            let has_finalizers = o
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let grace = if r.group.is_empty() && r.plural == "pods" {
                crate::options::pod_grace_period(grace_period_seconds, o)
            } else {
                0
            };
            // A namespace with spec.finalizers (`kubernetes`) terminates first: its contents are
            // deleted by `crate::namespaces`, which then removes it.
            let namespace_finalizers = is_namespace
                && o.pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            if grace == 0 && !has_finalizers && !namespace_finalizers {
                if dry_run {
                    return self.respond(StatusCode::OK, o, &[]);
                }
                match self.store().delete(&key, pre).await {
                    Ok(gone) => return self.respond(StatusCode::OK, &gone.object, &[]),
                    Err(StoreError::Conflict { .. }) if pre_uid.is_none() => continue,
                    Err(e) => return Err(self.store_err(e)),
                }
            }
            // Graceful: mark, and let the owner (the node, or whoever holds a finalizer) finish.
            let existing = o
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if existing.is_some_and(|e| e <= grace) {
                return self.respond(StatusCode::OK, o, &[]);
            }
            let mut marked = o.clone();
            if let Some(m) = metadata_mut(&mut marked) {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(rfc3339(crate::options::deadline_millis(now_millis(), grace))),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if is_namespace {
                marked["status"]["phase"] = json!("Terminating");
            }
            if dry_run {
                return self.respond(StatusCode::OK, &marked, &[]);
            }
            match self.store().update(&key, marked, pre).await {
                Ok(v) => return self.respond(StatusCode::OK, &v.object, &[]),
                Err(StoreError::Conflict { .. }) if pre_uid.is_none() => continue,
                Err(e) => return Err(self.store_err(e)),
            }
        }
        Err(ApiError::conflict(r, &name))
    }

    async fn delete_collection(&self, options: Value) -> Result<Response<Body>> {
        let list = self
            .store()
            .list(
                &self.r().store_key(),
                self.target.namespace.as_deref(),
                ListOptions {
                    predicate: Some(self.predicate()?),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.store_err(e))?;
        let mut items = Vec::new();
        for item in list.items {
            let name = meta::str_at(&item.object, "metadata.name")
                .unwrap_or("")
                .to_string();
            let ns = meta::str_at(&item.object, "metadata.namespace").map(str::to_string);
            let ctx = Ctx {
                state: self.state.clone(),
                target: Target {
                    resource: self.r(),
                    namespace: ns.or(self.target.namespace.clone()),
                    name: Some(name),
                    sub: None,
                },
                query: self.query.clone(),
                accept: "application/json".into(),
            };
            match ctx.delete(options.clone()).await {
                Ok(_) => items.push(self.outward(item.object)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let out = json!({"kind": format!("{}List", self.r().kind), "apiVersion": self.r().api_version(), "metadata": {"resourceVersion": list.revision.to_string()}, "items": items});
        Ok(json_response(StatusCode::OK, &out, &[]))
    }
}

impl ApiError {
    fn with_kind_mismatch(mut self, got: &str, want: &str) -> Self {
        if got != want {
            self.message = format!("the kind in the data ({got}) does not match the expected kind ({want})");
        }
        self
    }
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_namespaced_cluster_and_subresources() {
        let t = route("/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(
            (
                t.resource.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let t = route("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = route("/api/v1/pods").unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = route("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices").unwrap();
        assert_eq!(t.resource.kind, "EndpointSlice");
        assert!(route("/api/v1/pods/web").is_none());
        assert_eq!(
            route("/api/v1/namespaces/default/secrets").unwrap().resource.kind,
            "Secret"
        );
        assert!(route("/api/v1/namespaces/default/deployments").is_none());
        assert!(route("/api/v1/namespaces/default/pods/web/exec").is_none());
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
    }
}
