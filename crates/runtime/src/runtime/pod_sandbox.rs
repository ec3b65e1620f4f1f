//! Pod sandboxes: the holder process with its network, UTS and IPC namespaces, the veth and IP
//! on the bridge (or the host-network fallback), the pod's hosts and resolv.conf files, and
//! their teardown.

use super::*;

impl ProcessRuntime {
    pub(super) async fn teardown(&self, uid: &str, state: SandboxState, fate: Fate) {
        state.fate.send_replace(fate);
        drop(state.namespaces);
        // Before the pod's group, which the caller removes next (the removal thread takes
        // them in turn): a group with child groups is read for them first.
        for kept in state.kept_groups.into_values() {
            kept.group.remove();
        }
        if let Some(pid) = state.holder {
            self.inner.procs.signal(pid, Signal::SIGKILL);
            self.inner.procs.wait_gone(pid).await;
        }
        // The veth pair goes with the pod's network namespace, which the kernel destroys (in
        // batches, off this path) once the holder and every fd of it are gone: deleting it
        // here instead waited an RCU grace period per pod under the global rtnl lock (57 ms
        // each with 20 pods torn down at once), and even a lookup waits for that lock while
        // the kernel destroys namespaces. Should something keep the namespace alive, the host
        // end is deleted after a while (unless a new sandbox of the pod took its name).
        if let (Some(veth), Some(index)) = (state.host_veth.clone(), state.host_veth_index) {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(VETH_GRACE).await;
                let net = &this.inner.net;
                if let Ok(Some(now)) = net.link_index(&veth).await
                    && now == index
                    && let Err(e) = net.delete_veth(&veth).await
                {
                    tracing::warn!(error = %e, "deleting veth");
                }
            });
        }
        if let Err(e) = lock(&self.inner.ipam).release(uid) {
            tracing::warn!(error = %e, "releasing pod IP");
        }
        let _ = fs::remove_file(
            self.inner
                .config
                .data_dir
                .join("sandboxes")
                .join(format!("{uid}.json")),
        );
        let _ = &state.pod_dir;
    }

    pub(super) async fn create_sandbox_inner(&self, pod: &corev1::Pod) -> Result<Sandbox, SandboxError> {
        let (_, _, uid) = pod_name(pod);
        if uid.is_empty() {
            return Err(SandboxError::NoUid);
        }
        let old = lock(&self.inner.sandboxes).remove(&uid);
        if let Some(old) = old {
            self.teardown(&uid, old, Fate::Removed).await;
        }
        let pod_dir = self.pod_dir_for(pod);
        fs::create_dir_all(&pod_dir).map_err(|source| SandboxError::PodDir {
            path: pod_dir.clone(),
            source,
        })?;
        let wants_host = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let hostname = hostname_of(pod);
        let (fate_tx, fate_rx) = watch::channel(Fate::Alive);
        let mut warnings = Vec::new();
        if wants_host || !self.inner.caps.namespaces {
            if !wants_host {
                let why = if self.inner.caps.root {
                    "namespaces are disabled or unavailable"
                } else {
                    "the node does not run as root"
                };
                warnings.push(format!(
                    "pod uses the host network: {why}, so it gets no network, UTS or IPC namespace and no own IP"
                ));
                let policy = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.dns_policy.as_deref())
                    .unwrap_or("ClusterFirst");
                if policy == "ClusterFirst" {
                    warnings.push(format!(
                        "Service names will not resolve in this pod: dnsPolicy ClusterFirst needs the pod's own network namespace ({why}), so the pod keeps the host's resolver"
                    ));
                }
            }
            let ip = self.node_ip().await;
            self.write_sandbox_record(&SandboxRecord {
                pod_uid: uid.clone(),
                holder: None,
                host_veth: None,
                pod_ip: None,
                host_network: true,
                grace_seconds: grace_of(pod),
            });
            lock(&self.inner.sandboxes).insert(uid, SandboxState::host_network(pod_dir, fate_tx));
            return Ok(Sandbox {
                pod_ip: ip.or_else(|| Some("127.0.0.1".into())),
                host_network: true,
                warnings,
                lost: Box::pin(async { std::future::pending::<()>().await }),
            });
        }
        let ip = lock(&self.inner.ipam).allocate(&uid)?;
        match self
            .create_netns_sandbox(pod, &uid, &pod_dir, &hostname, ip, fate_tx)
            .await
        {
            Ok(state) => {
                lock(&self.inner.sandboxes).insert(uid.clone(), state);
                Ok(Sandbox {
                    pod_ip: Some(ip.to_string()),
                    host_network: false,
                    warnings,
                    lost: lost(fate_rx),
                })
            }
            Err(e) => {
                let _ = lock(&self.inner.ipam).release(&uid);
                Err(e)
            }
        }
    }

    pub(super) async fn create_netns_sandbox(
        &self,
        pod: &corev1::Pod,
        uid: &str,
        pod_dir: &Path,
        hostname: &str,
        ip: Ipv4Addr,
        fate: watch::Sender<Fate>,
    ) -> Result<SandboxState, SandboxError> {
        let hosts = pod_dir.join("hosts");
        let resolv = pod_dir.join("resolv.conf");
        let file = |file| move |source| SandboxError::File { file, source };
        fs::write(&hosts, hosts_file(pod, hostname, &ip.to_string())).map_err(file("hosts"))?;
        fs::write(&resolv, resolv_file(pod, self.inner.config.cluster_dns)).map_err(file("resolv.conf"))?;
        let spec = sandbox::HolderSpec {
            hostname: hostname.to_string(),
            hosts: sandbox::cstring(&hosts).zip(sandbox::bind_target("/etc/hosts")),
            resolv: sandbox::cstring(&resolv).zip(sandbox::bind_target("/etc/resolv.conf")),
            program: self
                .inner
                .monitor
                .as_ref()
                .map(crate::sys::MonitorProgram::raw_fd),
        };
        let procs = self.inner.procs.clone();
        let holder = tokio::task::spawn_blocking(move || procs.spawn_holder(&spec))
            .await
            .map_err(SandboxError::Task)??;
        let pid = holder.pid;
        let procs = &self.inner.procs;
        let namespaces = match procs.namespaces_of(pid) {
            Ok(namespaces) => namespaces,
            Err(e) => {
                procs.signal(pid, Signal::SIGKILL);
                return Err(SandboxError::Namespaces(e));
            }
        };
        let host_veth = format!("pv{}", &short_hash(uid));
        self.write_sandbox_record(&SandboxRecord {
            pod_uid: uid.to_string(),
            holder: Some(pid),
            host_veth: Some(host_veth.clone()),
            pod_ip: Some(ip.to_string()),
            host_network: false,
            grace_seconds: grace_of(pod),
        });
        let pidfd = procs.pidfd(pid);
        // The holder's exit: reap it and report loss unless the sandbox was removed on purpose.
        lost_when(fate.clone(), procs.wait_reap(pid, pidfd));
        let net = network::PodNet {
            host_veth: &host_veth,
            ip,
            prefix: self.inner.cidr.prefix(),
            gateway: self.inner.cidr.first_host(),
        };
        let net_result = match self.bridge_index().await {
            Ok(bridge) => self.inner.net.setup_pod(bridge, &namespaces.net, &net).await,
            Err(e) => Err(e),
        };
        if net_result.is_err() {
            *self.inner.bridge.lock().await = None;
        }
        let state = SandboxState {
            pod_dir: pod_dir.to_path_buf(),
            holder: Some(pid),
            namespaces: Some(namespaces),
            host_veth: Some(host_veth.clone()),
            host_veth_index: net_result.as_ref().ok().copied(),
            fate,
            kept_groups: HashMap::new(),
        };
        if let Err(e) = net_result {
            // Half set up: whatever was created goes now.
            let _ = self.inner.net.delete_veth(&host_veth).await;
            self.teardown(uid, state, Fate::Removed).await;
            return Err(SandboxError::Network(e));
        }
        Ok(state)
    }
}

