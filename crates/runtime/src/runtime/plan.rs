//! A container start as a value: [`plan`] turns (launch, sandbox, options) into a
//! [`LaunchPlan`] (argv, environment, directory, user, cgroup and limits, mounts, namespaces
//! to join, files, stop signal) without touching the machine; `container.rs` carries it out in
//! short steps.

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use podvisor_core::corev1;
use podvisor_core::runtime::{ContainerLaunch, Mount};

use super::{PIDS_LIMIT_ANNOTATION, PIDS_LIMIT_CONTAINER_PREFIX, hostname_of, pod_dir, pod_name};
use crate::cgroup::Limits;
use crate::env;
use crate::error::StartError;
use crate::mounts::BindSpec;

/// What the runtime knows of the pod's sandbox when one of its containers starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SandboxView {
    /// The sandbox has namespaces of its own (network, UTS, IPC, mount) to join.
    pub(crate) namespaces: bool,
    /// Its holder process, whose mount table the container's starts from.
    pub(crate) holder: Option<i32>,
}

/// The node's side of a start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaunchOptions<'a> {
    /// `<data_dir>/pods/<ns>_<name>_<uid>/<container>/` holds the container's files.
    pub(crate) data_dir: &'a Path,
    /// For `spec.nodeName` when the pod does not set it.
    pub(crate) node_name: &'a str,
    /// The node's hostname: a `hostNetwork` pod's `HOSTNAME`.
    pub(crate) node_hostname: &'a str,
    /// Containers get a mount namespace of their own (as root): their volume mounts and the
    /// termination-message file are bound in it. Without one, mounts are ignored.
    pub(crate) own_mount_namespace: bool,
}

/// A namespace of the sandbox a container joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Namespace {
    Net,
    Uts,
    Ipc,
    Mnt,
}

impl Namespace {
    /// Its name in `/proc/<pid>/ns` (and in instance records).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Namespace::Net => "net",
            Namespace::Uts => "uts",
            Namespace::Ipc => "ipc",
            Namespace::Mnt => "mnt",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Namespace> {
        [Namespace::Net, Namespace::Uts, Namespace::Ipc, Namespace::Mnt]
            .into_iter()
            .find(|n| n.name() == name)
    }

    pub(crate) fn flag(self) -> CloneFlags {
        match self {
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Mnt => CloneFlags::CLONE_NEWNS,
        }
    }
}

/// Everything one container start does, decided before anything is done.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LaunchPlan {
    pub(crate) pod_uid: String,
    pub(crate) container: String,
    pub(crate) restart_count: i32,
    /// `command` then `args` after `$(VAR)` expansion; never empty, `argv[0]` as the spec gives
    /// it. A host process has no image entrypoint: `args` alone are the command line, as for an
    /// image without ENTRYPOINT.
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: PathBuf,
    /// `runAsUser` / `runAsGroup` (the container's, else the pod's).
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// The name of the instance's cgroup under the pod's when it makes new ones
    /// (`<container>-<restart>`; a restart takes its predecessor's over), and its limits.
    pub(crate) cgroup: String,
    pub(crate) limits: Limits,
    /// The volume mounts in effect (none without a mount namespace of its own).
    pub(crate) mounts: Vec<Mount>,
    /// What its own mount namespace binds: the mounts, then the termination-message file
    /// unless a volume is mounted there. `None`: no mount namespace of its own.
    pub(crate) binds: Option<Vec<BindSpec>>,
    /// The sandbox namespaces to join, in order.
    pub(crate) join: Vec<Namespace>,
    /// The mount table the container's namespace starts from (its sandbox holder's, or the
    /// node's).
    pub(crate) base_mountinfo: PathBuf,
    /// The container's directory of files, its log file and termination-message file.
    pub(crate) dir: PathBuf,
    pub(crate) log_path: PathBuf,
    pub(crate) termination_file: PathBuf,
    /// `terminationMessagePolicy: FallbackToLogsOnError`.
    pub(crate) fallback_to_logs: bool,
    /// `lifecycle.stopSignal`, else SIGTERM.
    pub(crate) stop_signal: Signal,
    /// How the main process's standard streams are wired (`stdin`, `stdinOnce`, `tty`).
    pub(crate) stdio: StdioPlan,
    /// An ephemeral container's `targetContainerName` (`kubectl debug --target`): it runs in
    /// that container's mount namespace, so it sees the target's files as the target does.
    pub(crate) target: Option<String>,
}

