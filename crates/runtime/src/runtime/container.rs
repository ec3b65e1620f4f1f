//! Containers: the launch (mounts, cgroups, logs, termination-message file, spawn), exec in a
//! container's context, and supervision of a running instance until its exit is reported
//! (leftovers killed, termination message read, old instances' logs pruned).

use super::*;

impl ProcessRuntime {
    pub(super) fn container_limits(pod: &corev1::Pod, c: &corev1::Container) -> Limits {
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let get = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
        let ann = pod.metadata.annotations.as_ref();
        let pids = ann
            .and_then(|a| {
                a.get(&format!("{PIDS_LIMIT_CONTAINER_PREFIX}{}", c.name))
                    .or_else(|| a.get(PIDS_LIMIT_ANNOTATION))
            })
            .and_then(|v| v.trim().parse().ok());
        Limits {
            memory_bytes: get("memory").and_then(|q| podvisor_core::quantity::memory_bytes(&q)),
            cpu_millis: get("cpu").and_then(|q| podvisor_core::quantity::cpu_millis(&q)),
            pids,
        }
    }

    pub(super) async fn start_inner(&self, launch: ContainerLaunch) -> Result<Started, String> {
        let ContainerLaunch {
            pod,
            pod_ip,
            container,
            restart_count,
            mounts,
        } = launch;
        // The container's mounts (only where it gets a mount namespace of its own), and how a
        // path inside it maps to the host before they are made.
        let mounts = if self.inner.caps.termination_message_path {
            mounts
        } else {
            Vec::new()
        };
        let view = |p: &Path| -> PathBuf {
            mounts
                .iter()
                .filter(|m| p.starts_with(&m.container_path))
                .max_by_key(|m| m.container_path.len())
                .map_or_else(
                    || p.to_path_buf(),
                    |m| {
                        let rest = p.strip_prefix(&m.container_path).unwrap_or(p);
                        if rest.as_os_str().is_empty() {
                            m.host_path.clone()
                        } else {
                            m.host_path.join(rest)
                        }
                    },
                )
        };
        let (_, _, uid) = pod_name(&pod);
        let hostname = if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            hostname_of(&pod)
        };
        let source = env::FieldSource {
            pod: &pod,
            pod_ip: pod_ip.as_deref(),
            node_name: &self.inner.config.node_name,
        };
        let env = env::build(&container, &source, &hostname).map_err(|e| e.to_string())?;
        let argv = env::argv(&container, &env);
        let Some(program) = argv.first() else {
            return Err("no command given".into());
        };
        let cwd = PathBuf::from(
            container
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
        );
        if !view(&cwd).is_dir() {
            return Err(format!(
                "chdir to cwd ({:?}) set in config.json failed: no such file or directory",
                cwd.display().to_string()
            ));
        }
        let path_env = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(env::DEFAULT_PATH, |(_, v)| v.as_str());
        let resolved = spawn::resolve(program, path_env, &cwd, &view)?;
        let sc = container.security_context.as_ref();
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let to_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        let uid_run = to_u32(sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)));
        let gid_run = to_u32(
            sc.and_then(|s| s.run_as_group)
                .or(psc.and_then(|s| s.run_as_group)),
        );

        // Files: log, termination message.
        let dir = self.pod_dir_for(&pod).join(&container.name);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        prune_old_instances(&dir, restart_count);
        let log_path = dir.join(format!("{restart_count}.log"));
        let log = LogFile::create(
            log_path.clone(),
            self.inner.config.log_max_bytes,
            self.inner.config.log_max_files,
        )
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log = Arc::new(Mutex::new(log));
        {
            let mut live = lock(&self.inner.live_logs);
            live.retain(|_, l| l.strong_count() > 0);
            live.insert(log_path.clone(), Arc::downgrade(&log));
        }
        // One file per container, emptied for each instance (a kept mount namespace has it
        // bound already).
        let term_host = dir.join("termination-log");
        termination_file(&term_host, uid_run, gid_run)
            .map_err(|e| format!("{}: {e}", term_host.display()))?;
        let term_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        // Sandbox namespaces, and the holder whose mount table they start from.
        let (ns, holder) = lock(&self.inner.sandboxes).get(&uid).map_or((None, None), |s| {
            let ns = s
                .namespaces
                .as_ref()
                .map(|n| (n.net.clone(), n.uts.clone(), n.ipc.clone(), n.mnt.clone()));
            (ns, s.holder)
        });
        let key = (uid.clone(), container.name.clone());
        let mut kept_mnt: Option<Arc<OwnedFd>> = None;
        let mut origin = None;
        let mount_plan = if self.inner.caps.termination_message_path {
            let mut binds: Vec<mounts::BindSpec> = mounts
                .iter()
                .map(|m| mounts::BindSpec {
                    source: m.host_path.clone(),
                    target: m.container_path.clone(),
                    read_only: m.read_only,
                })
                .collect();
            // The termination-message file, unless a volume is mounted there.
            if Path::new(&term_path).is_absolute() && !binds.iter().any(|b| b.target == term_path) {
                binds.push(mounts::BindSpec {
                    source: term_host.clone(),
                    target: term_path.clone(),
                    read_only: false,
                });
            }
            origin = MountOrigin::of(&binds, ns.as_ref().map(|n| n.3.as_ref()));
            kept_mnt = lock(&self.inner.mount_namespaces)
                .get(&key)
                .filter(|k| origin.as_ref() == Some(&k.made_from))
                .map(|k| k.ns.clone());
            if kept_mnt.is_some() {
                None
            } else {
                let stage = self.inner.config.data_dir.join("rootfs");
                // The mounts of the namespace the container starts from: its sandbox's, or ours.
                let mountinfo = holder.map_or_else(
                    || "/proc/self/mountinfo".to_string(),
                    |pid| format!("/proc/{pid}/mountinfo"),
                );
                let mount_points = mounts::mount_points(&fs::read_to_string(mountinfo).unwrap_or_default());
                Some(mounts::MountPlan::prepare(
                    &binds,
                    self.inner.hidden_data_dir.as_deref(),
                    &stage,
                    &mount_points,
                )?)
            }
        } else {
            None
        };

        use std::os::fd::AsRawFd;
        let mut join = match &ns {
            Some((net, uts, ipc, mnt)) => spawn::JoinFds {
                net: Some(net.as_raw_fd()),
                uts: Some(uts.as_raw_fd()),
                ipc: Some(ipc.as_raw_fd()),
                mnt: Some(mnt.as_raw_fd()),
            },
            None => spawn::JoinFds::default(),
        };
        if let Some(kept) = &kept_mnt {
            // The predecessor's namespace, as it was made: joined, not copied.
            join.mnt = Some(kept.as_raw_fd());
        }

        // Cgroup.
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let cg_name = format!("{}-{restart_count}", container.name);
        let limits = Self::container_limits(&pod, &container);
        let (cgroup, missing) = self
            .inner
            .cgroups
            .create(&uid, &cg_name, limits)
            .map_err(|e| e.to_string())?;
        if !missing.is_empty() {
            tracing::warn!(container = %container.name, ?missing, "resource limits not enforced: controller unavailable");
        }
        let open_join = || -> Result<spawn::CgroupJoin, String> {
            let open = |p: &Path, write: bool| {
                fs::OpenOptions::new()
                    .read(!write)
                    .write(write)
                    .open(p)
                    .map(OwnedFd::from)
                    .map_err(|e| format!("{}: {e}", p.display()))
            };
            let (v2, v1) = cgroup.join_paths();
            let mut join = spawn::CgroupJoin::default();
            if let Some((dir, procs)) = v2 {
                join.v2_dir = Some(open(&dir, false)?);
                join.v2_procs = Some(open(&procs, true)?);
            }
            for tasks in v1 {
                join.v1_tasks.push(open(&tasks, true)?);
            }
            Ok(join)
        };
        let cgroups = match open_join() {
            Ok(join) => join,
            Err(e) => {
                cgroup.remove();
                return Err(e);
            }
        };
        let cwd_c = sandbox::cstring(&cwd).ok_or("working directory contains a NUL byte")?;
        let setup = spawn::ChildSetup {
            cgroups,
            join,
            mounts: mount_plan,
            cwd: cwd_c,
            uid: uid_run,
            gid: gid_run,
        };
        let (out_r, out_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let spawned = {
            let mut owned = process::owned();
            let r = spawn::spawn(&resolved, &argv, &env, setup, out_w, err_w);
            if let Ok(s) = &r {
                owned.insert(s.pid);
            }
            r
        };
        let spawned = match spawned {
            Ok(x) => x,
            Err(e) => {
                cgroup.remove();
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        format!("exec: \"{program}\": executable file not found in $PATH")
                    }
                    std::io::ErrorKind::PermissionDenied => format!("exec: \"{program}\": permission denied"),
                    _ => format!("exec: \"{program}\": {e}"),
                });
            }
        };
        let pid = spawned.pid;
        let pidfd = spawned.pidfd.or_else(|| process::pidfd_open(pid).ok());

        // The container's own mount namespace (kept for its next instance), and its exec
        // context.
        let own_mnt = if !self.inner.caps.termination_message_path {
            None
        } else if kept_mnt.is_some() {
            kept_mnt.clone()
        } else {
            let opened = fs::File::open(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .map(|f| Arc::new(OwnedFd::from(f)));
            if let (Some(made_from), Some(mnt)) = (origin, &opened) {
                let kept = KeptMountNs {
                    made_from,
                    ns: mnt.clone(),
                };
                lock(&self.inner.mount_namespaces).insert(key, kept);
            }
            opened
        };
        let mut namespaces = Vec::new();
        if let Some((net, uts, ipc, mnt)) = &ns {
            namespaces.push((net.clone(), CloneFlags::CLONE_NEWNET));
            namespaces.push((uts.clone(), CloneFlags::CLONE_NEWUTS));
            namespaces.push((ipc.clone(), CloneFlags::CLONE_NEWIPC));
            namespaces.push((own_mnt.unwrap_or_else(|| mnt.clone()), CloneFlags::CLONE_NEWNS));
        } else if let Some(mnt) = own_mnt {
            namespaces.push((mnt, CloneFlags::CLONE_NEWNS));
        }
        let exec_ctx = exec::ExecContext {
            namespaces,
            env,
            cwd,
            uid: uid_run,
            gid: gid_run,
        };

        let id = ContainerId(format!(
            "{}-{}-{restart_count}-{n}",
            short_hash(&uid),
            container.name
        ));
        let stop_signal = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.as_deref())
            .and_then(|s| {
                s.parse::<Signal>()
                    .ok()
                    .or_else(|| format!("SIG{s}").parse().ok())
            })
            .unwrap_or(Signal::SIGTERM);
        let (stop_tx, stop_rx) = watch::channel(None);
        let state = Arc::new(ContainerState {
            main_pid: pid,
            stop_signal,
            stop: stop_tx,
            exec_ctx: Mutex::new(Some(exec_ctx)),
            exec_tx: Mutex::new(None),
        });
        lock(&self.inner.containers).insert(id.clone(), state);

        let pumps = [
            pump_task(out_r, Stream::Stdout, log.clone()),
            pump_task(err_r, Stream::Stderr, log.clone()),
        ];
        let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let exit_id = id.clone();
        tokio::spawn(async move {
            let (status, killed) = supervise(pid, pidfd, stop_rx, &cgroup).await;
            kill_leftovers(pid, &cgroup, killed).await;
            for p in pumps {
                // Output of processes that escaped both group and cgroup is not waited for.
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
            let status = if cgroup.oom_killed() {
                ExitStatus::OomKilled
            } else {
                status
            };
            let message = termination_message(&term_host, fallback, status, &log_path);
            // Forgotten before the exit is reported (no stop or exec may reach a pid that is
            // gone), but released after it, on the blocking pool: closing the container's
            // namespace fds can mean unmounting its whole mount namespace, which waits for RCU,
            // and the next instance has groups of its own (removing the pod removes what is left).
            let state = lock(&this.inner.containers).remove(&exit_id);
            let _ = tx.send(ExitReport { status, message });
            let released = tokio::task::spawn_blocking(move || {
                drop(state);
                cgroup.remove();
            });
            let _ = released.await;
        });
        let exit = Box::pin(async move {
            rx.await.unwrap_or(ExitReport {
                status: ExitStatus::Signaled(9),
                message: Some("the runtime shut down before the container ended".into()),
            })
        });
        Ok(Started { id, exit })
    }

    pub(super) async fn exec_inner(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        let err = |message: String| RuntimeError::Exec {
            id: id.clone(),
            message,
        };
        let state = lock(&self.inner.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound { id: id.clone() })?;
        let tx = {
            let mut slot = lock(&state.exec_tx);
            match &*slot {
                Some(tx) => tx.clone(),
                None => {
                    let ctx = lock(&state.exec_ctx)
                        .take()
                        .ok_or_else(|| err("exec context unavailable".into()))?;
                    let tx = exec::start_thread(ctx).map_err(|e| err(format!("exec thread: {e}")))?;
                    *slot = Some(tx.clone());
                    tx
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        tx.send(exec::Request {
            argv: argv.to_vec(),
            reply,
        })
        .map_err(|_| err("exec thread gone".into()))?;
        let (pid, out) = answer
            .await
            .map_err(|_| err("exec thread gone".into()))?
            .map_err(err)?;
        let pidfd = process::pidfd_open(pid).ok();
        let reader = tokio::spawn(read_capped(out));
        let wait = process::wait_reap(pid, pidfd);
        tokio::pin!(wait);
        let (status, timed_out) = match timeout {
            Some(t) => match tokio::time::timeout(t, &mut wait).await {
                Ok(s) => (s, false),
                Err(_) => {
                    let _ = kill_tree(pid);
                    (wait.await, true)
                }
            },
            None => (wait.await, false),
        };
        // Like a container's end: nothing the command started outlives it.
        let left_processes = kill_tree(pid);
        let output = match tokio::time::timeout(Duration::from_secs(2), reader).await {
            Ok(Ok(o)) => o,
            _ => Vec::new(),
        };
        if left_processes {
            // They were reparented to the node: reap them now rather than at the next SIGCHLD.
            process::reap_orphans();
        }
        Ok(ExecOutput {
            status,
            output,
            timed_out,
        })
    }
}

pub(super) fn pump_task(
    fd: OwnedFd,
    stream: Stream,
    log: Arc<Mutex<LogFile>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => logs::pump(pipe, stream, log).await,
            Err(e) => tracing::warn!(error = %e, "cannot read container output"),
        }
    })
}

