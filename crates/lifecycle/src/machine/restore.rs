//! A node restart: the machine takes over restart counts, start time, last terminations,
//! conditions and a terminal phase from the status the previous node reported.

use super::*;

impl PodMachine {
    /// Carries restart counts, start time, last terminations and a terminal phase over from an
    /// existing status (a node restart).
    pub(super) fn restore_from_status(&mut self) {
        let Some(st) = self.pod.status.clone() else { return };
        // The kubelet's own conditions as last reported: their lastTransitionTimes are kept
        // where their status does not change (rule 14.2).
        self.status.conditions.clone_from(&st.conditions);
        if let Some(t) = &st.start_time {
            self.start_time = Time::from_k8s(t);
        }
        self.reason = st.reason.clone();
        self.message = st.message.clone();
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        let all = st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten())
            .chain(st.ephemeral_container_statuses.iter().flatten());
        for cs in all {
            let Some(i) = self.index_of(&cs.name) else {
                continue;
            };
            let rec = &mut self.records[i];
            rec.restart_count = cs.restart_count.max(rec.restart_count);
            let state = cs.state.as_ref();
            let ran = cs.restart_count > 0
                || cs.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
                || state.is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            rec.has_history |= ran;
            let last = state
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
            if let Some(t) = last {
                rec.last_termination = Some(status::terminated_from_api(t));
            }
            if state.is_some_and(|s| s.running.is_some()) {
                // Rule 11.9: it was running and no runtime record of it survived.
                rec.last_termination = Some(Terminated {
                    id: None,
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some(
                        "The container could not be located when the pod was deleted.  The container used to be Running"
                            .into(),
                    ),
                    started_at: None,
                    finished_at: self.now,
                });
                if deleting {
                    rec.count_preincremented = false;
                } else {
                    rec.restart_count = rec.restart_count.saturating_add(1);
                    rec.count_preincremented = true;
                }
            }
        }
        if self.records.iter().any(|r| r.has_history) {
            // The old sandbox is gone with the old node process (rule 6.2).
            self.sandbox_attempts = 1;
        }
        match st.phase.as_deref() {
            Some("Succeeded") => self.terminal_phase = Some(Phase::Succeeded),
            Some("Failed") => self.terminal_phase = Some(Phase::Failed),
            _ => {}
        }
        if self.terminal_phase.is_some() {
            self.finished = true;
            for w in self
                .records
                .iter_mut()
                .flat_map(|r| r.probes.iter_mut().flatten())
            {
                w.stopped = true;
            }
        }
    }
}
