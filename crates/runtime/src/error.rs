//! The runtime's errors, one enum per operation, each keeping its cause as `source`. Their
//! texts are what users see in a container's `waiting.message` or an event, so they keep the
//! kubelet's wording where it has one (`exec: "x": executable file not found in $PATH`).
//! At the `ContainerRuntime` boundary they become `RuntimeError::Start`/`Sandbox`/`Exec`.

use std::io;
use std::path::PathBuf;

use crate::cgroup::CgroupError;
use crate::env::EnvError;
use crate::ipam::IpamError;
use crate::network::NetworkError;
use crate::sandbox::HolderError;

/// Why the executable of a container or an exec could not be found, as runc words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A bare name that is in no directory of `PATH` (or the program is empty).
    #[error("exec: \"{program}\": executable file not found in $PATH")]
    NotInPath {
        /// The program as the spec gives it.
        program: String,
    },
    /// The file exists but is not executable (or not a regular file).
    #[error("exec: \"{program}\": permission denied")]
    PermissionDenied {
        /// The program as the spec gives it.
        program: String,
    },
    /// A path (with a `/`) that does not exist.
    #[error("exec: \"{program}\": stat {program}: no such file or directory")]
    NoSuchFile {
        /// The program as the spec gives it.
        program: String,
    },
}

/// Why a container's mount namespace cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A mount point that is not absolute.
    #[error("mount point {0:?} is not an absolute path")]
    NotAbsolute(String),
    /// A mount point with `..`.
    #[error("mount point {0:?} must not contain '..'")]
    ParentDir(String),
    /// `/` as a mount point.
    #[error("the root directory cannot be a mount point")]
    Root,
    /// A mount's source cannot be examined.
    #[error("{}: {source}", path.display())]
    Source {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the host's view of a directory to shadow failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a container could not be started (its `waiting.message`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The environment cannot be built.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// Neither `command` nor `args`.
    #[error("no command given")]
    NoCommand,
    /// `workingDir` does not exist in the container's view (runc's text).
    #[error("chdir to cwd ({cwd:?}) set in config.json failed: no such file or directory")]
    NoWorkingDir {
        /// The working directory.
        cwd: String,
    },
    /// The working directory cannot be passed to the kernel.
    #[error("working directory contains a NUL byte")]
    NulInWorkingDir,
    /// The executable was not found or is not executable.
    #[error(transparent)]
    Executable(#[from] ResolveError),
    /// A file of the container (its directory, log, termination-message file, cgroup file)
    /// could not be made or opened.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The container's mounts cannot be made.
    #[error(transparent)]
    Mounts(#[from] MountError),
    /// Its cgroup could not be created or limited.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The output pipes could not be made.
    #[error("pipe: {0}")]
    Pipe(#[source] nix::errno::Errno),
    /// The pty of a `tty` container could not be opened.
    #[error("open pty: {0}")]
    Terminal(#[source] io::Error),
    /// The process could not be created or failed before exec.
    #[error("exec: \"{program}\": {source}")]
    Spawn {
        /// The program as the spec gives it.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl StartError {
    /// A failed spawn of `program`, with runc's texts for the two causes users meet.
    pub(crate) fn spawn(program: &str, source: io::Error) -> StartError {
        let program = program.to_string();
        match source.kind() {
            io::ErrorKind::NotFound => ResolveError::NotInPath { program }.into(),
            io::ErrorKind::PermissionDenied => ResolveError::PermissionDenied { program }.into(),
            _ => StartError::Spawn { program, source },
        }
    }
}

/// A path and what happened to it, for [`StartError::File`].
pub(crate) fn file_error(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StartError {
    let path = path.into();
    move |source| StartError::File { path, source }
}

/// Why a pod sandbox could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The pod has no UID to key its sandbox by.
    #[error("pod has no metadata.uid")]
    NoUid,
    /// The pod's directory could not be made.
    #[error("{}: {source}", path.display())]
    PodDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No pod IP.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The pod's `hosts` or `resolv.conf` file could not be written.
    #[error("{file}: {source}")]
    File {
        /// `hosts` or `resolv.conf`.
        file: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The holder process failed.
    #[error(transparent)]
    Holder(#[from] HolderError),
    /// The holder's creation did not finish (its task failed).
    #[error("{0}")]
    Task(#[source] tokio::task::JoinError),
    /// The holder's namespaces could not be opened.
    #[error("cannot open the holder's namespaces")]
    Namespaces(#[source] io::Error),
    /// The pod's network could not be set up.
    #[error("pod network: {0}")]
    Network(#[source] NetworkError),
}

/// Why a command could not be run in a container (exec).
#[derive(Clone, Debug, thiserror::Error)]
pub enum ExecError {
    /// The exec thread could not leave the node's filesystem context.
    #[error("unshare(CLONE_FS): {0}")]
    Unshare(#[source] nix::errno::Errno),
    /// The exec thread could not join one of the container's namespaces.
    #[error("setns {kind:?}: {source}")]
    Setns {
        /// The namespace kind.
        kind: nix::sched::CloneFlags,
        /// The cause.
        #[source]
        source: nix::errno::Errno,
    },
    /// An empty command.
    #[error("exec: no command given")]
    NoCommand,
    /// The executable was not found or is not executable.
    #[error(transparent)]
    Executable(#[from] ResolveError),
    /// The output pipe could not be made.
    #[error("pipe: {0}")]
    Pipe(#[source] nix::errno::Errno),
    /// The pty of a `tty` exec could not be opened.
    #[error("open pty: {message}")]
    Terminal {
        /// The cause's text.
        message: String,
    },
    /// The process could not be spawned.
    #[error("exec: \"{program}\": {message}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause's text (kept as text: the error is handed to every later request).
        message: String,
    },
}