pub(super) async fn read_capped(fd: OwnedFd) -> Vec<u8> {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = EXEC_OUTPUT_LIMIT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

/// SIGKILLs a process group and every remaining member of it (by group or session), and says
/// whether there was anything to kill. When the group is already empty and the leader is gone,
/// `/proc` is not scanned (the common end of an exec probe).
pub(super) fn kill_tree(leader: i32) -> bool {
    let group_gone = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(leader), Signal::SIGKILL)
        == Err(nix::errno::Errno::ESRCH);
    if group_gone && nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(leader))).is_err() {
        return false;
    }
    for p in process::group_members(leader) {
        process::kill_pid(p);
    }
    true
}

/// Waits for the main process, applying stop requests: the stop signal was sent by `stop`;
/// at the (possibly shortened) deadline everything of the container is SIGKILLed. Returns the
/// exit and the processes the cgroup held when they were killed (gone from it as soon as they
/// exit, so they are remembered for reaping).
pub(super) async fn supervise(
    pid: i32,
    pidfd: Option<OwnedFd>,
    mut stop: watch::Receiver<Option<Instant>>,
    cgroup: &ContainerCgroup,
) -> (ExitStatus, Vec<i32>) {
    let wait = process::wait_reap(pid, pidfd);
    tokio::pin!(wait);
    let mut killed = false;
    let mut victims = Vec::new();
    loop {
        let deadline = if killed { None } else { *stop.borrow_and_update() };
        tokio::select! {
            status = &mut wait => return (status, victims),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                victims = cgroup.pids();
                cgroup.kill_all();
                if cgroup.tracks() {
                    // Everything of the container is in its groups: no need to scan `/proc`.
                    process::signal_group(pid, Signal::SIGKILL);
                } else {
                    let _ = kill_tree(pid);
                }
                killed = true;
            }
            changed = stop.changed(), if !killed => {
                if changed.is_err() {
                    killed = true;
                }
            }
        }
    }
}

