//! Starting a container: the launch's short steps (executable, log and termination-message
//! files, old instances' logs pruned, mount namespace, pipes, cgroups, spawn, the instance's
//! record), then handing the instance to its supervision (`supervision.rs`). Exec in a
//! running container is `container_exec.rs`.

use super::plan::{self, LaunchOptions, LaunchPlan, Namespace, SandboxView, StdioPlan};
use super::*;

impl ProcessRuntime {
    /// Starts a container: its [plan](plan::plan), then one short step after the other (the
    /// executable, the files, the mount namespace, the pipes, the cgroup, the process, its
    /// supervision). A step that fails undoes what the steps before it made on the machine.
    pub(super) async fn start_inner(&self, launch: ContainerLaunch) -> Result<Started, StartError> {
        let (_, _, uid) = pod_name(&launch.pod);
        let (ns, holder) = lock(&self.inner.sandboxes)
            .get(&uid)
            .map_or((None, None), |s| (s.namespaces.clone(), s.holder));
        let host_network = launch
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let node_hostname = if host_network {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let sandbox = SandboxView {
            namespaces: ns.is_some(),
            holder,
        };
        let options = LaunchOptions {
            data_dir: &self.inner.config.data_dir,
            node_name: &self.inner.config.node_name,
            node_hostname: &node_hostname,
            own_mount_namespace: self.inner.caps.termination_message_path,
        };
        let plan = plan::plan(&launch, sandbox, &options)?;
        let executable = plan.resolve_executable()?;
        let cwd = sandbox::cstring(&plan.cwd).ok_or(StartError::NulInWorkingDir)?;
        let log = self.open_files(&plan)?;
        let mount = self.mount_step(&plan, ns.as_ref().map(|n| n.mnt.as_ref()))?;
        let Wiring { child, runtime: ours } = wire(plan.stdio)?;
        let groups = self.instance_groups(&plan)?;
        let cgroup = groups.group.clone();
        let cgroups = match cgroup.open_join() {
            Ok(join) => join,
            Err(e) => {
                cgroup.remove();
                return Err(e);
            }
        };
        let mut join = spawn::JoinFds::default();
        if let Some(n) = &ns {
            for kind in &plan.join {
                match kind {
                    Namespace::Net => join.net = Some(n.net.clone()),
                    Namespace::Uts => join.uts = Some(n.uts.clone()),
                    Namespace::Ipc => join.ipc = Some(n.ipc.clone()),
                    Namespace::Mnt => join.mnt = Some(n.mnt.clone()),
                }
            }
        }
        if let Some(kept) = &mount.kept {
            // The predecessor's namespace, as it was made: joined, not copied.
            join.mnt = Some(kept.clone());
        }
        let setup = spawn::ChildSetup {
            cgroups,
            join: join.unparked(),
            mounts: mount.plan,
            cwd,
            uid: plan.uid,
            gid: plan.gid,
            controlling_terminal: plan.stdio.tty,
            own_session: true,
        };
        let procs = &self.inner.procs;
        let [stdin, stdout, stderr] = child;
        let main = spawn::MainProcess {
            program: &executable,
            argv: &plan.argv,
            env: &plan.env,
            setup,
            stdin,
            stdout: stdout.ok_or(StartError::Pipe(nix::errno::Errno::EBADF))?,
            stderr: stderr.ok_or(StartError::Pipe(nix::errno::Errno::EBADF))?,
        };
        let state_path = monitored::record_path(&plan.dir, plan.restart_count);
        let RuntimeStdio {
            stdout,
            stderr,
            stdin,
            terminal,
        } = ours;
        let monitored = match &self.inner.monitor {
            Some(program) => {
                // An earlier attempt's record and exit go: both are appended to the file.
                let _ = fs::remove_file(&state_path);
                let launch = spawn::MonitorLaunch {
                    program,
                    log: &plan.log_path,
                    max_bytes: self.inner.config.log_max_bytes,
                    max_files: self.inner.config.log_max_files,
                    exit: &state_path,
                    stdout: &stdout,
                    stderr: stderr.as_ref(),
                    // With `stdinOnce` the stdin must close when its first client leaves.
                    keep: stdin.as_ref().filter(|_| !plan.stdio.stdin_once),
                };
                procs.spawn_monitored(&main, launch)
            }
            None => Ok(None),
        };
        let started_at = std::time::SystemTime::now();
        let (spawned, owner) = match monitored {
            Ok(Some(m)) => {
                let handle = monitored::MonitorHandle {
                    pid: m.monitor.pid,
                    pidfd: m.monitor.pidfd,
                    own_child: true,
                    exit_path: state_path.clone(),
                };
                (m.main, monitored::Owner::Monitor(handle))
            }
            Ok(None) => match procs.spawn(main) {
                Ok(spawned) => (spawned, monitored::Owner::Node { stdout, stderr }),
                Err(e) => {
                    cgroup.remove();
                    return Err(StartError::spawn(plan.program(), e));
                }
            },
            Err(e) => {
                cgroup.remove();
                return Err(StartError::spawn(plan.program(), e));
            }
        };
        let pid = spawned.pid;
        let pidfd = spawned.pidfd.or_else(|| procs.pidfd(pid));
        let own_mnt = self.keep_mount_namespace(&plan, pid, mount.kept, mount.origin);
        let exec_ctx = exec_context(&plan, ns.as_ref(), own_mnt.clone());
        let id = self.instance_id(&plan);
        if let monitored::Owner::Monitor(handle) = &owner {
            let record =
                self.instance_record(&id, &plan, &groups, pid, handle, started_at, own_mnt.is_some());
            if let Err(e) = record.write(&state_path) {
                // The instance runs; only a node restart could not take it over.
                tracing::warn!(error = %e, path = %state_path.display(), "writing the instance record");
            }
        }
        let instance = Instance {
            pid,
            pidfd,
            groups,
            exec_ctx,
            log,
            stdin,
            terminal,
            owner,
        };
        Ok(self.supervise_instance(id, started_at, Supervised::of(&plan), instance))
    }

    /// A new instance's ID: the pod's short hash, the container, its restart count and a
    /// sequence number of this runtime (unique on the node; adopted instances keep theirs).
    fn instance_id(&self, plan: &LaunchPlan) -> ContainerId {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let now = monitored::epoch_ms(std::time::SystemTime::now());
        ContainerId(format!(
            "{}-{}-{}-{now:x}{n}",
            short_hash(&plan.pod_uid),
            plan.container,
            plan.restart_count
        ))
    }

    /// The groups for a new instance of the plan's container: its last instance's when they
    /// were kept with the same limits, else new ones (named `<container>-<restart>`).
    fn instance_groups(&self, plan: &LaunchPlan) -> Result<KeptGroup, StartError> {
        let kept = lock(&self.inner.sandboxes)
            .get_mut(&plan.pod_uid)
            .and_then(|s| s.kept_groups.remove(&plan.container));
        match kept {
            Some(kept) if kept.limits == plan.limits => return Ok(kept),
            Some(other) => other.group.remove(),
            None => {}
        }
        let (group, missing) = self
            .inner
            .cgroups
            .create(&plan.pod_uid, &plan.cgroup, plan.limits)?;
        if !missing.is_empty() {
            tracing::warn!(container = %plan.container, ?missing, "resource limits not enforced: controller unavailable");
        }
        Ok(KeptGroup {
            group: Arc::from(group),
            name: plan.cgroup.clone(),
            limits: plan.limits,
            oom_kills: 0,
        })
    }

    /// What a restarted node needs to take the instance over.
    #[allow(clippy::too_many_arguments)]
    fn instance_record(
        &self,
        id: &ContainerId,
        plan: &LaunchPlan,
        groups: &KeptGroup,
        pid: i32,
        monitor: &monitored::MonitorHandle,
        started_at: std::time::SystemTime,
        own_mount_namespace: bool,
    ) -> monitored::InstanceRecord {
        monitored::InstanceRecord {
            version: monitored::RECORD_VERSION,
            id: id.0.clone(),
            pod_uid: plan.pod_uid.clone(),
            container: plan.container.clone(),
            restart_count: plan.restart_count,
            pid,
            pid_start: monitored::start_ticks(pid).unwrap_or(0),
            monitor_pid: monitor.pid,
            monitor_start: monitored::start_ticks(monitor.pid).unwrap_or(0),
            started_at_ms: monitored::epoch_ms(started_at),
            cgroup: groups.name.clone(),
            oom_kills_before: groups.oom_kills,
            memory_bytes: plan.limits.memory_bytes,
            cpu_millis: plan.limits.cpu_millis,
            pids: plan.limits.pids,
            log_path: plan.log_path.clone(),
            exit_path: monitor.exit_path.clone(),
            termination_file: plan.termination_file.clone(),
            fallback_to_logs: plan.fallback_to_logs,
            stop_signal: plan.stop_signal as i32,
            stdin: plan.stdio.stdin,
            stdin_once: plan.stdio.stdin_once,
            tty: plan.stdio.tty,
            join: plan.join.iter().map(|n| n.name().to_string()).collect(),
            own_mount_namespace,
            env: plan.env.clone(),
            cwd: plan.cwd.clone(),
            uid: plan.uid,
            gid: plan.gid,
        }
    }

    /// The container's directory, its log file (registered for followers) and an empty
    /// termination-message file; older instances' logs go.
    fn open_files(&self, plan: &LaunchPlan) -> Result<Arc<Mutex<LogFile>>, StartError> {
        prune_old_instances(&plan.dir, plan.restart_count);
        let create = || {
            LogFile::create(
                plan.log_path.clone(),
                self.inner.config.log_max_bytes,
                self.inner.config.log_max_files,
            )
        };
        // The directory is made by the container's first start (or again, should it be gone).
        let log = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&plan.dir).map_err(file_error(&plan.dir))?;
                create()
            }
            created => created,
        }
        .map_err(file_error(&plan.log_path))?;
        let log = Arc::new(Mutex::new(log));
        {
            let mut live = lock(&self.inner.live_logs);
            live.retain(|_, l| l.strong_count() > 0);
            live.insert(plan.log_path.clone(), Arc::downgrade(&log));
        }
        // One file per container, emptied for each instance (a kept mount namespace has it
        // bound already).
        termination_file(&plan.termination_file, plan.uid, plan.gid)
            .map_err(file_error(&plan.termination_file))?;
        Ok(log)
    }

    /// The container's own mount namespace: the predecessor's when it was made from the same
    /// binds on the same sandbox namespace, else a plan to make it in the child.
    fn mount_step(&self, plan: &LaunchPlan, sandbox_mnt: Option<&OwnedFd>) -> Result<MountStep, StartError> {
        let Some(binds) = &plan.binds else {
            return Ok(MountStep::default());
        };
        // `kubectl debug --target`: the target's namespace, as its instances share it.
        if let Some(target) = &plan.target {
            let key = (plan.pod_uid.clone(), target.clone());
            if let Some(k) = lock(&self.inner.mount_namespaces).get(&key) {
                return Ok(MountStep {
                    plan: None,
                    kept: Some(k.ns.clone()),
                    origin: None,
                });
            }
        }
        let origin = MountOrigin::of(binds, sandbox_mnt);
        let key = (plan.pod_uid.clone(), plan.container.clone());
        let kept = lock(&self.inner.mount_namespaces)
            .get(&key)
            .filter(|k| origin.as_ref() == Some(&k.made_from))
            .map(|k| k.ns.clone());
        if kept.is_some() {
            return Ok(MountStep {
                plan: None,
                kept,
                origin,
            });
        }
        let stage = self.inner.config.data_dir.join("rootfs");
        let mount_points =
            mounts::mount_points(&fs::read_to_string(&plan.base_mountinfo).unwrap_or_default());
        let made =
            mounts::MountPlan::prepare(binds, self.inner.hidden_data_dir.as_ref(), &stage, &mount_points)?;
        Ok(MountStep {
            plan: Some(made),
            kept: None,
            origin,
        })
    }

    /// The new instance's mount namespace (kept for the next instance when it was made now).
    fn keep_mount_namespace(
        &self,
        plan: &LaunchPlan,
        pid: i32,
        kept: Option<Arc<OwnedFd>>,
        origin: Option<MountOrigin>,
    ) -> Option<Arc<OwnedFd>> {
        plan.binds.as_ref()?;
        if kept.is_some() {
            return kept;
        }
        let opened = fs::File::open(format!("/proc/{pid}/ns/mnt"))
            .ok()
            .map(|f| Arc::new(crate::sys::park(OwnedFd::from(f))));
        if let (Some(made_from), Some(mnt)) = (origin, &opened) {
            let key = (plan.pod_uid.clone(), plan.container.clone());
            let kept = KeptMountNs {
                made_from,
                ns: mnt.clone(),
            };
            lock(&self.inner.mount_namespaces).insert(key, kept);
        }
        opened
    }
}

