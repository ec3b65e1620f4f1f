//! Cgroups: detection (v2, v1 controllers, hybrid), per-container groups, limits, kill, OOM,
//! and their removal on one thread (`Remover`).
//!
//! Layout: `<base>/<pod-uid>/<container>-<restart>` in every hierarchy used, named for the
//! instance that made them (the runtime keeps the groups of a container without a memory
//! limit for its next instances while the pod's sandbox lasts, `runtime::KeptGroup`), where
//! `<base>` is `<v2 mount>/<parent>` for cgroup v2 and `<v1 controller mount>/<own
//! cgroup>/<parent>` for v1 (nested under the node's own v1 group, so limits placed on the
//! node still apply). On a hybrid machine (v1 controllers plus a controller-less v2 at
//! `/sys/fs/cgroup/unified`), the limits go to v1 and the v2 group is still used to track and
//! kill (`cgroup.kill`).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup directory or file could not be written.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which cgroup interface the runtime uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// No writable cgroup hierarchy: containers run without limits (a warning is logged).
    None,
    /// cgroup v1 controllers (possibly with a controller-less v2 hierarchy for tracking).
    V1,
    /// cgroup v2 (unified) with its controllers.
    V2,
}

/// The hierarchies found at construction.
#[derive(Clone, Debug)]
pub(crate) struct Cgroups {
    pub(crate) version: CgroupVersion,
    /// v2 base directory (limits in v2 mode; tracking and `cgroup.kill` in both).
    v2: Option<PathBuf>,
    /// v1 base directories per controller.
    v1_memory: Option<PathBuf>,
    v1_cpu: Option<PathBuf>,
    v1_pids: Option<PathBuf>,
    /// Controllers that limits can be written to (`memory`, `cpu`, `pids`).
    pub(crate) controllers: Vec<String>,
    pub(crate) cgroup_kill: bool,
    /// Where groups go to be removed.
    remover: Remover,
}

/// Limits for one container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) cpu_millis: Option<u64>,
    pub(crate) pids: Option<u64>,
}

/// One container's cgroup directories (one per hierarchy).
#[derive(Clone, Debug, Default)]
pub(crate) struct ContainerCgroup {
    pub(crate) dirs: Vec<PathBuf>,
    v2: Option<PathBuf>,
    memory: Option<(PathBuf, bool)>,
    /// The directories the usage counters are read from, opened at the first read and kept
    /// while the container is (shared by its clones).
    usage_dirs: Arc<OnceLock<UsageDirs>>,
    remover: Remover,
}

/// The groups' directories the usage counters come from, as descriptors (`O_PATH`): a
/// scrape then opens each file with one step from its directory instead of walking its whole
/// path, every step of which cgroupfs checks again (nine steps for a container's group in a
/// nested v1 memory hierarchy: the walks were a third of what a scrape cost). Two
/// descriptors per container at most; `None` where the group has no such directory or it
/// could not be opened.
#[derive(Debug, Default)]
struct UsageDirs {
    v2: Option<OwnedFd>,
    memory: Option<OwnedFd>,
}

/// `dir` opened as a directory to read files in (`O_PATH`, close-on-exec).
pub(crate) fn open_dir(dir: &Path) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .ok()
        .map(OwnedFd::from)
}

struct Mount {
    path: PathBuf,
    fstype: String,
    options: Vec<String>,
}

fn mounts() -> Vec<Mount> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let path = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next();
            let options = r.next().unwrap_or("").split(',').map(str::to_string).collect();
            Some(Mount {
                path: PathBuf::from(path),
                fstype,
                options,
            })
        })
        .collect()
}

/// The node's own path in a hierarchy: `""` for v2 (`0::`), else the entry naming `controller`.
fn own_path(controller: Option<&str>) -> String {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let matches = match controller {
            None => id == "0" && list.is_empty(),
            Some(c) => list.split(',').any(|x| x == c),
        };
        if matches {
            return path.trim_start_matches('/').to_string();
        }
    }
    String::new()
}