/// After the main process ended: kill what remains of its group and cgroup, as the end of a
/// PID namespace would, wait until it is gone and reap it.
pub(super) async fn kill_leftovers(pid: i32, cgroup: &ContainerCgroup, killed: Vec<i32>) {
    // A container's cgroup holds every process it started (none can leave it without root),
    // so where there is one, `/proc` is not scanned for its process group and session.
    let tracked = cgroup.tracks();
    // Those killed at the deadline have left the cgroup once they exited; wait for them too.
    // (The main process is reaped already.)
    let mut killed = killed;
    killed.retain(|p| *p != pid);
    for p in &killed {
        let _ = tokio::time::timeout(Duration::from_secs(1), process::wait_gone(*p)).await;
    }
    let mut seen: Vec<i32> = killed;
    for _ in 0..20 {
        let mut pids = cgroup.pids();
        if !tracked {
            pids.extend(process::group_members(pid));
        }
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        cgroup.kill_all();
        if !tracked {
            // Without a cgroup the process group is what finds them. (With one, the group is
            // not signalled: once empty, the main process's number may be reused.)
            process::signal_group(pid, Signal::SIGKILL);
        }
        for p in &pids {
            process::kill_pid(*p);
        }
        for p in &pids {
            let _ = tokio::time::timeout(Duration::from_secs(1), process::wait_gone(*p)).await;
        }
        seen.extend(&pids);
    }
    // Every one has exited, so each zombie now belongs to the node (re-parented when its own
    // parent died) and is reaped here, before the exit is reported; so are other orphans of the
    // container's group. (Anything else is left to the SIGCHLD-driven orphan reaper.)
    for p in seen {
        process::reap_if_child(p);
    }
    process::reap_group(pid);
}