/// A container's `stdin`, `stdinOnce` and `tty` (rule 1.22 of the streaming spec): a stdin
/// the runtime keeps open between attaches, closed after the first attached client detaches
/// with `stdin_once`; with `tty` the process runs on a pty whose output is logged as stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StdioPlan {
    pub(crate) stdin: bool,
    pub(crate) stdin_once: bool,
    pub(crate) tty: bool,
}

impl LaunchPlan {
    /// The program as the spec gives it.
    pub(crate) fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// `PATH` of the container's environment (the runtime's default without one).
    pub(crate) fn path_env(&self) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(env::DEFAULT_PATH, |(_, v)| v.as_str())
    }

    /// Where a path of the container is seen from the node before its mounts are made.
    pub(crate) fn host_view(&self, p: &Path) -> PathBuf {
        self.mounts
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
    }

    /// The first step on the machine: the working directory must exist and the program must
    /// resolve to an executable, both as the container will see them. Returns the executable.
    pub(crate) fn resolve_executable(&self) -> Result<PathBuf, StartError> {
        if !self.host_view(&self.cwd).is_dir() {
            return Err(StartError::NoWorkingDir {
                cwd: self.cwd.display().to_string(),
            });
        }
        Ok(crate::spawn::resolve(
            self.program(),
            self.path_env(),
            &self.cwd,
            &|p| self.host_view(p),
        )?)
    }
}