/// Marks the sandbox lost when `holder_gone` resolves, unless it was removed on purpose.
pub(super) fn lost_when<T: Send + 'static>(
    fate: watch::Sender<Fate>,
    holder_gone: impl std::future::Future<Output = T> + Send + 'static,
) {
    tokio::spawn(async move {
        holder_gone.await;
        fate.send_if_modified(|f| {
            if *f == Fate::Alive {
                *f = Fate::Lost;
                true
            } else {
                false
            }
        });
    });
}

/// Resolves when the sandbox whose fate `rx` follows is lost (never once it was removed on
/// purpose).
pub(super) fn lost(mut rx: watch::Receiver<Fate>) -> futures_util::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        loop {
            let fate = *rx.borrow_and_update();
            match fate {
                Fate::Lost => return,
                Fate::Removed => std::future::pending::<()>().await,
                Fate::Alive => {}
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
}

impl ProcessRuntime {
    /// `<data_dir>/sandboxes/<uid>.json`, written whole or not at all.
    fn write_sandbox_record(&self, record: &SandboxRecord) {
        let dir = self.inner.config.data_dir.join("sandboxes");
        let path = dir.join(format!("{}.json", record.pod_uid));
        let tmp = dir.join(format!(".{}.json.tmp", record.pod_uid));
        let written = fs::write(&tmp, serde_json::to_vec(record).unwrap_or_default())
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(error = %e, "writing the sandbox record: a node restart will not adopt this pod");
        }
    }
}

/// The pod's `terminationGracePeriodSeconds` (30 s when unset).
fn grace_of(pod: &corev1::Pod) -> Option<i64> {
    Some(
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30),
    )
}

pub(super) fn hosts_file(pod: &corev1::Pod, hostname: &str, ip: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (podvisor).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let spec = pod.spec.as_ref();
    let fqdn = match spec.and_then(|s| s.subdomain.as_deref()) {
        Some(sub) => format!(
            "{hostname}.{sub}.{}.svc.cluster.local\t",
            podvisor_core::object::namespace_of(&pod.metadata)
        ),
        None => String::new(),
    };
    s.push_str(&format!("{ip}\t{fqdn}{hostname}\n"));
    for alias in spec.and_then(|s| s.host_aliases.as_ref()).into_iter().flatten() {
        s.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    s
}

/// The pod's resolv.conf: the cluster DNS with the cluster search domains for `ClusterFirst`
/// (and `ClusterFirstWithHostNet`) when there is one, else the host's; then `dnsConfig`.
pub(super) fn resolv_file(pod: &corev1::Pod, cluster_dns: Option<Ipv4Addr>) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut options = Vec::new();
    if let (Some(dns), "ClusterFirst" | "ClusterFirstWithHostNet") = (cluster_dns, policy) {
        let ns = podvisor_core::object::namespace_of(&pod.metadata);
        servers.push(dns.to_string());
        searches.extend([
            format!("{ns}.svc.cluster.local"),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ]);
        options.push("ndots:5".to_string());
    } else if policy != "None" {
        for line in fs::read_to_string("/etc/resolv.conf").unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => servers.extend(words.map(str::to_string)),
                Some("search") => searches.extend(words.map(str::to_string)),
                Some("options") => options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            if let Some(name) = &o.name {
                options.push(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name.clone(),
                });
            }
        }
    }
    let mut s = String::new();
    if !searches.is_empty() {
        s.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}
