//! A simulated node around one `PodMachine`: it answers commands the way a well-behaved
//! runtime would (configurable), so tests script only what matters to them.
#![allow(missing_docs)] // Test scaffolding: names say what they do.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use podvisor_core::corev1::{ContainerStatus, Pod, PodCondition};
use podvisor_core::{ContainerId, ExitStatus, HookKind, HookResult, ProbeKind, ProbeOutcome, ProbeResult};
use podvisor_lifecycle::printer;
use podvisor_lifecycle::{Adopted, Command, Event, Input, PodMachine, Time};

/// The simulated epoch every test starts at.
pub const T0: i64 = 1_700_000_000;

/// A pod from JSON, with name/namespace/uid filled in when missing.
pub fn pod(mut v: serde_json::Value) -> Pod {
    let meta = v
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    let meta = meta.as_object_mut().unwrap();
    meta.entry("name").or_insert("p".into());
    meta.entry("namespace").or_insert("default".into());
    meta.entry("uid").or_insert("uid-1".into());
    meta.entry("creationTimestamp")
        .or_insert("2023-11-14T22:13:20Z".into());
    serde_json::from_value(v).unwrap()
}

/// A container JSON with a command.
pub fn c(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": "img", "command": ["run", name]})
}

/// How the simulated runtime answers by itself.
#[derive(Clone, Debug)]
pub struct Auto {
    /// Answer CreateSandbox with SandboxReady.
    pub sandbox: bool,
    /// Answer StartContainer with ContainerStarted.
    pub start: bool,
    /// Answer StopContainer with this exit (None: the test delivers exits itself).
    pub stop: Option<ExitStatus>,
    /// Answer RunHook (with `hook_result`).
    pub hooks: bool,
    /// What auto-answered hooks return.
    pub hook_result: HookResult,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            sandbox: true,
            start: true,
            stop: Some(ExitStatus::Signaled(15)),
            hooks: true,
            hook_result: HookResult::Succeeded,
        }
    }
}

pub struct Sim {
    pub m: PodMachine,
    pub now: Time,
    pub auto: Auto,
    /// Every command ever returned, with the time it was returned at.
    pub log: Vec<(Time, Command)>,
    /// Running instances by container name.
    pub running: BTreeMap<String, ContainerId>,
    /// The newest instance of each container, running or not.
    pub last_id: BTreeMap<String, ContainerId>,
    /// Probes asked for and not answered yet.
    pub probes: Vec<(String, ContainerId, ProbeKind)>,
    /// Hooks asked for and not answered yet.
    pub hooks: Vec<(String, ContainerId, HookKind)>,
    /// Stops asked for and not answered yet (when `auto.stop` is None).
    pub stops: Vec<(String, ContainerId, Duration)>,
    /// Starts asked for and not answered yet (when `auto.start` is false).
    pub starts: Vec<String>,
    /// Containers whose next start fails (spawn error).
    pub fail_next_start: Vec<String>,
    /// Containers whose next start finds a ConfigMap or Secret reference missing.
    pub config_error_next_start: Vec<String>,
    /// Containers whose start attempt ended in a create failure, once per attempt (the
    /// kubelet retries those whatever the restart policy: the container never ran).
    pub create_failed: Vec<String>,
    pub sandbox_requests: usize,
    pub finished: bool,
    next_id: u32,
}

impl Sim {
    pub fn new(pod: Pod) -> Sim {
        Sim::with(pod, Auto::default())
    }

    pub fn with(pod: Pod, auto: Auto) -> Sim {
        let now = Time::from_secs(T0);
        let mut sim = Sim {
            m: PodMachine::new(&pod, now),
            now,
            auto,
            log: Vec::new(),
            running: BTreeMap::new(),
            last_id: BTreeMap::new(),
            probes: Vec::new(),
            hooks: Vec::new(),
            stops: Vec::new(),
            starts: Vec::new(),
            fail_next_start: Vec::new(),
            config_error_next_start: Vec::new(),
            create_failed: Vec::new(),
            sandbox_requests: 0,
            finished: false,
            next_id: 0,
        };
        sim.input(Input::Tick);
        sim
    }