/// Whether this process can use `dir` as a cgroup base: it is (or could be created as) a
/// cgroup, processes can be moved into it, and groups can be created in it. Existence alone is
/// not enough: a base left by an earlier run as root exists but is not ours to use without
/// root, and every container start would then fail.
fn usable_dir(dir: &Path) -> bool {
    if fs::create_dir_all(dir).is_err() || !dir.join("cgroup.procs").exists() {
        return false;
    }
    // Opening for writing checks the permission without writing anything.
    if fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .is_err()
    {
        return false;
    }
    let probe = dir.join(format!("podvisor-probe-{}", std::process::id()));
    match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            true
        }
        Err(e) => e.kind() == io::ErrorKind::AlreadyExists,
    }
}

impl Cgroups {
    /// A runtime without cgroups.
    pub(crate) fn disabled() -> Self {
        Cgroups {
            version: CgroupVersion::None,
            v2: None,
            v1_memory: None,
            v1_cpu: None,
            v1_pids: None,
            controllers: Vec::new(),
            cgroup_kill: false,
            remover: Remover::default(),
        }
    }

    /// Finds the hierarchies and creates `<base>` in each usable one.
    pub(crate) fn detect(parent: &str) -> Self {
        Self::detect_in(&mounts(), &own_path, parent)
    }

