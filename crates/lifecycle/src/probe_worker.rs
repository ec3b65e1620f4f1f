//! One probe worker per (container, probe kind): timing, thresholds and the cached result.

use podvisor_core::{ContainerId, ProbeKind, ProbeOutcome, ProbeResult};

use crate::Time;
use crate::command::{Event, EventType};
use crate::spec::ProbeParams;

/// The cached, three-valued result of a probe (rule 3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeValue {
    /// Passed `successThreshold` times in a row.
    Success,
    /// Failed `failureThreshold` times in a row (or seeded so).
    Failure,
    /// Not known yet (startup probes start here).
    Unknown,
}

impl ProbeValue {
    /// The value a new container instance starts with (rule 3.2).
    pub fn seed(kind: ProbeKind) -> ProbeValue {
        match kind {
            ProbeKind::Readiness => ProbeValue::Failure,
            ProbeKind::Liveness => ProbeValue::Success,
            ProbeKind::Startup => ProbeValue::Unknown,
        }
    }
}

/// The state of one probe worker (the kubelet's `prober/worker.go`, as data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProbeWorker {
    pub(crate) kind: ProbeKind,
    pub(crate) params: ProbeParams,
    /// The ticker's anchor: when the worker started (rule 3.4).
    pub(crate) anchor: Time,
    /// The next periodic attempt.
    pub(crate) next_due: Time,
    /// A manual trigger is pending (rule 3.14).
    pub(crate) triggered: bool,
    /// The instance a probe is running against, if one is.
    pub(crate) in_flight: Option<ContainerId>,
    /// The instance the cached result belongs to.
    pub(crate) instance: Option<ContainerId>,
    /// The cached result for `instance`.
    pub(crate) value: ProbeValue,
    /// The last raw result and how many times in a row it came (not reset on restart, 3.5.4).
    last: Option<bool>,
    run: u32,
    pub(crate) on_hold: bool,
    /// The worker has exited (rule 3.5 steps 2, 6, 7).
    pub(crate) stopped: bool,
}

/// What applying a result changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The cached value changed to this.
    pub(crate) recorded: Option<ProbeValue>,
}

impl ProbeWorker {
    pub(crate) fn new(kind: ProbeKind, params: ProbeParams, now: Time) -> ProbeWorker {
        ProbeWorker {
            kind,
            params,
            anchor: now,
            next_due: now,
            triggered: false,
            in_flight: None,
            instance: None,
            value: ProbeValue::seed(kind),
            last: None,
            run: 0,
            on_hold: false,
            stopped: false,
        }
    }

    /// A new container instance appeared: seed its result and clear the hold (rule 3.5.4).
    pub(crate) fn new_instance(&mut self, id: &ContainerId) {
        self.instance = Some(id.clone());
        self.value = ProbeValue::seed(self.kind);
        self.on_hold = false;
        self.in_flight = None;
    }

    /// Whether an attempt is due at `now`.
    pub(crate) fn due(&self, now: Time) -> bool {
        !self.stopped && self.in_flight.is_none() && (self.triggered || now >= self.next_due)
    }

    /// Consumes the due tick (or trigger) and moves the ticker past `now`. A manual trigger
    /// resets the ticker to a full period from now (rule 3.4).
    pub(crate) fn consume_tick(&mut self, now: Time) {
        let period_ms = i64::try_from(self.params.period.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        if self.triggered {
            self.triggered = false;
            self.anchor = now;
            self.next_due = now + self.params.period;
        } else if now >= self.next_due {
            let elapsed = now.as_millis() - self.anchor.as_millis();
            let k = elapsed.div_euclid(period_ms) + 1;
            self.next_due = Time::from_millis(self.anchor.as_millis() + k * period_ms);
        }
    }

    /// Applies one attempt's result (rules 3.5 steps 10-13 and 3.7), returning the events the
    /// kubelet would emit.
    pub(crate) fn apply(
        &mut self,
        result: &ProbeResult,
        field_path: &str,
        events: &mut Vec<Event>,
    ) -> Applied {
        let event = |type_, reason, message: String| Event {
            type_,
            reason,
            message,
            field_path: Some(field_path.to_owned()),
        };
        if let Some(err) = &result.error {
            events.push(event(
                EventType::Warning,
                "Unhealthy",
                format!("{} probe errored and resulted in unknown state: {err}", self.kind),
            ));
            return Applied { recorded: None };
        }
        let success = match result.outcome {
            ProbeOutcome::Success => true,
            ProbeOutcome::Warning => {
                events.push(event(
                    EventType::Warning,
                    "ProbeWarning",
                    format!("{} probe warning: {}", self.kind, result.output),
                ));
                true
            }
            ProbeOutcome::Failure | ProbeOutcome::Unknown => {
                events.push(event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {}", self.kind, result.output),
                ));
                false
            }
        };
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.params.success_threshold
        } else {
            self.params.failure_threshold
        };
        if self.run < threshold {
            return Applied { recorded: None };
        }
        let value = if success {
            ProbeValue::Success
        } else {
            ProbeValue::Failure
        };
        let changed = self.value != value;
        self.value = value;
        if (self.kind == ProbeKind::Liveness && !success) || self.kind == ProbeKind::Startup {
            self.on_hold = true;
            self.run = 0;
        }
        Applied {
            recorded: changed.then_some(value),
        }
    }
}