/// Empties (or creates) the termination-message file of a new instance: mode 0600, owned by
/// the user the container runs as when that is not the node's (with the group its process
/// gets), so only the container's user can write it.
pub(super) fn termination_file(path: &Path, uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    if let Some(uid) = uid
        && uid != nix::unistd::geteuid().as_raw()
    {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid.unwrap_or(0)))?;
    }
    Ok(())
}

pub(super) fn termination_message(
    host: &Path,
    fallback: bool,
    status: ExitStatus,
    log: &Path,
) -> Option<String> {
    use std::io::Read;
    let mut content = Vec::new();
    if let Ok(f) = fs::File::open(host) {
        let _ = f.take(TERMINATION_MESSAGE_LIMIT).read_to_end(&mut content);
    }
    if !content.is_empty() {
        return Some(String::from_utf8_lossy(&content).into_owned());
    }
    if fallback && status.code() != 0 {
        let tail = logs::tail(log, 80, 2048);
        if !tail.is_empty() {
            return Some(tail);
        }
    }
    None
}

/// Keeps the logs of this instance's predecessor (for `--previous`), removes older ones.
pub(super) fn prune_old_instances(dir: &Path, restart: i32) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.split('.').next().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if n < restart - 1 {
            let _ = if e.path().is_dir() {
                fs::remove_dir(e.path())
            } else {
                fs::remove_file(e.path())
            };
        }
    }
}

pub(super) fn short_hash(s: &str) -> String {
    // FNV-1a, 40 bits: short enough for interface names (15 bytes).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}