    /// A node that restarted at `now` and found `pod`'s sandbox (with `pod_ip`) and the
    /// `adopted` instances still there; `pod.status` is what the previous node reported. The
    /// machine is [`PodMachine::adopt`]ed and given its first `Tick`. New instances are numbered
    /// from 1000, apart from any a test made up.
    pub fn adopt(pod: Pod, now: Time, pod_ip: Option<String>, adopted: &[Adopted], auto: Auto) -> Sim {
        let mut sim = Sim {
            m: PodMachine::adopt(&pod, now, pod_ip, adopted),
            now,
            auto,
            log: Vec::new(),
            running: BTreeMap::new(),
            last_id: BTreeMap::new(),
            probes: Vec::new(),
            hooks: Vec::new(),
            stops: Vec::new(),
            starts: Vec::new(),
            fail_next_start: Vec::new(),
            config_error_next_start: Vec::new(),
            create_failed: Vec::new(),
            sandbox_requests: 0,
            finished: false,
            next_id: 1000,
        };
        let mut newest: BTreeMap<&str, &Adopted> = BTreeMap::new();
        for a in adopted {
            let entry = newest.entry(a.name.as_str()).or_insert(a);
            if a.restart_count > entry.restart_count {
                *entry = a;
            }
        }
        for (name, a) in newest {
            sim.last_id.insert(name.to_owned(), a.id.clone());
            if a.ended.is_none() {
                sim.running.insert(name.to_owned(), a.id.clone());
            }
        }
        sim.input(Input::Tick);
        sim
    }

