//! Taking over what a previous run of the node left (issue 18): at construction the runtime
//! adopts every sandbox whose holder still lives (or whose pod uses the host network) and the
//! newest instance of each of its containers, running under its monitor or ended with an exit
//! record; it kills and removes everything else (holders and monitors it cannot adopt, their
//! processes, veths, IPs and cgroups). A pod worker then takes its pod's survivors with
//! [`ContainerRuntime::adopt`]; survivors of pods deleted from the API meanwhile are stopped
//! gracefully by [`ContainerRuntime::remove_pods_except`].

use std::collections::HashSet;
use std::time::SystemTime;

use podvisor_core::runtime::{AdoptedContainer, AdoptedPod, AdoptedState};

use super::monitored::{InstanceRecord, MonitorHandle, Owner, read_exit, start_ticks};
use super::plan::{Namespace, StdioPlan};
use super::*;

/// What a restarted runtime found of one pod, until its worker asks for it.
pub(super) struct Survivor {
    pod_ip: Option<String>,
    /// The pod's `terminationGracePeriodSeconds`, for a stop after its deletion.
    grace_seconds: i64,
    containers: Vec<AdoptedContainer>,
}

impl ProcessRuntime {
    /// Adopts what survived and removes the rest (see the module docs). Called by `new`
    /// unless `cleanup_on_start` is off.
    pub(super) async fn recover(&self) {
        let dir = self.inner.config.data_dir.join("sandboxes");
        let mut adopted: Vec<String> = Vec::new();
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let Ok(bytes) = fs::read(e.path()) else { continue };
                let Ok(rec) = serde_json::from_slice::<SandboxRecord>(&bytes) else {
                    let _ = fs::remove_file(e.path());
                    continue;
                };
                if self.adopt_sandbox(&rec).await {
                    adopted.push(rec.pod_uid.clone());
                    continue;
                }
                if let Some(pid) = rec.holder
                    && self.inner.procs.is_holder(pid)
                {
                    self.inner.procs.signal(pid, Signal::SIGKILL);
                }
                if let Some(veth) = &rec.host_veth {
                    let _ = self.inner.net.delete_veth(veth).await;
                }
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = lock(&self.inner.ipam).retain(&|uid| adopted.iter().any(|a| a == uid));
        let mut claimed: HashSet<i32> = HashSet::new();
        for uid in &adopted {
            let containers = self.adopt_instances(uid, &mut claimed).await;
            if let Some(survivor) = lock(&self.inner.survivors).get_mut(uid) {
                survivor.containers = containers;
            }
        }
        kill_unknown_monitors(&self.inner.config.data_dir, &claimed);
        let keep = adopted;
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.inner.cgroups.remove_pods_except(&keep)).await;
    }

    /// The pods whose sandboxes survived the node's previous run, until their workers take
    /// them (the kubelet keeps their volumes).
    pub fn survivors(&self) -> Vec<String> {
        lock(&self.inner.survivors).keys().cloned().collect()
    }

    /// Takes over one sandbox if it survived; whether it did.
    async fn adopt_sandbox(&self, rec: &SandboxRecord) -> bool {
        let Some(pod_dir) = self.pod_dir_of(&rec.pod_uid) else {
            return false;
        };
        let (fate, _) = watch::channel(Fate::Alive);
        let state = if rec.host_network {
            SandboxState::host_network(pod_dir, fate)
        } else {
            let Some(pid) = rec.holder.filter(|p| self.inner.procs.is_holder(*p)) else {
                return false;
            };
            let Ok(namespaces) = self.inner.procs.namespaces_of(pid) else {
                return false;
            };
            let index = match &rec.host_veth {
                Some(veth) => self.inner.net.link_index(veth).await.ok().flatten(),
                None => None,
            };
            // Its end is the sandbox's loss, as for one this runtime made.
            pod_sandbox::lost_when(fate.clone(), self.inner.procs.wait_gone(pid));
            SandboxState {
                pod_dir,
                holder: Some(pid),
                namespaces: Some(namespaces),
                host_veth: rec.host_veth.clone(),
                host_veth_index: index,
                fate,
                kept_groups: HashMap::new(),
            }
        };
        lock(&self.inner.sandboxes).insert(rec.pod_uid.clone(), state);
        lock(&self.inner.survivors).insert(
            rec.pod_uid.clone(),
            Survivor {
                pod_ip: rec.pod_ip.clone(),
                grace_seconds: rec.grace_seconds.unwrap_or(30),
                containers: Vec::new(),
            },
        );
        true
    }

    /// The newest instance of each container of an adopted pod: running ones supervised again,
    /// ended ones with their exit. Records the monitors taken over in `claimed`.
    async fn adopt_instances(&self, uid: &str, claimed: &mut HashSet<i32>) -> Vec<AdoptedContainer> {
        let Some(pod_dir) = self.pod_dir_of(uid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let Ok(containers) = fs::read_dir(&pod_dir) else {
            return out;
        };
        for c in containers.flatten() {
            if !c.path().is_dir() {
                continue;
            }
            let newest = fs::read_dir(c.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".state")?.parse::<i32>().ok()
                })
                .max();
            let Some(n) = newest else { continue };
            let Some(rec) = InstanceRecord::read(&c.path().join(format!("{n}.state"))) else {
                continue;
            };
            if rec.pod_uid != uid {
                continue;
            }
            let monitor_alive =
                start_ticks(rec.monitor_pid) == Some(rec.monitor_start) && rec.monitor_start != 0;
            if monitor_alive {
                claimed.insert(rec.monitor_pid);
            }
            if let Some(adopted) = self.adopt_instance(rec, monitor_alive).await {
                out.push(adopted);
            }
        }
        out
    }

    async fn adopt_instance(&self, rec: InstanceRecord, monitor_alive: bool) -> Option<AdoptedContainer> {
        let limits = crate::cgroup::Limits {
            memory_bytes: rec.memory_bytes,
            cpu_millis: rec.cpu_millis,
            pids: rec.pids,
        };
        let cgroup: Arc<dyn ContainerGroup> =
            match self.inner.cgroups.create(&rec.pod_uid, &rec.cgroup, limits) {
                Ok((group, _)) => Arc::from(group),
                Err(e) => {
                    tracing::warn!(error = %e, container = %rec.container, "adopting an instance's cgroup");
                    return None;
                }
            };
        let started_at =
            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(rec.started_at_ms).unwrap_or(0));
        let id = ContainerId(rec.id.clone());
        let ended = read_exit(&rec.exit_path, rec.pid);
        if ended.is_some() || !monitor_alive {
            // It ended while no node ran (or its monitor was killed with it): what is left of
            // it goes, and its end is reported once.
            cgroup.kill_all();
            if !monitor_alive && start_ticks(rec.pid) == Some(rec.pid_start) {
                self.inner.procs.signal_group(rec.pid, Signal::SIGKILL);
            }
            let (status, finished_at) = ended.unwrap_or((ExitStatus::Signaled(9), SystemTime::now()));
            let status = if cgroup.oom_kills() > rec.oom_kills_before {
                ExitStatus::OomKilled
            } else {
                status
            };
            let message =
                termination_message(&rec.termination_file, rec.fallback_to_logs, status, &rec.log_path);
            let released = cgroup.clone();
            tokio::spawn(async move {
                // Its leftovers were killed: the groups go once they are empty.
                for _ in 0..20 {
                    if released.pids().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                released.remove();
            });
            return Some(AdoptedContainer {
                name: rec.container,
                id,
                restart_count: rec.restart_count,
                started_at,
                state: AdoptedState::Exited {
                    report: ExitReport { status, message },
                    finished_at,
                },
            });
        }
        // Running: supervised again as if this runtime had started it.
        let pidfd = process::pidfd_open(rec.pid).ok();
        let monitor_pidfd = process::pidfd_open(rec.monitor_pid).ok();
        let (stdin, terminal) = match &monitor_pidfd {
            Some(mfd) => adopted_stdio(mfd, &rec),
            None => (None, None),
        };
        let log = match LogFile::existing(
            rec.log_path.clone(),
            self.inner.config.log_max_bytes,
            self.inner.config.log_max_files,
        ) {
            Ok(log) => Arc::new(Mutex::new(log)),
            Err(e) => {
                tracing::warn!(error = %e, "adopting an instance's log");
                return None;
            }
        };
        {
            let mut live = lock(&self.inner.live_logs);
            live.insert(rec.log_path.clone(), Arc::downgrade(&log));
        }
        let exec_ctx = self.adopted_exec_context(&rec);
        let plan = Supervised {
            pod_uid: rec.pod_uid.clone(),
            container: rec.container.clone(),
            stop_signal: Signal::try_from(rec.stop_signal).unwrap_or(Signal::SIGTERM),
            stdio: StdioPlan {
                stdin: rec.stdin,
                stdin_once: rec.stdin_once,
                tty: rec.tty,
            },
            log_path: rec.log_path.clone(),
            termination_file: rec.termination_file.clone(),
            fallback_to_logs: rec.fallback_to_logs,
        };
        let instance = Instance {
            pid: rec.pid,
            pidfd,
            groups: KeptGroup {
                group: cgroup,
                name: rec.cgroup.clone(),
                limits,
                oom_kills: rec.oom_kills_before,
            },
            exec_ctx,
            log,
            stdin,
            terminal,
            owner: Owner::Monitor(MonitorHandle {
                pid: rec.monitor_pid,
                pidfd: monitor_pidfd,
                own_child: false,
                exit_path: rec.exit_path.clone(),
            }),
        };
        let started = self.supervise_instance(id.clone(), started_at, plan, instance);
        Some(AdoptedContainer {
            name: rec.container,
            id,
            restart_count: rec.restart_count,
            started_at,
            state: AdoptedState::Running { exit: started.exit },
        })
    }

    /// Exec's context for an adopted instance: the sandbox's namespaces it joined and its own
    /// mount namespace, with the environment, directory and user it was started with.
    fn adopted_exec_context(&self, rec: &InstanceRecord) -> exec::ExecContext {
        let ns = lock(&self.inner.sandboxes)
            .get(&rec.pod_uid)
            .and_then(|s| s.namespaces.clone());
        let own_mnt = rec
            .own_mount_namespace
            .then(|| fs::File::open(format!("/proc/{}/ns/mnt", rec.pid)).ok())
            .flatten()
            .map(|f| Arc::new(crate::sys::park(OwnedFd::from(f))));
        let mut namespaces = Vec::new();
        for kind in rec.join.iter().filter_map(|n| Namespace::from_name(n)) {
            let fd = match (kind, &ns) {
                (Namespace::Mnt, _) if own_mnt.is_some() => own_mnt.clone(),
                (Namespace::Net, Some(n)) => Some(n.net.clone()),
                (Namespace::Uts, Some(n)) => Some(n.uts.clone()),
                (Namespace::Ipc, Some(n)) => Some(n.ipc.clone()),
                (Namespace::Mnt, Some(n)) => Some(n.mnt.clone()),
                _ => None,
            };
            if let Some(fd) = fd {
                namespaces.push((fd, kind.flag()));
            }
        }
        if !rec.join.iter().any(|n| n == "mnt")
            && let Some(mnt) = own_mnt
        {
            namespaces.push((mnt, CloneFlags::CLONE_NEWNS));
        }
        exec::ExecContext {
            namespaces,
            env: rec.env.clone(),
            cwd: rec.cwd.clone(),
            uid: rec.uid,
            gid: rec.gid,
        }
    }

    /// The survivors of pod `pod_uid`, once.
    pub(super) fn take_survivor(&self, pod_uid: &str) -> Option<AdoptedPod> {
        let survivor = lock(&self.inner.survivors).remove(pod_uid)?;
        let fate = lock(&self.inner.sandboxes)
            .get(pod_uid)
            .map(|s| s.fate.subscribe());
        Some(AdoptedPod {
            pod_uid: pod_uid.to_string(),
            pod_ip: survivor.pod_ip,
            containers: survivor.containers,
            lost: fate.map(pod_sandbox::lost),
        })
    }

    /// Stops, gracefully, the survivors of pods not in `keep` (deleted from the API while no
    /// node ran), then removes their sandboxes; in the background.
    pub(super) fn stop_survivors_except(&self, keep: &HashSet<String>) {
        let gone: Vec<(String, Survivor)> = {
            let mut all = lock(&self.inner.survivors);
            let uids: Vec<String> = all.keys().filter(|u| !keep.contains(*u)).cloned().collect();
            uids.into_iter()
                .filter_map(|u| all.remove(&u).map(|s| (u, s)))
                .collect()
        };
        for (uid, survivor) in gone {
            let this = self.clone();
            tokio::spawn(async move {
                let grace = Duration::from_secs(u64::try_from(survivor.grace_seconds).unwrap_or(30));
                let mut exits = Vec::new();
                for c in survivor.containers {
                    if let AdoptedState::Running { exit } = c.state {
                        let _ = ContainerRuntime::stop(&this, &c.id, grace).await;
                        exits.push(exit);
                    }
                }
                for exit in exits {
                    exit.await;
                }
                let _ = ContainerRuntime::remove_sandbox(&this, &uid).await;
                let _ = ContainerRuntime::remove_pod(&this, &uid).await;
            });
        }
    }
}

