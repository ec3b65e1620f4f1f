//! Routing and the request context of the verbs; the verbs themselves are in `read` (get,
//! list, watch) and `write` (create, update, patch, delete, deletecollection).

mod apply;
mod binding;
mod eviction;
mod read;
mod scale;
mod write;

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
use podvisor_store::{ListOptions, ObjectKey, Preconditions, Store, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::authz::Role;
use crate::body::{self, FieldValidation};
use crate::discovery;
use crate::meta::{self, metadata_mut, now_millis, rfc3339};
use crate::options::parse_query;
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
    /// Exec, attach and port-forward into this server's own node's pods.
    pub(crate) streams: Option<Arc<dyn podvisor_core::streams::PodStreams>>,
    /// `metrics.k8s.io`'s samples.
    pub(crate) resource_metrics: Arc<crate::resource_metrics::ResourceMetrics>,
    /// Where this server's Services get their ClusterIPs and node ports.
    pub(crate) allocator: Arc<crate::alloc::Allocator>,
    /// Request metrics, and the registry `/metrics` serves.
    pub(crate) metrics: Option<crate::metrics::Served>,
    /// The server's budgets.
    pub(crate) limits: crate::limits::Limits,
    /// Initial watch events shared between watches.
    pub(crate) initial_lists: crate::initial::InitialLists,
    /// Live watch events encoded once for every watch.
    pub(crate) event_lines: crate::initial::EventLines,
    /// The key node credentials are signed with, when agents may join.
    pub(crate) node_key: Option<String>,
}

/// Events a watch buffers for its client (each at most one object, 1.5 MiB).
const WATCH_BUFFER: usize = 16;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `value` as JSON, or the 500 `Status` to answer instead when it does not encode.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("the response could not be encoded: {e}")))
}

/// The `Status` of `e` as JSON (the constant is the last resort, should even that not encode).
pub(crate) fn status_json(e: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&e.to_status()).unwrap_or_else(|_| {
        br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"InternalError","code":500}"#
            .to_vec()
    })
}

/// One watch event's line: `{"type": kind, "object": object}` and a newline; an object that
/// does not encode is an `ERROR` event with the 500 `Status` instead (never an empty line).
pub(crate) fn watch_line<T: serde::Serialize + ?Sized>(kind: &str, object: &T) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Event<'a, T: ?Sized> {
        // In this order: as a JSON object's keys are sorted.
        object: &'a T,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    let mut line = encode(&Event { object, kind }).unwrap_or_else(|e| {
        tracing::error!(error = %e.message, "encoding a watch event");
        let mut line = br#"{"object":"#.to_vec();
        line.extend(status_json(&e));
        line.extend(br#","type":"ERROR"}"#);
        line
    });
    line.push(b'\n');
    line
}

