//! podvisor's process runtime: Kubernetes pod sandboxes and containers as supervised host
//! processes, implementing [`ContainerRuntime`](podvisor_core::runtime::ContainerRuntime),
//! [`ContainerExec`](podvisor_core::runtime::ContainerExec),
//! [`PodStreams`](podvisor_core::streams::PodStreams) and
//! [`UsageSource`](podvisor_core::usage::UsageSource).
//!
//! What it is:
//! - **Sandboxes** (the pause container's role): as root, a holder process owns the
//!   pod's network, UTS, IPC and mount namespaces ([`sandbox`] explains the design). The pod
//!   gets an IP from the pod CIDR on the node bridge through a veth pair, programmed over
//!   netlink; its hostname; its own `/etc/hosts` and `/etc/resolv.conf`. `hostNetwork` pods,
//!   and every pod when the node is not root, use the host network (with a warning).
//! - **Containers**: each instance is a process tree in its own session/process group and,
//!   where the machine allows, its own cgroup (v2, or v1 controllers; see [`cgroup`]) with
//!   memory, CPU and pids limits; the main process is created inside it (`clone3` with
//!   `CLONE_INTO_CGROUP`), joins the sandbox's namespaces and gets a private mount namespace
//!   with its volume mounts and its `terminationMessagePath` file.
//! - **Logs**: stdout and stderr are read continuously into CRI-format files, rotated by size
//!   ([`logs`]), by each container's monitor; [`ProcessRuntime::log_path`] finds them, and the runtime, as the API's
//!   [`LogSource`](podvisor_core::logs::LogSource), reads them back as lines ([`logs::read`]).
//! - **Stop and reaping**: the stop signal to the main process, SIGKILL to every descendant at the
//!   deadline, leftovers killed when the main process ends; each container's monitor is a child
//!   subreaper and reaps its orphans, and so is the node for what it starts itself ([`process`]
//!   has the rule that keeps it from stealing other exits).
//! - **The kubelet's host operations** ([`LinuxHost`]): the tmpfs mounts of pod volumes and
//!   the figures the Node's conditions are measured from.
//! - **Routes to other nodes' pod networks** ([`routes::NodeRoutes`], host-gw), the kubelet's
//!   [`PodRoutes`](podvisor_core::host::PodRoutes).
//! - **Exec** from a helper thread that joined the container's namespaces, spawned as a main
//!   process is but in a process group of its own and outside the cgroup ([`exec`]).
//! - **Into running pods** ([`PodStreams`](podvisor_core::streams::PodStreams), issue 17):
//!   interactive exec from the same helper thread, but created like a main process inside the
//!   container's cgroup and session, with separate stdin/stdout/stderr pipes or a pty opened
//!   in the container's mount namespace (`tty`); attach to a main process, whose output is
//!   copied to attached clients as it is logged (a bounded queue each, a slow client is
//!   dropped), whose stdin (`stdin: true`) the runtime keeps open between attaches
//!   (`stdinOnce`: the first client takes it) and which runs on a pty with `tty: true` (logged
//!   as stdout); port-forward to the pod's loopback from a thread that joined its network
//!   namespace. Nothing buffers without bound: output waits in the pipes until read.
//! - **Usage counters** ([`UsageSource`](podvisor_core::usage::UsageSource), `kubectl top`): a
//!   container's from its cgroup files (v2 `cpu.stat`, v2 or v1 memory working set; opened
//!   from the group directories' descriptors, which the container keeps from its first read),
//!   or, without one, approximated over its processes from `/proc`; the node's from
//!   `/proc/stat` and `/proc/meminfo`.
//!
//! How it is built: a container start is first a value, a launch plan computed from the pod,
//! the container, its sandbox and the node's options without touching the machine, then short
//! steps that carry it out. The orchestration reaches cgroups, processes and netlink only
//! through crate-private seams (real implementations by default, a recording fake machine in
//! the unit tests), so start, stop, sandbox creation and teardown and their failure paths are
//! tested without root. Errors are [`error`] enums with their causes as sources. Every
//! `unsafe` of the workspace lives in one audited, crate-private module (`sys`): the rest of
//! this crate denies `unsafe_code`; [`with_new_pod_namespaces`] is its safe face for others.
//!
//! What it is not: an OCI runtime. There are no images, no root filesystem, no PID or user
//! namespace, no seccomp or capabilities handling; containers see the host's filesystem.
//!
//! Start at [`ProcessRuntime::new`] with a [`RuntimeConfig`]; [`ProcessRuntime::capabilities`]
//! says what the machine allowed.
//!
//! # Node restarts (issue 18)
//! Each container's main process runs under its own monitor (`podvisor-monitor`, built from
//! `sys/monitor/program.rs` by `build.rs` and executed from a sealed memfd): the monitor is
//! the main process's parent and a child subreaper, writes the CRI log ([`logs::cri`]) and
//! the exit record, and depends on nothing of the node. The node talks to monitors through
//! pidfds and files only, no socket: it watches the main process and the monitor for their
//! ends and reads the exit record, follows the log file while someone reads it, and writes its
//! own record of each instance (versioned JSON: pids with their start times, cgroup, exec
//! context, stdio) next to the log, in the same file as the exit record (`<restart>.state`,
//! each appended in one write; an older node's monitors wrote `<restart>.exit`), and one per sandbox
//! (`<data_dir>/sandboxes/<uid>.json`: holder, veth, pod IP, grace period). The sandbox
//! holders are started without a parent-death signal, so they outlive the node as well.
//! With `cleanup_on_start` (the default) a new runtime adopts what it finds
//! (`runtime/adopt.rs`): sandboxes whose holders live (or host-network ones) and the newest
//! instance of each of their containers, running (supervised again, stdin and pty master
//! taken back from the monitor with `pidfd_getfd`) or ended with its exit record; it kills
//! and removes everything else (holders, unknown monitors and their processes, veths, IPs,
//! cgroups). [`ContainerRuntime::adopt`](podvisor_core::runtime::ContainerRuntime::adopt)
//! hands a pod's survivors to its worker; survivors of pods the API no longer has stop
//! gracefully in `remove_pods_except`. Where no monitor can be started (the fakes, a kernel
//! without `clone3`), the node reads the output and reaps the main process itself, and such
//! containers end with it.
//!
//! # Cancel safety
//! Every future may be dropped. Dropping [`Started::exit`](podvisor_core::runtime::Started)
//! does not stop the container: a task per container keeps supervising, reaping and logging
//! it for as long as the tokio runtime lives. Dropping a `start` or `create_sandbox` future
//! in the middle may leave a process or a sandbox that the runtime still tracks (removed by
//! `remove_sandbox`, or adopted or cleaned up at the next start). Dropping an `exec` future leaves the exec'd command
//! running until it ends by itself. Dropping every part of an interactive exec's
//! [`Session`](podvisor_core::streams::Session) before its end kills the command's process tree
//! (a task per session waits for it, reaps it and kills what it left); dropping an attach
//! session leaves the container running (with `stdinOnce`, it closes the container's stdin
//! when it held it). When the tokio runtime shuts down, containers keep running under
//! their monitors until the next runtime on the same data directory adopts them.
#![deny(unsafe_code)]

pub mod cgroup;
pub mod env;
pub mod error;
pub mod exec;
pub mod host;
pub mod ipam;
pub mod logs;
mod mounts;
pub mod network;
mod privilege;
pub mod process;
pub mod routes;
mod runtime;
pub mod sandbox;
mod seams;
mod small;
mod spawn;
mod stdio;
mod sys;
mod usage;

pub use cgroup::CgroupVersion;
pub use host::LinuxHost;
pub use privilege::is_root;
pub use runtime::{
    Capabilities, EXEC_OUTPUT_LIMIT, InitError, PIDS_LIMIT_ANNOTATION, PIDS_LIMIT_CONTAINER_PREFIX,
    ProcessRuntime, RuntimeConfig, TERMINATION_MESSAGE_LIMIT, delete_link,
};
pub use sys::with_new_pod_namespaces;

/// Held by the unit tests that have children of the test process or wait for "any child": such
/// a wait must not meet another test's children.
#[cfg(test)]
pub(crate) static TEST_CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());