    /// [`detect`](Self::detect) over given mounts and own-group lookup (tests stand a temporary
    /// directory in for the cgroup mounts).
    fn detect_in(all: &[Mount], own_path: &dyn Fn(Option<&str>) -> String, parent: &str) -> Self {
        let mut found = Self::disabled();
        if let Some(m) = all.iter().find(|m| m.fstype == "cgroup2") {
            let base = m.path.join(parent);
            let available = fs::read_to_string(m.path.join("cgroup.controllers")).unwrap_or_default();
            let wanted: Vec<&str> = ["memory", "cpu", "pids"]
                .into_iter()
                .filter(|c| available.split_whitespace().any(|a| a == *c))
                .collect();
            for c in &wanted {
                // Best effort: systemd usually enabled them already.
                let _ = fs::write(m.path.join("cgroup.subtree_control"), format!("+{c}"));
            }
            if usable_dir(&base) {
                for c in &wanted {
                    let _ = fs::write(base.join("cgroup.subtree_control"), format!("+{c}"));
                }
                let enabled = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
                found.controllers = enabled.split_whitespace().map(str::to_string).collect();
                found
                    .controllers
                    .retain(|c| ["memory", "cpu", "pids"].contains(&c.as_str()));
                found.cgroup_kill = base.join("cgroup.kill").exists();
                found.v2 = Some(base);
                found.version = CgroupVersion::V2;
            }
        }
        if found.controllers.iter().any(|c| c == "memory") {
            return found;
        }
        // v1 controllers: used for limits when v2 has none of them.
        for controller in ["memory", "cpu", "pids"] {
            let Some(m) = all
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))
            else {
                continue;
            };
            let own = own_path(Some(controller));
            let base = m.path.join(own).join(parent);
            if !usable_dir(&base) {
                continue;
            }
            match controller {
                "memory" => found.v1_memory = Some(base),
                "cpu" => found.v1_cpu = Some(base),
                _ => found.v1_pids = Some(base),
            }
        }
        let v1: Vec<String> = [
            ("memory", &found.v1_memory),
            ("cpu", &found.v1_cpu),
            ("pids", &found.v1_pids),
        ]
        .into_iter()
        .filter(|(_, p)| p.is_some())
        .map(|(c, _)| c.to_string())
        .collect();
        if !v1.is_empty() {
            found.version = CgroupVersion::V1;
            found.controllers = v1;
        }
        found
    }

    fn bases(&self) -> Vec<&PathBuf> {
        [&self.v2, &self.v1_memory, &self.v1_cpu, &self.v1_pids]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Creates the container's groups and writes its limits. Returns what was created and the
    /// limits that could not be applied (controller missing).
    pub(crate) fn create(
        &self,
        pod_uid: &str,
        name: &str,
        limits: Limits,
    ) -> Result<(ContainerCgroup, Vec<&'static str>)> {
        let mut cg = ContainerCgroup {
            remover: self.remover.clone(),
            ..ContainerCgroup::default()
        };
        let mut missing = Vec::new();
        if self.version == CgroupVersion::None {
            if limits.memory_bytes.is_some() {
                missing.push("memory");
            }
            if limits.cpu_millis.is_some() {
                missing.push("cpu");
            }
            if limits.pids.is_some() {
                missing.push("pids");
            }
            return Ok((cg, missing));
        }
        let leaf = |base: &PathBuf| base.join(pod_uid).join(name);
        if let Some(base) = &self.v2 {
            let pod = base.join(pod_uid);
            // The pod's group is made for its first container (with the controllers its
            // containers' groups need, where limits are v2's); later ones find it.
            let made = match fs::create_dir(&pod) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(_) => {
                    fs::create_dir_all(&pod).map_err(io_err(&pod))?;
                    true
                }
            };
            if made && self.version == CgroupVersion::V2 {
                for c in &self.controllers {
                    let _ = fs::write(pod.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
            let dir = leaf(base);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            cg.v2 = Some(dir.clone());
            cg.dirs.push(dir);
        }
        let v2_limits = self.version == CgroupVersion::V2;
        // Memory.
        if let Some(bytes) = limits.memory_bytes {
            if v2_limits && self.controllers.iter().any(|c| c == "memory") {
                let dir = cg.v2.clone().unwrap_or_default();
                write(&dir.join("memory.max"), &bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                cg.memory = Some((dir, true));
            } else if let Some(base) = &self.v1_memory {
                let dir = leaf(base);
                fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                cg.memory = Some((dir.clone(), false));
                cg.dirs.push(dir);
            } else {
                missing.push("memory");
            }
        } else if let Some(base) = self.v1_memory_without_limit() {
            let dir = leaf(base);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            cg.memory = Some((dir.clone(), false));
            cg.dirs.push(dir);
        }
        if let Some(millis) = limits.cpu_millis {
            let period: u64 = 100_000;
            let quota = (millis * period / 1000).max(1000);
            if v2_limits && self.controllers.iter().any(|c| c == "cpu") {
                let dir = cg.v2.clone().unwrap_or_default();
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            } else if let Some(base) = &self.v1_cpu {
                let dir = leaf(base);
                fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                cg.dirs.push(dir);
            } else {
                missing.push("cpu");
            }
        }
        if let Some(max) = limits.pids {
            if v2_limits && self.controllers.iter().any(|c| c == "pids") {
                let dir = cg.v2.clone().unwrap_or_default();
                write(&dir.join("pids.max"), &max.to_string())?;
            } else if let Some(base) = &self.v1_pids {
                let dir = leaf(base);
                fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                write(&dir.join("pids.max"), &max.to_string())?;
                cg.dirs.push(dir);
            } else {
                missing.push("pids");
            }
        }
        Ok((cg, missing))
    }

    /// The v1 memory hierarchy where a container gets a group even without a memory limit:
    /// where limits are v1's, as the v1 memory group still records OOM kills and tracks pids.
    /// With the v2 hierarchy (where there is one), the groups every container gets.
    fn v1_memory_without_limit(&self) -> Option<&PathBuf> {
        (self.version == CgroupVersion::V1)
            .then_some(self.v1_memory.as_ref())
            .flatten()
    }

    /// Removes the pod's directory in every hierarchy, with its containers' groups, on the
    /// [removal thread](Remover); resolves once done.
    pub(crate) fn remove_pod(&self, pod_uid: &str) -> oneshot::Receiver<()> {
        let (done, removed) = oneshot::channel();
        self.remover.submit(self.pod_removal(pod_uid).notifying(done));
        removed
    }

    /// [`remove_pod`](Self::remove_pod) on the calling thread, which it blocks.
    pub(crate) fn remove_pod_blocking(&self, pod_uid: &str) {
        self.pod_removal(pod_uid).finish_blocking();
    }

    /// The removal of the pod's directory in every hierarchy.
    fn pod_removal(&self, pod_uid: &str) -> Removal {
        Removal::of(self.bases().into_iter().map(|base| base.join(pod_uid)))
    }

    /// Removes the (empty) base directories.
    pub(crate) fn remove_bases(&self) {
        for base in self.bases() {
            let _ = fs::remove_dir(base);
        }
    }

    /// Kills every process under `<base>` and removes the groups: what a previous run left.
    pub(crate) fn cleanup_all(&self) {
        self.remove_pods_except(&[]);
    }

    /// Kills every process of the pods not in `keep` and removes their groups.
    pub(crate) fn remove_pods_except(&self, keep: &[String]) {
        for base in self.bases() {
            let Ok(pods) = fs::read_dir(base) else { continue };
            for pod in pods.flatten() {
                if pod.file_type().is_ok_and(|t| t.is_dir())
                    && let Some(uid) = pod.file_name().to_str()
                    && !keep.iter().any(|k| k == uid)
                {
                    self.remove_pod_blocking(uid);
                }
            }
        }
    }
}

/// The hierarchies the runtime gives a container without limits a group in, for measurements
/// that make the same groups without the runtime (the benchmarks' floors). [`detect`]ed as the
/// runtime detects them, with `parent` as its cgroup parent; dropping it removes the parent's
/// (by then empty) directories again.
///
/// [`detect`]: Self::detect
pub struct BareHierarchies(Cgroups);

impl BareHierarchies {
    /// Finds the hierarchies and creates `parent` in each usable one.
    pub fn detect(parent: &str) -> Self {
        BareHierarchies(Cgroups::detect(parent))
    }

    /// The directories under which a pod's group goes, with the container's group in it: the
    /// hierarchies in which the runtime gives a container without limits a group (the v2
    /// hierarchy where there is one, and v1's memory hierarchy where limits are v1's). Empty
    /// without a usable hierarchy.
    pub fn bases(&self) -> Vec<&Path> {
        let c = &self.0;
        c.v2.as_deref()
            .into_iter()
            .chain(c.v1_memory_without_limit().map(PathBuf::as_path))
            .collect()
    }
}

impl Drop for BareHierarchies {
    fn drop(&mut self) {
        self.0.remove_bases();
    }
}

/// How long a [`Removal`] waits for a group's killed processes to exit.
const EMPTY_WAIT: Duration = Duration::from_secs(2);
/// How often a [`Removal`] waiting for killed processes tries again.
const RETRY: Duration = Duration::from_millis(10);

/// The removal of groups, each with its child groups (removed first). Normally every group
/// is empty by then and one `rmdir` each is all there is to do: only a group that will not go
/// is read, for child groups (a cgroup directory lists dozens of control files; a `stat` of
/// each to tell them from child groups was a third of the node's CPU while 110 pods were
/// deleted at once). What still runs in a group is killed, and the group removed once it has
/// exited, for at most [`EMPTY_WAIT`] from the first kill; then it is left.
#[derive(Debug)]
struct Removal {
    /// The groups still to remove, the next one last.
    stack: Vec<PathBuf>,
    /// Groups whose child groups were put on the stack.
    expanded: Vec<PathBuf>,
    /// Set at the first kill (not when queued: a removal may wait its turn behind many).
    deadline: Option<Instant>,
    /// Told when done.
    done: Option<oneshot::Sender<()>>,
}

impl Removal {
    /// Removes `groups`, in this order.
    fn of(groups: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut stack: Vec<PathBuf> = groups.into_iter().collect();
        stack.reverse();
        Removal {
            stack,
            expanded: Vec::new(),
            deadline: None,
            done: None,
        }
    }

    fn notifying(mut self, done: oneshot::Sender<()>) -> Self {
        self.done = Some(done);
        self
    }

    /// Removes what can go now. False while a group waits for its killed processes to exit.
    fn advance(&mut self) -> bool {
        while let Some(dir) = self.stack.last() {
            let busy = fs::remove_dir(dir).is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY));
            if !busy || self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.stack.pop();
                continue;
            }
            if !self.expanded.contains(dir) {
                self.expanded.push(dir.clone());
                let children = child_groups(dir);
                if !children.is_empty() {
                    self.stack.extend(children);
                    continue;
                }
            }
            kill_dir(dir);
            self.deadline.get_or_insert_with(|| Instant::now() + EMPTY_WAIT);
            return false;
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        true
    }

    /// Advances until done, sleeping between tries: for blocking contexts.
    #[allow(clippy::disallowed_methods)]
    fn finish_blocking(mut self) {
        while !self.advance() {
            std::thread::sleep(RETRY);
        }
    }
}

/// One thread that removes groups, one after the other, started with the first removal. The
/// kernel removes groups under one global lock: from a blocking-pool thread per pod, 110 pods'
/// groups took three times the CPU of one thread removing them in turn (spinning and switching
/// on that lock), and a thread each to be started. A removal waiting for killed processes
/// waits beside the others, not before them.
#[derive(Clone, Debug, Default)]
struct Remover(Arc<OnceLock<Option<mpsc::Sender<Removal>>>>);

impl Remover {
    /// Hands `removal` to the thread (done on the calling thread, blocking, should the thread
    /// not start).
    fn submit(&self, mut removal: Removal) {
        if removal.stack.is_empty() {
            removal.advance();
            return;
        }
        let sender = self.0.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("podvisor-cgroup-rm".into())
                .spawn(move || remove_in_turn(&rx))
                .inspect_err(|e| tracing::warn!(error = %e, "starting the cgroup removal thread"))
                .ok()
                .map(|_| tx)
        });
        match sender {
            Some(tx) => {
                if let Err(mpsc::SendError(removal)) = tx.send(removal) {
                    removal.finish_blocking();
                }
            }
            None => removal.finish_blocking(),
        }
    }
}