/// The container's own mount namespace, as far as it is known before the spawn.
#[derive(Default)]
pub(super) struct MountStep {
    /// What the child makes (a new namespace).
    plan: Option<mounts::MountPlan>,
    /// The predecessor's namespace, joined instead.
    kept: Option<Arc<OwnedFd>>,
    /// What it is made from, to keep it for the next instance.
    origin: Option<MountOrigin>,
}

/// The main process's standard streams, both sides.
struct Wiring {
    /// The child's stdin (`None`: `/dev/null`), stdout and stderr.
    child: [Option<OwnedFd>; 3],
    runtime: RuntimeStdio,
}

/// The runtime's ends of a main process's standard streams.
pub(super) struct RuntimeStdio {
    /// What the log reads as stdout: a pipe, or the pty master with `tty`.
    stdout: OwnedFd,
    /// What the log reads as stderr (`None` with `tty`: a terminal has one output).
    stderr: Option<OwnedFd>,
    /// The end of stdin kept for attached clients (`stdin: true` only): a pipe's write end,
    /// or the pty master.
    stdin: Option<OwnedFd>,
    /// The pty master, for resizes (`tty` only).
    terminal: Option<OwnedFd>,
}

/// Pipes for stdout and stderr (and stdin with `stdin: true`), or with `tty` a pty whose slave
/// is all three (opened in the node's mount namespace: the containers' `/dev/pts` is the
/// node's, as they see the host's filesystem).
fn wire(stdio: StdioPlan) -> Result<Wiring, StartError> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(StartError::Pipe);
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(StartError::Terminal);
    if stdio.tty {
        let (master, slave) = crate::sys::pty::open().map_err(StartError::Terminal)?;
        let runtime = RuntimeStdio {
            stdout: dup(&master)?,
            stderr: None,
            stdin: if stdio.stdin { Some(dup(&master)?) } else { None },
            terminal: Some(master),
        };
        let child = [Some(dup(&slave)?), Some(dup(&slave)?), Some(slave)];
        return Ok(Wiring { child, runtime });
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_stdin, stdin) = if stdio.stdin {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok(Wiring {
        child: [child_stdin, Some(out_w), Some(err_w)],
        runtime: RuntimeStdio {
            stdout: out_r,
            stderr: Some(err_r),
            stdin,
            terminal: None,
        },
    })
}

/// What exec in the container joins and runs with.
fn exec_context(
    plan: &LaunchPlan,
    ns: Option<&Namespaces>,
    own_mnt: Option<Arc<OwnedFd>>,
) -> exec::ExecContext {
    let mut namespaces = Vec::new();
    if let Some(n) = ns {
        for kind in &plan.join {
            let fd = match kind {
                Namespace::Net => n.net.clone(),
                Namespace::Uts => n.uts.clone(),
                Namespace::Ipc => n.ipc.clone(),
                Namespace::Mnt => own_mnt.clone().unwrap_or_else(|| n.mnt.clone()),
            };
            namespaces.push((fd, kind.flag()));
        }
    } else if let Some(mnt) = own_mnt {
        namespaces.push((mnt, CloneFlags::CLONE_NEWNS));
    }
    exec::ExecContext {
        namespaces,
        env: plan.env.clone(),
        cwd: plan.cwd.clone(),
        uid: plan.uid,
        gid: plan.gid,
    }
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

/// Keeps the logs of this instance's predecessor (for `--previous`), removes older ones.
pub(super) fn prune_old_instances(dir: &Path, restart: i32) {
    if restart < 2 {
        // Nothing older than the previous instance yet.
        return;
    }
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
