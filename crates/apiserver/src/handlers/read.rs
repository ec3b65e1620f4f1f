//! The reading verbs: get, list (with pagination and tables) and watch (from a revision, with
//! bookmarks, selectors and a bounded wait for revisions the store has not reached).

use super::*;

impl Ctx {
    pub(super) async fn get(&self) -> Result<Response<Body>> {
        let v = self
            .store()
            .get(&self.key(self.name()))
            .await
            .map_err(|e| self.store_err(e))?;
        self.respond(StatusCode::OK, &v.object, &[])
    }

    pub(super) async fn list(&self) -> Result<Response<Body>> {
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
        let token = match self.query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                let t: ContinueToken = serde_json::from_slice(&raw)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                Some(t)
            }
            None => None,
        };
        // Every page is read at the first page's revision (the token's), where the store
        // keeps old revisions (etcd): the pages make one consistent list. A token of revision 0
        // (handed out with an expired one) continues in the current state.
        let (continue_after, revision) = match token {
            Some(t) => (Some(t.k), Some(t.rv)),
            None => (None, None),
        };
        let resume_key = continue_after.clone();
        let options = ListOptions {
            predicate: Some(self.predicate()?),
            limit,
            continue_after,
            revision,
        };
        let list = self
            .store()
            .list(&self.r().store_key(), self.target.namespace.as_deref(), options)
            .await
            .map_err(|e| match e {
                // Like kube-apiserver, the answer to an expired token offers one that goes on
                // from the same key in the current state (an inconsistent list, it says).
                StoreError::Expired { .. } if resume_key.is_some() => {
                    let resume = resume_key.map(|k| ContinueToken { k, rv: 0 });
                    let token = resume
                        .and_then(|t| serde_json::to_vec(&t).ok())
                        .map(|raw| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
                    ApiError::continue_expired(token)
                }
                e => self.store_err(e),
            })?;
        let rv = list.revision.to_string();
        let token = match list.continue_after {
            Some(k) => {
                let raw = super::encode(&ContinueToken { k, rv: list.revision })?;
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
            }
            None => None,
        };
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
        // The items are moved in, not copied (`json!` would serialize each into a new value).
        let mut out = json!({"kind": format!("{}List", self.r().kind), "apiVersion": self.r().api_version(), "metadata": metadata});
        out["items"] = Value::Array(items);
        let response = json_response(StatusCode::OK, &out, &[]);
        // Freeing thousands of objects is work the client need not wait for.
        if let Value::Array(items) = out["items"].take()
            && items.len() > 100
        {
            tokio::task::spawn_blocking(move || drop(items));
        }
        Ok(response)
    }

    pub(super) async fn watch(&self) -> Result<Response<Body>> {
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
            } else if kind != "BOOKMARK" && kind != "ERROR" {
                outward(resource, object)
            } else {
                object
            };
            Bytes::from(watch_line(kind, &object))
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
        let state = self.state.clone();
        // What the line depends on besides the change: the version served (its conversion)
        // and the table options.
        let rendering: Arc<str> = Arc::from(format!(
            "{}/{}/{}\0{as_table}\0{include:?}",
            resource.group, resource.version, resource.plural
        ));
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
                // Read before the stream is polled: once the stream has nothing ready, every
                // change up to here has been delivered (`Store::published_revision`).
                let published = state.store.published_revision();
                tokio::select! {
                    // The stream before the ticker: a bookmark goes out only when the stream
                    // has nothing ready.
                    biased;
                    () = tx.closed() => return,
                    event = stream.next() => match event {
                        Some(Ok(ev)) => {
                            last = ev.revision;
                            let Some((kind, object)) = crate::selectors::selected_event(ev, predicate.as_ref()) else { continue };
                            let line = state.event_lines.get_or_render(last, kind, &rendering, object, |object| render(kind, object));
                            // A client that takes nothing for this long is dropped, as
                            // kube-apiserver drops a watcher whose buffer stays full.
                            if tokio::time::timeout(stalled, tx.send(line)).await.map_or(true, |r| r.is_err()) { return; }
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
                    },
                    _ = ticker.tick(), if bookmarks => {
                        // As kube-apiserver's: as far as the watch has seen, not only to its
                        // resource's last change, so a watch of a resource that rarely changes
                        // resumes near the present, not with a replay of all history since.
                        last = last.max(published.unwrap_or(0));
                        let b = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}});
                        if tokio::time::timeout(stalled, tx.send(render("BOOKMARK", b))).await.map_or(true, |r| r.is_err()) { return; }
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
    pub(super) async fn wait_for_revision(&self, rv: u64) -> Result<Option<u64>> {
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
    pub(super) async fn watch_store(
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
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