/// The removal thread: each removal as it comes, those waiting for killed processes tried
/// again every [`RETRY`]. Ends once every sender is gone and every removal done.
fn remove_in_turn(rx: &mpsc::Receiver<Removal>) {
    let mut waiting: Vec<Removal> = Vec::new();
    let mut next_retry = Instant::now();
    loop {
        let received = if waiting.is_empty() {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(next_retry.saturating_duration_since(Instant::now()))
        };
        match received {
            Ok(mut removal) => {
                if !removal.advance() {
                    waiting.push(removal);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                waiting.into_iter().for_each(Removal::finish_blocking);
                return;
            }
        }
        if Instant::now() >= next_retry {
            waiting.retain_mut(|r| !r.advance());
            next_retry = Instant::now() + RETRY;
        }
    }
}

/// The child groups of group `dir`: its subdirectories, told from its control files by the
/// directory entry's type (no `stat` of each).
fn child_groups(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(io_err(path))
}

/// SIGKILLs the processes listed in one group (without `cgroup.kill`). Returns how many.
fn kill_dir(dir: &Path) -> usize {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return 0;
    }
    let pids = read_pids(dir);
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pids.len()
}

fn read_pids(dir: &Path) -> Vec<i32> {
    crate::small::parse(&dir.join("cgroup.procs"), |text| {
        Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    })
    .unwrap_or_default()
}

