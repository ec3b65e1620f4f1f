//! Supervision of a running container instance until its exit is reported: the task that
//! waits for the main process and applies stop requests, kills and reaps what is left, reads
//! the termination message and the OOM count, and keeps or removes the instance's groups. A
//! monitored instance's monitor is waited for (and reaped) and its log followed in the same
//! task: one task per running instance.

use super::plan::{LaunchPlan, StdioPlan};
use super::*;
use crate::stdio::{Fanout, FdStream};

impl ProcessRuntime {
    /// After an instance ended: its groups, when empty and without a memory limit, are kept
    /// for the container's next instance while its sandbox lasts (the sandbox's teardown
    /// removes them); otherwise they are removed now.
    ///
    /// Not with a memory limit: what the instance left charged to its groups (page cache,
    /// the pages of a memory-backed `emptyDir` it wrote) would count against the next
    /// instance's limit, where a CRI runtime gives each instance new groups and the kernel
    /// moves the old ones' charges to the pod's group as they are removed.
    fn release_groups(&self, pod_uid: &str, container: &str, groups: KeptGroup, empty: bool) {
        if empty && groups.group.tracks() && groups.limits.memory_bytes.is_none() {
            let mut sandboxes = lock(&self.inner.sandboxes);
            if let Some(sandbox) = sandboxes.get_mut(pod_uid) {
                if let Some(older) = sandbox.kept_groups.insert(container.to_owned(), groups) {
                    older.group.remove();
                }
                return;
            }
        }
        groups.group.remove();
    }