/// A JSON response: `value` with `code`, or a 500 `Status` naming the error if `value` does
/// not encode (never an empty body).
fn json_response<T: serde::Serialize + ?Sized>(
    code: StatusCode,
    value: &T,
    warnings: &[String],
) -> Response<Body> {
    let (code, body) = match encode(value) {
        Ok(body) => (code, body),
        Err(e) => {
            tracing::error!(error = %e.message, "encoding a response");
            (StatusCode::INTERNAL_SERVER_ERROR, status_json(&e))
        }
    };
    let mut resp = Response::new(full(body));
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
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
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
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v, &[]));
    match path.trim_end_matches('/') {
        "/version" => return ok(discovery::version()),
        "/api" => return ok(discovery::api_versions()),
        "/apis" => return ok(discovery::api_group_list()),
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
    if path.starts_with("/apis/metrics.k8s.io/") && path.trim_end_matches('/') != "/apis/metrics.k8s.io" {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed(req.method().as_str()));
        }
        if path.trim_end_matches('/') == "/apis/metrics.k8s.io/v1beta1" {
            return ok(crate::resource_metrics::resource_list());
        }
        let store = state.store.clone();
        return ok(crate::resource_metrics::answer(&state.resource_metrics, &*store, &path, &query).await?);
    }
    if path.trim_end_matches('/') == crate::authz::NODE_CREDENTIALS_PATH {
        return node_credential(state, req).await;
    }
    if let Some(doc) = crate::openapi::serve(&path) {
        let (content_type, bytes) = doc?;
        let mut resp = Response::new(full(bytes));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return Ok(resp);
    }
    if let Some(review) = crate::reviews::Review::at(&path) {
        return self_review(review, req).await;
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
    let node = match req.extensions().get::<Role>() {
        Some(Role::Node(name)) => Some(name.clone()),
        _ => None,
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ctx = Ctx {
        state: state.clone(),
        target,
        query,
        accept,
        user_agent,
    };
    // A node writes only its own Node and Lease and the pods bound to it (NodeRestriction).
    if let Some(node) = &node
        && method != Method::GET
        && let Some(name) = ctx.target.name.clone()
    {
        ctx.restrict_to_node(node, &name).await?;
    }
    if ctx.target.sub.as_deref() == Some("log") {
        // Only pods serve `log` (`route` checks the resource's subresources).
        if ctx.target.name.is_none() {
            return Err(ApiError::no_route(&path));
        }
        let pod = ctx
            .store()
            .get(&ctx.key(ctx.name()))
            .await
            .map_err(|e| ctx.store_err(e))?;
        // A pod on a node that serves a kubelet endpoint (an agent): its kubelet answers.
        if let Some((kubelet, token)) = ctx.kubelet_of(&pod.object).await {
            let ns = ctx.target.namespace.as_deref().unwrap_or("default");
            return crate::kubelet::forward(kubelet, ns, ctx.name(), req.uri().query(), &token).await;
        }
        let options = crate::logs::LogOptions::from_query(&ctx.query);
        return crate::logs::serve(state.logs.clone(), pod.object, options, state.shutdown.clone()).await;
    }
    if let Some(kind) = ctx
        .target
        .sub
        .as_deref()
        .and_then(crate::pod_streams::StreamKind::parse)
    {
        if !matches!(method, Method::GET | Method::POST) {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        let pod = ctx
            .store()
            .get(&ctx.key(ctx.name()))
            .await
            .map_err(|e| ctx.store_err(e))?
            .object;
        if let Some((kubelet, token)) = ctx.kubelet_of(&pod).await {
            let ns = ctx.target.namespace.clone().unwrap_or_default();
            return crate::pod_streams::forward(kubelet, &token, kind, &ns, ctx.name(), req).await;
        }
        let Some(streams) = state.streams.clone() else {
            return Err(ApiError::bad_request(format!(
                "pod \"{}\" is not on a node this server can reach",
                ctx.name()
            )));
        };
        return crate::pod_streams::serve_local(req, kind, &pod, streams);
    }
    // A pod's POST-only subresources, each taking one object: a Binding or an Eviction.
    if let sub @ Some("binding" | "eviction") = ctx.target.sub.as_deref() {
        if ctx.target.resource.plural != "pods" || ctx.target.name.is_none() {
            return Err(ApiError::no_route(&path));
        }
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        let bytes = body::read(req.into_body()).await?;
        let object = body::decode_request(&content_type, bytes, ctx.field_validation()).await?;
        return match sub {
            Some("binding") => ctx.bind(object).await,
            _ => ctx.evict(object).await,
        };
    }
    if ctx.target.sub.as_deref() == Some("scale") {
        let request = match method {
            Method::GET => scale::ScaleRequest::Get,
            Method::PATCH => {
                let kind = PatchType::from_content_type(&content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
                let bytes = body::read(req.into_body()).await?;
                let patch: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                scale::ScaleRequest::Patch(kind, patch)
            }
            Method::PUT => {
                let bytes = body::read(req.into_body()).await?;
                scale::ScaleRequest::Replace(
                    body::decode_request(&content_type, bytes, FieldValidation::Ignore).await?,
                )
            }
            m => return Err(ApiError::method_not_allowed(m.as_str())),
        };
        return ctx.scale(request).await;
    }
    // `namespaces/{name}/finalize` is written whole, as the namespace's update (`replace`).
    if ctx.target.sub.as_deref() == Some("finalize") && method != Method::PUT {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let applying = method == Method::PATCH && apply::is_apply(&content_type);
    ctx.check_write_options(&method, applying)?;
    match (method, ctx.target.name.is_some()) {
        (Method::PATCH, true) if applying => {
            ctx.apply(body::read(req.into_body()).await?, node.as_deref())
                .await
        }
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
            let object = body::decode_request(&content_type, bytes, ctx.field_validation()).await?;
            if let Some(node) = &node {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                crate::authz::node_may_write(node, &ctx.r().store_key(), name, None)?;
            }
            ctx.create(object).await
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

/// `POST` of a self-subject review ([`crate::reviews`]): answered for the request's own role,
/// 201 as kube-apiserver answers a create.
async fn self_review<B>(review: crate::reviews::Review, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(req.method().as_str()));
    }
    let role = req.extensions().get::<Role>().cloned();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let bytes = body::read(req.into_body()).await?;
    let object = body::decode_request(&content_type, bytes, FieldValidation::Ignore).await?;
    let answer = crate::reviews::answer(review, role.as_ref(), object)?;
    Ok(json_response(StatusCode::CREATED, &answer, &[]))
}

/// `POST /apis/podvisor.io/v1/nodecredentials` with `{"nodeName": N}`: the credential of
/// node N (a bearer token only that node's requests are allowed with), for the agents' join
/// token to be exchanged at an agent's start, as kubelet TLS bootstrap exchanges a bootstrap
/// token for a client certificate. 404 where agents cannot join (no TLS).
async fn node_credential<B>(state: &Arc<State>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_owned();
    let Some(key) = &state.node_key else {
        return Err(ApiError::no_route(&path));
    };
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(req.method().as_str()));
    }
    // Only a join token is exchanged; the credential names it, and lasts while it does.
    let Some(Role::Bootstrap(join_id)) = req.extensions().get::<Role>().cloned() else {
        return Err(ApiError::forbidden_message(
            "only a join token (a bootstrap token) is exchanged for a node's credential",
        ));
    };
    let bytes = body::read(req.into_body()).await?;
    let asked: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding the node credential request: {e}")))?;
    let name = asked["nodeName"].as_str().unwrap_or_default();
    if let Some(why) = podvisor_api::validation::format::is_dns1123_subdomain(name).first() {
        return Err(ApiError::bad_request(format!(
            "nodeName: Invalid value: \"{name}\": {why}"
        )));
    }
    let token = crate::auth::node_token(key, name, &join_id);
    // `kubeletToken`: what the API servers present to this node's kubelet endpoint.
    let answer = json!({"kind": "NodeCredential", "apiVersion": "podvisor.io/v1", "nodeName": name,
        "token": token, "kubeletToken": crate::kubelet::server_token(key, name)});
    Ok(json_response(StatusCode::CREATED, &answer, &[]))
}

/// A stored object as `resource` shows it, without a copy when it is shown as stored.
fn outward(resource: &Resource, object: Value) -> Value {
    let converted = match resource.strategy.shown(&object) {
        std::borrow::Cow::Owned(shown) => Some(shown),
        std::borrow::Cow::Borrowed(_) => None,
    };
    converted.unwrap_or(object)
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
    /// The `User-Agent`, whose prefix names the manager of a write without `fieldManager`.
    user_agent: Option<String>,
}

impl Ctx {
    /// NodeRestriction for a write of the named object by `node`: its own Node and Lease, and
    /// pods bound to it (a missing pod is left to the verb's 404).
    async fn restrict_to_node(&self, node: &str, name: &str) -> Result<()> {
        let resource = self.r().store_key();
        let pod_node = if resource == "pods" {
            match self.store().get(&self.key(name)).await {
                Ok(pod) => pod
                    .object
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                Err(_) => return Ok(()),
            }
        } else {
            None
        };
        crate::authz::node_may_write(node, &resource, name, pod_node.as_deref())
    }

    /// The kubelet endpoint of the node `pod` is bound to, and the token to present there,
    /// when that node reports one and this server holds the node key.
    async fn kubelet_of(&self, pod: &Value) -> Option<(std::net::SocketAddr, String)> {
        let key = self.state.node_key.as_ref()?;
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
        let stored = self.store().get(&ObjectKey::new("nodes", "", node)).await.ok()?;
        let kubelet = crate::kubelet::endpoint_of(&stored.object)?;
        Some((kubelet, crate::kubelet::server_token(key, node)))
    }

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
        Ok(json_response(code, &self.r().strategy.shown(object), warnings))
    }

    /// A stored object as this resource shows it (its strategy's `shown`).
    fn outward(&self, object: Value) -> Value {
        outward(self.r(), object)
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
            self.r().strategy.field_selectors(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Arc::new(move |o: &Value| labels.matches(o) && fields.matches(o)))
    }
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
        assert!(route("/api/v1/namespaces/default/pods/web/exec").is_some());
        assert!(route("/api/v1/namespaces/default/pods/web/shell").is_none());
    }

    /// A value that does not encode as JSON: a map whose keys are not strings.
    fn unencodable() -> std::collections::BTreeMap<(u8, u8), u8> {
        [((1, 2), 3)].into()
    }

    #[tokio::test]
    async fn a_response_that_does_not_encode_is_a_500_status_not_an_empty_body() {
        let resp = json_response(StatusCode::OK, &unencodable(), &[]);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (&status["kind"], &status["code"], &status["reason"]),
            (&json!("Status"), &json!(500), &json!("InternalError"))
        );
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("the response could not be encoded: key must be a string"),
            "{message}"
        );
        // What encodes is answered as it is.
        let resp = json_response(StatusCode::CREATED, &json!({"a": 1}), &[]);
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"a":1}"#);
    }

    #[test]
    fn a_watch_event_that_does_not_encode_is_an_error_event_not_an_empty_line() {
        let line = watch_line("ADDED", &unencodable());
        assert!(line.ends_with(b"\n"));
        let event: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(event["type"], "ERROR");
        assert_eq!(event["object"]["kind"], "Status");
        assert_eq!(event["object"]["code"], 500);
        assert_eq!(
            watch_line("ADDED", &json!({"a": 1})),
            b"{\"object\":{\"a\":1},\"type\":\"ADDED\"}\n"
        );
    }
}