/// An adopted instance's stdin and pty master, taken back from its monitor, which holds them.
fn adopted_stdio(monitor: &OwnedFd, rec: &InstanceRecord) -> (Option<OwnedFd>, Option<OwnedFd>) {
    let stdio = StdioPlan {
        stdin: rec.stdin,
        stdin_once: rec.stdin_once,
        tty: rec.tty,
    };
    if stdio.tty {
        // The monitor reads the pty master as fd 3.
        let master = crate::sys::pidfd_getfd(monitor, 3).ok();
        let stdin = if stdio.stdin {
            master.as_ref().and_then(|m| m.try_clone().ok())
        } else {
            None
        };
        return (stdin, master);
    }
    if stdio.stdin && !stdio.stdin_once {
        return (crate::sys::pidfd_getfd(monitor, 5).ok(), None);
    }
    (None, None)
}

/// Kills the monitors (and their main processes) of instances under `data_dir` that were not
/// adopted: their sandboxes are gone, or their records were never written.
fn kill_unknown_monitors(data_dir: &Path, claimed: &HashSet<i32>) {
    let Ok(root) = fs::canonicalize(data_dir.join("pods")) else {
        return;
    };
    let Ok(procs) = fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if claimed.contains(&pid) {
            continue;
        }
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first() != Some(&b"podvisor-monitor".as_slice()) || args.len() < 4 {
            continue;
        }
        let log = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            args[3],
        ));
        // A relative path is the monitor's working directory's (the node's when it started).
        let log = match fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) if log.is_relative() => cwd.join(log),
            _ => log.to_path_buf(),
        };
        if !log.starts_with(&root) {
            continue;
        }
        if let Some(main) = std::str::from_utf8(args[2])
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
        {
            process::signal_group(main, Signal::SIGKILL);
            process::kill_pid(main);
        }
        process::kill_pid(pid);
    }
}