    /// Registers the running instance (for stop and exec) and spawns the task that supervises
    /// it until its exit is reported.
    pub(super) fn supervise_instance(
        &self,
        id: ContainerId,
        started_at: std::time::SystemTime,
        plan: Supervised,
        instance: Instance,
    ) -> Started {
        let pid = instance.pid;
        let (stop_tx, stop_rx) = watch::channel(None);
        let (exit_tx, exit_rx) = watch::channel(None);
        let Instance {
            stdin,
            terminal,
            owner,
            ..
        } = instance;
        let output = [Arc::new(Fanout::default()), Arc::new(Fanout::default())];
        let interest = lock(&instance.log).interest();
        let state = Arc::new(ContainerState {
            main_pid: pid,
            stop_signal: plan.stop_signal,
            stop: stop_tx,
            exec_ctx: Mutex::new(Some(instance.exec_ctx)),
            exec_tx: Mutex::new(None),
            cgroup: instance.groups.group.clone(),
            attach: Attach {
                stdio: plan.stdio,
                stdin: Mutex::new(stdin),
                terminal: terminal.map(Arc::new),
                output: output.clone(),
                interest: interest.clone(),
                exit: exit_rx,
            },
        });
        lock(&self.inner.containers).insert(id.clone(), state);

        let mut pumps = Vec::new();
        let mut monitor = None;
        let mut follower = None;
        match owner {
            monitored::Owner::Node { stdout, stderr } => {
                let [out_tap, err_tap] = output.clone();
                pumps.push(pump_task(stdout, Stream::Stdout, instance.log.clone(), out_tap));
                match stderr {
                    Some(stderr) => {
                        pumps.push(pump_task(stderr, Stream::Stderr, instance.log.clone(), err_tap))
                    }
                    // A terminal has one output: attached clients asking for stderr read EOF.
                    None => err_tap.end(),
                }
            }
            monitored::Owner::Monitor(handle) => {
                if plan.stdio.tty {
                    output[1].end();
                }
                monitor = Some(handle.watch(&self.inner.procs));
                let done = tokio_util::sync::CancellationToken::new();
                // Polled in the supervision's task, not spawned: one task per running
                // instance, not one more for each of its followers and its monitor.
                let follow: futures_util::future::BoxFuture<'static, ()> = Box::pin(monitored::follow_log(
                    plan.log_path.clone(),
                    instance.log.clone(),
                    output.clone(),
                    interest,
                    done.clone(),
                ));
                follower = Some((follow, done));
            }
        }
        let (pidfd, groups) = (instance.pidfd, instance.groups);
        let cgroup = groups.group.clone();
        let log = instance.log;
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let exit_id = id.clone();
        tokio::spawn(async move {
            let mut monitor = monitor;
            let mut follower = follower;
            let procs = this.inner.procs.as_ref();
            let wait = match &monitor {
                // Not ours to reap: the monitor records how it ended.
                Some(_) => {
                    let gone = procs.wait_gone(pid);
                    Box::pin(async move {
                        gone.await;
                        ExitStatus::Exited(0)
                    })
                }
                None => procs.wait_reap(pid, pidfd),
            };
            let detached = this.inner.detached.clone();
            let monitored = monitor.is_some();
            let mut following = follower.is_some();
            // Beside the supervision, in this task: the monitor's end (reaped at once, even
            // before the container's) and the log's followers.
            let (status, killed) = {
                let supervised = supervise(procs, pid, wait, stop_rx, cgroup.as_ref());
                tokio::pin!(supervised);
                loop {
                    tokio::select! {
                        done = &mut supervised => break done,
                        // The node leaves its pods running: the monitor keeps the container and
                        // the next node adopts it; nothing is reported here. Its monitor, ours,
                        // is still reaped should it end while this process lasts.
                        () = detached.cancelled(), if monitored => {
                            if let Some(mut watch) = monitor {
                                tokio::spawn(async move { watch.gone().await });
                            }
                            return;
                        }
                        () = async {
                            match monitor.as_mut() {
                                Some(watch) => watch.gone().await,
                                None => std::future::pending().await,
                            }
                        } => {}
                        // It ends only once `done` is cancelled, below; never polled again after.
                        () = async {
                            match follower.as_mut() {
                                Some((follow, _)) => follow.await,
                                None => std::future::pending().await,
                            }
                        }, if following => following = false,
                    }
                }
            };
            let empty = kill_leftovers(procs, pid, cgroup.as_ref(), killed).await;
            for p in pumps {
                // Output of processes that escaped both group and cgroup is not waited for.
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
            let status = match monitor {
                Some(watch) => watch.finish(pid, cgroup.tracks()).await,
                None => status,
            };
            if let Some((follow, done)) = follower {
                // What the monitor wrote last reaches followers and attached clients.
                done.cancel();
                if following {
                    follow.await;
                }
                for o in &output {
                    o.end();
                }
            }
            drop(log);
            let oom_kills = cgroup.oom_kills();
            let status = if oom_kills > groups.oom_kills {
                ExitStatus::OomKilled
            } else {
                status
            };
            let message = termination_message(
                &plan.termination_file,
                plan.fallback_to_logs,
                status,
                &plan.log_path,
            );
            // Forgotten before the exit is reported (no stop or exec may reach a pid that is
            // gone), but released after it, on the blocking pool: closing the container's
            // namespace fds can mean unmounting its whole mount namespace, which waits for RCU.
            // The groups are kept for the next instance, or go on the removal thread, before
            // the pod's (which the report can lead to).
            let state = lock(&this.inner.containers).remove(&exit_id);
            drop(cgroup);
            this.release_groups(
                &plan.pod_uid,
                &plan.container,
                KeptGroup { oom_kills, ..groups },
                empty,
            );
            let _ = exit_tx.send(Some(status.code()));
            let _ = tx.send(ExitReport { status, message });
            let _ = tokio::task::spawn_blocking(move || drop(state)).await;
        });
        let exit = Box::pin(async move {
            rx.await.unwrap_or(ExitReport {
                status: ExitStatus::Signaled(9),
                message: Some("the runtime shut down before the container ended".into()),
            })
        });
        Started { id, started_at, exit }
    }
}

/// What supervising an instance needs of its plan (an adopted instance's comes from its
/// record).
pub(super) struct Supervised {
    pub(super) pod_uid: String,
    pub(super) container: String,
    pub(super) stop_signal: Signal,
    pub(super) stdio: StdioPlan,
    pub(super) log_path: PathBuf,
    pub(super) termination_file: PathBuf,
    pub(super) fallback_to_logs: bool,
}