/// Plans the start of `launch` (see [`LaunchPlan`]). Fails with the container's
/// `waiting.message` when its environment cannot be built or it has no command.
pub(crate) fn plan(
    launch: &ContainerLaunch,
    sandbox: SandboxView,
    options: &LaunchOptions<'_>,
) -> Result<LaunchPlan, StartError> {
    let ContainerLaunch {
        pod,
        pod_ip,
        container,
        restart_count,
        mounts,
    } = launch;
    let restart_count = *restart_count;
    let (_, _, pod_uid) = pod_name(pod);
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let hostname = if host_network {
        options.node_hostname.to_string()
    } else {
        hostname_of(pod)
    };
    let source = env::FieldSource {
        pod,
        pod_ip: pod_ip.as_deref(),
        node_name: options.node_name,
    };
    let env = env::build(container, &source, &hostname)?;
    let argv = env::argv(container, &env);
    if argv.is_empty() {
        return Err(StartError::NoCommand);
    }
    let cwd = PathBuf::from(
        container
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
    );
    let sc = container.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let to_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let uid = to_u32(sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)));
    let gid = to_u32(
        sc.and_then(|s| s.run_as_group)
            .or(psc.and_then(|s| s.run_as_group)),
    );
    let dir = pod_dir(options.data_dir, pod).join(&container.name);
    let termination_file = dir.join("termination-log");
    let mounts = if options.own_mount_namespace {
        mounts.clone()
    } else {
        Vec::new()
    };
    let binds = options.own_mount_namespace.then(|| {
        let mut binds: Vec<BindSpec> = mounts
            .iter()
            .map(|m| BindSpec {
                source: m.host_path.clone(),
                target: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect();
        let term_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        if Path::new(&term_path).is_absolute() && !binds.iter().any(|b| b.target == term_path) {
            binds.push(BindSpec {
                source: termination_file.clone(),
                target: term_path,
                read_only: false,
            });
        }
        binds
    });
    let join = if sandbox.namespaces {
        vec![Namespace::Net, Namespace::Uts, Namespace::Ipc, Namespace::Mnt]
    } else {
        Vec::new()
    };
    let base_mountinfo = sandbox.holder.map_or_else(
        || PathBuf::from("/proc/self/mountinfo"),
        |pid| PathBuf::from(format!("/proc/{pid}/mountinfo")),
    );
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
    Ok(LaunchPlan {
        pod_uid,
        container: container.name.clone(),
        restart_count,
        argv,
        env,
        cwd,
        uid,
        gid,
        cgroup: format!("{}-{restart_count}", container.name),
        limits: container_limits(pod, container),
        mounts,
        binds,
        join,
        base_mountinfo,
        log_path: dir.join(format!("{restart_count}.log")),
        termination_file,
        dir,
        fallback_to_logs: container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
        stop_signal,
        stdio: StdioPlan {
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
        },
        target: pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .and_then(|e| e.iter().find(|e| e.name == container.name))
            .and_then(|e| e.target_container_name.clone()),
    })
}

/// Memory, CPU and pids limits: `resources.limits`, and the pids limit annotations.
pub(crate) fn container_limits(pod: &corev1::Pod, c: &corev1::Container) -> Limits {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn launch(container: serde_json::Value, spec: serde_json::Value, mounts: Vec<Mount>) -> ContainerLaunch {
        let mut spec_obj = json!({ "containers": [container.clone()] });
        if let (Some(o), Some(extra)) = (spec_obj.as_object_mut(), spec.as_object()) {
            o.extend(extra.clone());
        }
        let pod: corev1::Pod = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop", "uid": "u-1",
                          "annotations": { "podvisor.io/pids-limit": "50" } },
            "spec": spec_obj,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        ContainerLaunch {
            pod,
            pod_ip: Some("10.88.0.7".into()),
            container: serde_json::from_value(container).unwrap_or_else(|e| panic!("{e}")),
            restart_count: 2,
            mounts,
        }
    }

    fn options(own_mount_namespace: bool) -> LaunchOptions<'static> {
        LaunchOptions {
            data_dir: Path::new("/data"),
            node_name: "node-a",
            node_hostname: "host-a",
            own_mount_namespace,
        }
    }

    /// The plan of container `c` with `mounts`, in a pod without sandbox namespaces.
    fn planned(c: serde_json::Value, mounts: Vec<Mount>, own_mount_namespace: bool) -> LaunchPlan {
        plan(
            &launch(c, json!({}), mounts),
            SandboxView::default(),
            &options(own_mount_namespace),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn volume(host: &str, at: &str) -> Mount {
        Mount {
            volume: "v".into(),
            host_path: host.into(),
            container_path: at.into(),
            read_only: true,
            sensitive: false,
        }
    }

    #[test]
    fn a_plan_has_the_command_environment_user_cgroup_files_and_stop_signal() {
        let l = launch(
            json!({
                "name": "app",
                "command": ["/bin/sh", "-c", "echo $(GREETING)"],
                "env": [{ "name": "GREETING", "value": "hi" },
                        { "name": "IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
                "workingDir": "/srv",
                "securityContext": { "runAsUser": 1000 },
                "resources": { "limits": { "memory": "64Mi", "cpu": "500m" } },
                "lifecycle": { "stopSignal": "SIGINT" },
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }),
            json!({ "securityContext": { "runAsUser": 5, "runAsGroup": 7 } }),
            Vec::new(),
        );
        let sandbox = SandboxView {
            namespaces: true,
            holder: Some(42),
        };
        let p = plan(&l, sandbox, &options(true)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(p.program(), "/bin/sh");
        assert!(p.env.contains(&("IP".into(), "10.88.0.7".into())), "{:?}", p.env);
        assert!(p.env.contains(&("HOSTNAME".into(), "web".into())), "{:?}", p.env);
        assert_eq!(p.cwd, Path::new("/srv"));
        assert_eq!(
            (p.uid, p.gid),
            (Some(1000), Some(7)),
            "container's user, pod's group"
        );
        assert_eq!(p.cgroup, "app-2");
        assert_eq!(
            p.limits,
            Limits {
                memory_bytes: Some(64 << 20),
                cpu_millis: Some(500),
                pids: Some(50),
            }
        );
        assert_eq!(
            p.join,
            [Namespace::Net, Namespace::Uts, Namespace::Ipc, Namespace::Mnt]
        );
        assert_eq!(p.base_mountinfo, Path::new("/proc/42/mountinfo"));
        assert_eq!(p.dir, Path::new("/data/pods/shop_web_u-1/app"));
        assert_eq!(p.log_path, Path::new("/data/pods/shop_web_u-1/app/2.log"));
        assert_eq!(
            p.termination_file,
            Path::new("/data/pods/shop_web_u-1/app/termination-log")
        );
        assert!(p.fallback_to_logs);
        assert_eq!(p.stop_signal, Signal::SIGINT);
    }

    #[test]
    fn host_network_pods_get_the_nodes_hostname_and_join_nothing() {
        let l = launch(
            json!({ "name": "c", "command": ["true"], "lifecycle": { "stopSignal": "QUIT" } }),
            json!({ "hostNetwork": true }),
            Vec::new(),
        );
        let p = plan(&l, SandboxView::default(), &options(false)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            p.env.contains(&("HOSTNAME".into(), "host-a".into())),
            "{:?}",
            p.env
        );
        assert!(p.join.is_empty());
        assert_eq!(p.base_mountinfo, Path::new("/proc/self/mountinfo"));
        assert_eq!(p.cwd, Path::new("/"));
        assert_eq!(p.stop_signal, Signal::SIGQUIT, "a name without SIG works too");
        assert_eq!(p.binds, None, "no mount namespace of its own");
    }

    #[test]
    fn mounts_and_the_termination_file_are_bound_only_with_a_mount_namespace() {
        let mounts = vec![volume("/data/volumes/v", "/etc/config")];
        let c = json!({ "name": "c", "command": ["true"], "terminationMessagePath": "/tmp/done" });
        let l = launch(c, json!({}), mounts.clone());
        let p = plan(&l, SandboxView::default(), &options(true)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.mounts, mounts);
        assert_eq!(
            p.binds,
            Some(vec![
                BindSpec {
                    source: "/data/volumes/v".into(),
                    target: "/etc/config".into(),
                    read_only: true,
                },
                BindSpec {
                    source: "/data/pods/shop_web_u-1/c/termination-log".into(),
                    target: "/tmp/done".into(),
                    read_only: false,
                },
            ])
        );
        assert_eq!(
            p.host_view(Path::new("/etc/config/a/b")),
            Path::new("/data/volumes/v/a/b")
        );
        assert_eq!(
            p.host_view(Path::new("/etc/config")),
            Path::new("/data/volumes/v")
        );
        assert_eq!(p.host_view(Path::new("/etc/hosts")), Path::new("/etc/hosts"));

        let p = plan(&l, SandboxView::default(), &options(false)).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.mounts.is_empty(), "ignored without a mount namespace");
        assert_eq!(p.host_view(Path::new("/etc/config")), Path::new("/etc/config"));

        // A volume at the termination-message path wins over the file.
        let c = json!({ "name": "c", "command": ["true"], "terminationMessagePath": "/etc/config" });
        let p = planned(c, mounts, true);
        assert_eq!(p.binds.map(|b| b.len()), Some(1));
    }

    #[test]
    fn a_per_container_pids_annotation_wins_over_the_pods() {
        let mut l = launch(json!({ "name": "c", "command": ["true"] }), json!({}), Vec::new());
        if let Some(a) = l.pod.metadata.annotations.as_mut() {
            a.insert(format!("{PIDS_LIMIT_CONTAINER_PREFIX}c"), " 9 ".into());
        }
        let p = plan(&l, SandboxView::default(), &options(false)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.limits.pids, Some(9));
    }

    #[test]
    fn stdin_stdin_once_and_tty_are_carried_through() {
        let p = planned(json!({ "name": "c", "command": ["sh"] }), Vec::new(), false);
        assert_eq!(p.stdio, StdioPlan::default());
        let p = planned(
            json!({ "name": "c", "command": ["sh"], "stdin": true, "stdinOnce": true, "tty": true }),
            Vec::new(),
            false,
        );
        assert_eq!(
            p.stdio,
            StdioPlan {
                stdin: true,
                stdin_once: true,
                tty: true
            }
        );
    }

    #[test]
    fn args_without_a_command_are_the_command_line() {
        let p = planned(
            json!({ "name": "c", "args": ["sleep", "$(NAP)"],
                                "env": [{ "name": "NAP", "value": "100" }] }),
            Vec::new(),
            false,
        );
        assert_eq!(p.argv, ["sleep", "100"]);
        assert_eq!(p.program(), "sleep");
    }

    #[test]
    fn no_command_and_bad_env_are_start_errors_with_their_messages() {
        let l = launch(json!({ "name": "c" }), json!({}), Vec::new());
        let e = plan(&l, SandboxView::default(), &options(false)).err();
        assert_eq!(e.map(|e| e.to_string()).as_deref(), Some("no command given"));
        let l = launch(
            json!({ "name": "c", "command": ["true"],
                    "env": [{ "name": "X", "valueFrom": { "fieldRef": { "fieldPath": "spec.nope" } } }] }),
            json!({}),
            Vec::new(),
        );
        let e = plan(&l, SandboxView::default(), &options(false)).err();
        assert!(matches!(e, Some(StartError::Env(_))), "{e:?}");
    }

    #[test]
    fn the_working_directory_and_executable_are_checked_in_the_containers_view() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        let mounts = vec![volume(&dir.path().display().to_string(), "/opt/v")];
        let c = json!({ "name": "c", "command": ["tool"], "workingDir": "/opt/v",
                        "env": [{ "name": "PATH", "value": "/opt/v/bin" }] });
        let p = planned(c, mounts.clone(), true);
        let e = p.resolve_executable().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("exec: \"tool\": executable file not found in $PATH"),
            "a PATH search skips files that are not executable"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let exe = p.resolve_executable().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(exe, Path::new("/opt/v/bin/tool"), "the path the container sees");

        let c = json!({ "name": "c", "command": ["tool"], "workingDir": "/opt/v/missing" });
        let p = planned(c, mounts, true);
        let e = p.resolve_executable().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("chdir to cwd (\"/opt/v/missing\") set in config.json failed: no such file or directory")
        );
    }
}