    /// Feeds one input and answers the resulting commands until nothing more happens.
    pub fn input(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let commands = self.m.step(self.now, input);
            for cmd in commands {
                self.log.push((self.now, cmd.clone()));
                match cmd {
                    Command::CreateSandbox => {
                        self.sandbox_requests += 1;
                        if self.auto.sandbox {
                            queue.push_back(Input::SandboxReady {
                                pod_ip: Some("10.88.0.7".into()),
                            });
                        }
                    }
                    Command::StartContainer { name, .. } => {
                        if let Some(pos) = self.fail_next_start.iter().position(|n| *n == name) {
                            self.fail_next_start.remove(pos);
                            queue.push_back(Input::ContainerStartFailed {
                                name,
                                message: "exec format error".into(),
                            });
                        } else if let Some(pos) = self.config_error_next_start.iter().position(|n| *n == name)
                        {
                            self.config_error_next_start.remove(pos);
                            self.create_failed.push(name.clone());
                            queue.push_back(Input::ContainerCreateFailed {
                                name,
                                reason: "CreateContainerConfigError",
                                message: "configmap \"settings\" not found".into(),
                            });
                        } else if self.auto.start {
                            queue.push_back(self.started(&name));
                        } else {
                            self.starts.push(name);
                        }
                    }
                    Command::RunHook { name, id, hook } => {
                        if self.auto.hooks {
                            let result = self.auto.hook_result.clone();
                            queue.push_back(Input::HookResult {
                                name,
                                id,
                                hook,
                                result,
                            });
                        } else {
                            self.hooks.push((name, id, hook));
                        }
                    }
                    Command::RunProbe { name, id, kind, .. } => self.probes.push((name, id, kind)),
                    Command::StopContainer { name, id, grace } => match self.auto.stop {
                        Some(status) if self.running.get(&name) == Some(&id) => {
                            self.running.remove(&name);
                            queue.push_back(Input::ContainerExited {
                                name,
                                id,
                                status,
                                message: None,
                            });
                        }
                        _ => self.stops.push((name, id, grace)),
                    },
                    Command::PodFinished => self.finished = true,
                    Command::TeardownSandbox | Command::Event(_) | Command::WakeAt(_) => {}
                }
            }
        }
    }

    /// The `ContainerStarted` input for a new instance of `name`.
    pub fn started(&mut self, name: &str) -> Input {
        self.started_at(name, self.now)
    }

    /// The `ContainerStarted` input for a new instance of `name` whose process started at
    /// `started_at`.
    fn started_at(&mut self, name: &str, started_at: Time) -> Input {
        self.next_id += 1;
        let id = ContainerId(format!("{name}-{}", self.next_id));
        self.running.insert(name.to_owned(), id.clone());
        self.last_id.insert(name.to_owned(), id.clone());
        Input::ContainerStarted {
            name: name.to_owned(),
            id,
            started_at,
        }
    }

    /// Answers a start asked for earlier (with `auto.start` off).
    pub fn answer_start(&mut self, name: &str) {
        self.answer_start_at(name, self.now);
    }

    /// Answers a start asked for earlier: the runtime says the process started at `started_at`.
    pub fn answer_start_at(&mut self, name: &str, started_at: Time) {
        let pos = self
            .starts
            .iter()
            .position(|n| n == name)
            .expect("no pending start");
        self.starts.remove(pos);
        let input = self.started_at(name, started_at);
        self.input(input);
    }

    /// Moves time forward to `now + secs`, delivering every wake-up on the way.
    pub fn advance(&mut self, secs: f64) {
        let target = self.now + Duration::from_secs_f64(secs);
        while let Some(wake) = self.m.next_wakeup() {
            if wake > target {
                break;
            }
            self.now = self.now.max(wake);
            self.input(Input::Tick);
            if self.m.next_wakeup() == Some(wake) && wake <= self.now {
                break;
            }
        }
        self.now = target;
        self.input(Input::Tick);
    }

    /// The running container exits with `code`.
    pub fn exit(&mut self, name: &str, code: i32) {
        self.exit_with(name, ExitStatus::Exited(code));
    }

    pub fn exit_with(&mut self, name: &str, status: ExitStatus) {
        let id = self.running.remove(name).expect("container not running");
        self.input(Input::ContainerExited {
            name: name.to_owned(),
            id,
            status,
            message: None,
        });
    }

    /// Answers every pending probe of `name`/`kind` with `outcome`; returns how many.
    pub fn probe(&mut self, name: &str, kind: ProbeKind, outcome: ProbeOutcome) -> usize {
        self.probe_result(name, kind, ProbeResult::new(outcome, "out"))
    }

    pub fn probe_result(&mut self, name: &str, kind: ProbeKind, result: ProbeResult) -> usize {
        let pending: Vec<_> = self
            .probes
            .iter()
            .filter(|(n, _, k)| n == name && *k == kind)
            .cloned()
            .collect();
        self.probes.retain(|(n, _, k)| !(n == name && *k == kind));
        for (name, id, kind) in &pending {
            self.input(Input::ProbeResult {
                name: name.clone(),
                id: id.clone(),
                kind: *kind,
                result: result.clone(),
            });
        }
        pending.len()
    }

    pub fn has_probe(&self, name: &str, kind: ProbeKind) -> bool {
        self.probes.iter().any(|(n, _, k)| n == name && *k == kind)
    }

    /// Answers the pending hook of `name`.
    pub fn hook(&mut self, name: &str, hook: HookKind, result: HookResult) {
        let pos = self
            .hooks
            .iter()
            .position(|(n, _, h)| n == name && *h == hook)
            .expect("no pending hook");
        let (name, id, hook) = self.hooks.remove(pos);
        self.input(Input::HookResult {
            name,
            id,
            hook,
            result,
        });
    }

    pub fn delete(&mut self, grace: Option<i64>) {
        self.input(Input::DeleteRequested {
            grace_period_seconds: grace,
        });
    }

    // --- reading the results ---

    pub fn phase(&self) -> String {
        self.m.status().phase.clone().unwrap_or_default()
    }

    pub fn cs(&self, name: &str) -> ContainerStatus {
        let st = self.m.status();
        st.container_statuses
            .iter()
            .flatten()
            .chain(st.init_container_statuses.iter().flatten())
            .chain(st.ephemeral_container_statuses.iter().flatten())
            .find(|cs| cs.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no status for {name}"))
    }

    /// `running`, `waiting:<reason>` or `terminated:<reason>:<code>`.
    pub fn state(&self, name: &str) -> String {
        let st = self.cs(name).state.unwrap_or_default();
        if st.running.is_some() {
            "running".into()
        } else if let Some(w) = st.waiting {
            format!("waiting:{}", w.reason.unwrap_or_default())
        } else if let Some(t) = st.terminated {
            format!("terminated:{}:{}", t.reason.unwrap_or_default(), t.exit_code)
        } else {
            "none".into()
        }
    }

    pub fn condition(&self, type_: &str) -> PodCondition {
        self.m
            .status()
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .cloned()
            .unwrap_or_else(|| panic!("no condition {type_}"))
    }

    /// `True`/`False` plus `/reason` if any.
    pub fn cond(&self, type_: &str) -> String {
        let c = self.condition(type_);
        match c.reason {
            Some(r) => format!("{}/{r}", c.status),
            None => c.status,
        }
    }

    /// kubectl's STATUS column.
    pub fn kubectl_status(&self) -> String {
        printer::pod_row(&self.m.pod(), self.now).status
    }

    /// kubectl's READY column.
    pub fn kubectl_ready(&self) -> String {
        printer::pod_row(&self.m.pod(), self.now).ready
    }

    pub fn events(&self) -> Vec<Event> {
        self.log
            .iter()
            .filter_map(|(_, c)| match c {
                Command::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// `reason: message` of every event.
    pub fn event_lines(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| format!("{}: {}", e.reason, e.message))
            .collect()
    }

    pub fn starts_of(&self, name: &str) -> Vec<Time> {
        self.log
            .iter()
            .filter_map(|(t, c)| {
                matches!(c, Command::StartContainer { name: n, .. } if n == name).then_some(*t)
            })
            .collect()
    }

    pub fn stop_graces(&self, name: &str) -> Vec<Duration> {
        self.log
            .iter()
            .filter_map(|(_, c)| match c {
                Command::StopContainer { name: n, grace, .. } if n == name => Some(*grace),
                _ => None,
            })
            .collect()
    }

    /// Seconds since the test's start.
    pub fn secs(&self, t: Time) -> i64 {
        t.as_secs() - T0
    }
}