impl Supervised {
    pub(super) fn of(plan: &LaunchPlan) -> Supervised {
        Supervised {
            pod_uid: plan.pod_uid.clone(),
            container: plan.container.clone(),
            stop_signal: plan.stop_signal,
            stdio: plan.stdio,
            log_path: plan.log_path.clone(),
            termination_file: plan.termination_file.clone(),
            fallback_to_logs: plan.fallback_to_logs,
        }
    }
}

/// A spawned (or adopted) instance, as its supervision takes it over.
pub(super) struct Instance {
    pub(super) pid: i32,
    pub(super) pidfd: Option<OwnedFd>,
    /// Its groups, made for it or kept from the container's instance before.
    pub(super) groups: KeptGroup,
    pub(super) exec_ctx: exec::ExecContext,
    pub(super) log: Arc<Mutex<LogFile>>,
    /// The runtime's end of stdin (`stdin: true`) and the pty master (`tty: true`).
    pub(super) stdin: Option<OwnedFd>,
    pub(super) terminal: Option<OwnedFd>,
    /// Who reads the output and reaps the main process.
    pub(super) owner: monitored::Owner,
}

pub(super) fn pump_task(
    fd: OwnedFd,
    stream: Stream,
    log: Arc<Mutex<LogFile>>,
    tap: Arc<Fanout>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match FdStream::new(fd) {
            Ok(output) => logs::pump(output, stream, log, &tap).await,
            Err(e) => {
                tap.end();
                tracing::warn!(error = %e, "cannot read container output");
            }
        }
    })
}

/// Waits for the main process, applying stop requests: the stop signal was sent by `stop`;
/// at the (possibly shortened) deadline everything of the container is SIGKILLed. Returns the
/// exit and the processes the cgroup held when they were killed (gone from it as soon as they
/// exit, so they are remembered for reaping).
pub(super) async fn supervise(
    procs: &dyn ProcessOps,
    pid: i32,
    wait: futures_util::future::BoxFuture<'static, ExitStatus>,
    mut stop: watch::Receiver<Option<Instant>>,
    cgroup: &dyn ContainerGroup,
) -> (ExitStatus, Vec<i32>) {
    let mut wait = wait;
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
                    procs.signal_group(pid, Signal::SIGKILL);
                } else {
                    let _ = procs.kill_tree(pid);
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
/// PID namespace would, wait until it is gone and reap it. Returns whether it is all gone
/// (false: something would not die).
pub(super) async fn kill_leftovers(
    procs: &dyn ProcessOps,
    pid: i32,
    cgroup: &dyn ContainerGroup,
    killed: Vec<i32>,
) -> bool {
    // A container's cgroup holds every process it started (none can leave it without root),
    // so where there is one, `/proc` is not scanned for its process group and session.
    let tracked = cgroup.tracks();
    // Those killed at the deadline have left the cgroup once they exited; wait for them too.
    // (The main process is reaped already.)
    let mut killed = killed;
    killed.retain(|p| *p != pid);
    for p in &killed {
        let _ = tokio::time::timeout(Duration::from_secs(1), procs.wait_gone(*p)).await;
    }
    let mut seen: Vec<i32> = killed;
    let mut gone = false;
    for _ in 0..20 {
        let mut pids = cgroup.pids();
        if !tracked {
            pids.extend(procs.group_members(pid));
        }
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            gone = true;
            break;
        }
        cgroup.kill_all();
        if !tracked {
            // Without a cgroup the process group is what finds them. (With one, the group is
            // not signalled: once empty, the main process's number may be reused.)
            procs.signal_group(pid, Signal::SIGKILL);
        }
        for p in &pids {
            procs.signal(*p, Signal::SIGKILL);
        }
        for p in &pids {
            let _ = tokio::time::timeout(Duration::from_secs(1), procs.wait_gone(*p)).await;
        }
        seen.extend(&pids);
    }
    // Every one has exited, so each zombie now belongs to the node (re-parented when its own
    // parent died) and is reaped here, before the exit is reported; so are other orphans of the
    // container's group. (Anything else is left to the SIGCHLD-driven orphan reaper.)
    for p in seen {
        procs.reap_if_child(p);
    }
    procs.reap_group(pid);
    gone
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