impl ContainerCgroup {
    /// What a new process must join: the v2 group's directory (and its `cgroup.procs`), and
    /// the `tasks` file of every v1 group.
    pub(crate) fn join_paths(&self) -> (Option<(PathBuf, PathBuf)>, Vec<PathBuf>) {
        let v2 = self.v2.as_ref().map(|d| (d.clone(), d.join("cgroup.procs")));
        let v1 = self
            .dirs
            .iter()
            .filter(|d| Some(*d) != self.v2.as_ref())
            .map(|d| d.join("tasks"))
            .collect();
        (v2, v1)
    }

    /// Whether the container has groups, which then hold every process it started (none can
    /// leave them without root).
    pub(crate) fn tracks(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// The pids currently in the container's groups: the v2 group's where there is one (it
    /// holds every process the v1 groups hold; a v1 `tasks` file is the dearer read, a list
    /// the kernel builds and caches, with work queued to free it), else the v1 groups'.
    pub(crate) fn pids(&self) -> Vec<i32> {
        if let Some(v2) = &self.v2 {
            return read_pids(v2);
        }
        let mut all: Vec<i32> = self.dirs.iter().flat_map(|d| read_pids(d)).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// SIGKILLs everything in the groups: `cgroup.kill` when there is a v2 group, else each
    /// listed pid (repeated by the caller until [`Self::pids`] is empty).
    pub(crate) fn kill_all(&self) {
        if let Some(v2) = &self.v2
            && fs::write(v2.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for dir in &self.dirs {
            kill_dir(dir);
        }
    }

    /// How many processes of this container's groups the kernel's OOM killer has killed.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Some((dir, v2)) = &self.memory else {
            return 0;
        };
        let file = if *v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        crate::small::parse(&dir.join(file), |text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
    }

    /// The groups' cumulative CPU time (ns) and working set (bytes), each where a group has
    /// it: CPU from the v2 group's `cpu.stat`, memory from the v2 group's or the v1 memory
    /// group's files (rule 6.6).
    pub(crate) fn usage(&self) -> (Option<u64>, Option<u64>) {
        let v1_memory = matches!(&self.memory, Some((_, false)));
        let dirs = self.usage_dirs.get_or_init(|| UsageDirs {
            v2: self.v2.as_deref().and_then(open_dir),
            memory: match &self.memory {
                Some((dir, false)) => open_dir(dir),
                _ => None,
            },
        });
        let cpu = dirs.v2.as_ref().and_then(crate::usage::v2_cpu_ns);
        let memory = if v1_memory {
            // A v1 memory group is made only where the v2 hierarchy has no memory controller:
            // its group has no `memory.current` to look for (a failed lookup per container
            // and scrape, a quarter of the files a scrape opened on such machines).
            dirs.memory.as_ref().and_then(crate::usage::v1_working_set)
        } else {
            dirs.v2.as_ref().and_then(crate::usage::v2_working_set)
        };
        (cpu, memory)
    }

    /// Removes the groups, killing what was left in them, on the removal thread ([`Remover`]);
    /// returns at once.
    pub(crate) fn remove(&self) {
        self.remover.submit(Removal::of(self.dirs.iter().cloned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A temporary directory standing in for a cgroup v2 mount, with the files the kernel
    /// provides at its root.
    fn fake_v2() -> (tempfile::TempDir, Vec<Mount>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
        for (file, text) in [
            ("cgroup.controllers", "cpu memory pids"),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
        ] {
            fs::write(dir.path().join(file), text).unwrap_or_else(|e| panic!("{e}"));
        }
        let mounts = vec![Mount {
            path: dir.path().to_path_buf(),
            fstype: "cgroup2".into(),
            options: vec!["rw".into()],
        }];
        (dir, mounts)
    }

    /// A base as a run of the node left it: a group with its `cgroup.procs`.
    fn leave_base(root: &Path, parent: &str) -> PathBuf {
        let base = root.join(parent);
        fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
        fs::write(base.join("cgroup.procs"), "").unwrap_or_else(|e| panic!("{e}"));
        fs::write(base.join("cgroup.subtree_control"), "").unwrap_or_else(|e| panic!("{e}"));
        base
    }

    /// Runs `f` as an unprivileged user: as root in a thread whose filesystem user is
    /// `nobody` (which also drops the thread's file capabilities); otherwise as we are.
    fn unprivileged<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                if nix::unistd::geteuid().is_root() {
                    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(65534));
                }
                f()
            })
            .join()
            .unwrap_or_else(|_| panic!("probe thread panicked"))
        })
    }

    fn no_own_path(_: Option<&str>) -> String {
        String::new()
    }

    /// A removal that waited its turn for longer than it may wait for killed processes still
    /// kills what runs in its group and removes the group once that has exited: the wait
    /// starts at the kill, not when the removal was queued.
    #[test]
    #[ignore = "needs root"]
    #[allow(clippy::disallowed_methods)]
    fn a_removal_queued_long_ago_still_kills_and_removes() {
        let _children = crate::TEST_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        let hierarchies = BareHierarchies::detect(&format!("podvisor-test-rm-{}", std::process::id()));
        let Some(base) = hierarchies.bases().first().map(|b| b.to_path_buf()) else {
            panic!("no usable cgroup hierarchy (run as root)");
        };
        let group = base.join("busy");
        fs::create_dir(&group).unwrap_or_else(|e| panic!("{e}"));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(group.join("cgroup.procs"), sleeper.id().to_string()).unwrap_or_else(|e| panic!("{e}"));
        let removal = Removal::of([group.clone()]);
        std::thread::sleep(EMPTY_WAIT + RETRY);
        removal.finish_blocking();
        let killed = sleeper.try_wait().ok().flatten();
        let removed = !group.exists();
        // Whatever the outcome, nothing is left behind.
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let _ = fs::remove_dir(&group);
        assert!(
            killed.is_some_and(|s| !s.success()),
            "the sleep was killed: {killed:?}"
        );
        assert!(removed, "the group is gone");
    }

    #[test]
    fn a_base_this_process_can_use_is_detected() {
        let (dir, mounts) = fake_v2();
        leave_base(dir.path(), "podvisor");
        let found = Cgroups::detect_in(&mounts, &no_own_path, "podvisor");
        assert_eq!(found.version, CgroupVersion::V2);
        assert_eq!(found.v2.as_deref(), Some(dir.path().join("podvisor").as_path()));
        // The probe group is gone again.
        let left: Vec<_> = fs::read_dir(dir.path().join("podvisor"))
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_base_left_by_a_root_run_is_not_usable_without_root() {
        let (dir, mounts) = fake_v2();
        let base = leave_base(dir.path(), "podvisor");
        // Not ours: no group can be created in it, no process moved into it.
        fs::set_permissions(&base, fs::Permissions::from_mode(0o555)).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(base.join("cgroup.procs"), fs::Permissions::from_mode(0o444))
            .unwrap_or_else(|e| panic!("{e}"));
        let found = unprivileged(|| Cgroups::detect_in(&mounts, &no_own_path, "podvisor"));
        assert_eq!(found.version, CgroupVersion::None, "{found:?}");
        assert!(found.v2.is_none());
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_missing_base_that_cannot_be_created_is_not_usable() {
        let (dir, mounts) = fake_v2();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap_or_else(|e| panic!("{e}"));
        let found = unprivileged(|| Cgroups::detect_in(&mounts, &no_own_path, "podvisor"));
        assert_eq!(found.version, CgroupVersion::None);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The burst benchmark's floor makes a pod's groups where the runtime does:
    /// [`BareHierarchies::bases`] are the hierarchies in which a container without limits gets
    /// its groups, with v2 alone and on a hybrid machine (v1's memory hierarchy beside v2).
    #[test]
    fn the_floors_hierarchies_are_those_of_a_container_without_limits() {
        let (v2, mut mounts) = fake_v2();
        leave_base(v2.path(), "podvisor");
        let alone = Cgroups::detect_in(&mounts, &no_own_path, "podvisor");
        let v1 = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        leave_base(v1.path(), "podvisor");
        mounts.push(Mount {
            path: v1.path().to_path_buf(),
            fstype: "cgroup".into(),
            options: vec!["rw".into(), "memory".into()],
        });
        let hybrid = Cgroups::detect_in(&mounts, &no_own_path, "podvisor");
        assert_eq!(hybrid.version, CgroupVersion::V1, "{hybrid:?}");
        for (found, groups) in [(alone, 1), (hybrid, 2)] {
            let (cg, missing) = found
                .create("pod-uid", "c", Limits::default())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(missing.is_empty());
            let made: Vec<&Path> = cg.dirs.iter().filter_map(|d| d.parent()?.parent()).collect();
            let floor = BareHierarchies(found);
            assert_eq!(made.len(), groups, "{made:?}");
            assert_eq!(made, floor.bases());
        }
    }

    #[test]
    fn a_directory_that_is_no_cgroup_is_not_usable() {
        let (dir, mounts) = fake_v2();
        fs::create_dir_all(dir.path().join("podvisor")).unwrap_or_else(|e| panic!("{e}"));
        let found = Cgroups::detect_in(&mounts, &no_own_path, "podvisor");
        assert_eq!(found.version, CgroupVersion::None);
    }
}
