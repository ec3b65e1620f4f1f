//! What the node shows its user: a live table on a terminal, `kubectl get pods -w`-style lines
//! otherwise, and the pods' events.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;

use crate::{PodSink, PodView};
use podvisor_core::ProbeOutcome;
use podvisor_core::corev1::Pod;
use podvisor_lifecycle::printer::pod_row;
use podvisor_lifecycle::{Event, Time};

use crate::table;

/// How many recent events the terminal view keeps.
const RECENT_EVENTS: usize = 12;

/// Where the node writes what happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Redraw a table of every pod, with the latest events under it (a terminal).
    Table,
    /// One line per change of a pod's row and one per event (logs, pipes, tests).
    Lines,
    /// Nothing.
    Quiet,
}

/// The node's [`PodSink`]: keeps recent events and prints changes.
pub struct NodeOutput {
    mode: OutputMode,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: VecDeque<String>,
    rows: BTreeMap<String, String>,
}

impl NodeOutput {
    /// An output in `mode`.
    pub fn new(mode: OutputMode) -> NodeOutput {
        NodeOutput {
            mode,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Redraws the table (in [`OutputMode::Table`]), with the last probe results of the pods
    /// that are not ready, so "why is my pod not ready" is answered on screen. `views` is
    /// asked for the pods only when there is a table to draw.
    pub fn redraw(&self, views: impl FnOnce() -> Vec<PodView>, now: Time) {
        if self.mode != OutputMode::Table {
            return;
        }
        let views = views();
        let views = views.as_slice();
        let pods: Vec<Pod> = views.iter().map(|v| v.pod.clone()).collect();
        let mut screen = String::from("\x1b[H\x1b[2J");
        screen.push_str(&table::render(&pods, now));
        let why = not_ready_reasons(views, now);
        if !why.is_empty() {
            screen.push_str("\nNOT READY\n");
            for line in why {
                screen.push_str(&line);
                screen.push('\n');
            }
        }
        let state = self.lock();
        if !state.events.is_empty() {
            screen.push_str("\nEVENTS\n");
            for line in &state.events {
                screen.push_str(line);
                screen.push('\n');
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(screen.as_bytes());
        let _ = out.flush();
    }

    /// A message for the user that is not about one pod (manifest errors, shutdown).
    pub fn notice(&self, text: &str) {
        match self.mode {
            OutputMode::Quiet => {}
            OutputMode::Lines => self.line(&format!("NODE   {text}")),
            OutputMode::Table => {
                let mut state = self.lock();
                state.events.push_back(format!("Node     {text}"));
                while state.events.len() > RECENT_EVENTS {
                    state.events.pop_front();
                }
            }
        }
    }

    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// One line per failing probe of every pod that is not ready.
pub fn not_ready_reasons(views: &[PodView], now: Time) -> Vec<String> {
    let mut lines = Vec::new();
    for view in views.iter().filter(|v| !v.finished) {
        let ready = view
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            continue;
        }
        for (container, diagnostics) in &view.diagnostics {
            for (kind, record) in &diagnostics.probes {
                let passed = matches!(
                    record.outcome,
                    Some(ProbeOutcome::Success | ProbeOutcome::Warning)
                );
                if passed {
                    continue;
                }
                let verdict = match record.outcome {
                    None => "errored",
                    Some(_) => "failed",
                };
                let ago = podvisor_lifecycle::printer::human_duration(
                    now.as_millis().saturating_sub(record.at.as_millis()),
                );
                lines.push(format!(
                    "{}/{container}: {kind} probe {verdict} {ago} ago ({} ms): {}",
                    pod_name(&view.pod),
                    record.latency.as_millis(),
                    record.message.trim()
                ));
            }
        }
    }
    lines
}

/// The current wall-clock time, for the AGE and "ago" cells.
fn wall_clock() -> Time {
    crate::Clock::system().now()
}

fn pod_name(pod: &Pod) -> String {
    podvisor_core::object::PodRef::of(pod).to_string()
}

impl PodSink for NodeOutput {
    fn status(&self, view: &PodView) {
        if self.mode != OutputMode::Lines {
            return;
        }
        let now = wall_clock();
        let row = pod_row(&view.pod, now);
        let text = format!(
            "{}   {}   {}   {}   {}",
            pod_name(&view.pod),
            row.ready,
            row.status,
            row.restarts,
            row.ip
        );
        let uid = view.pod.metadata.uid.clone().unwrap_or_default();
        let changed = self.lock().rows.insert(uid, text.clone()).as_ref() != Some(&text);
        if changed {
            self.line(&format!("POD    {text}"));
        }
    }

    fn event(&self, pod: &Pod, event: &Event, _at: Time) {
        let object = match &event.field_path {
            Some(path) => format!("{} ({path})", pod_name(pod)),
            None => pod_name(pod),
        };
        let text = format!(
            "{:<7}  {:<20}  {object}: {}",
            event.type_.as_str(),
            event.reason,
            event.message
        );
        match self.mode {
            OutputMode::Lines => self.line(&format!("EVENT  {text}")),
            OutputMode::Table => {
                let mut state = self.lock();
                state.events.push_back(text);
                while state.events.len() > RECENT_EVENTS {
                    state.events.pop_front();
                }
            }
            OutputMode::Quiet => {}
        }
    }
}
