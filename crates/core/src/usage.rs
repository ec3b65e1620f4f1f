//! Resource usage as `kubectl top` shows it: the seam between what can read a container's or
//! the node's counters (the process runtime, from cgroup files) and the metrics API, which
//! turns two samples into a CPU rate and reports the working set.

/// One sample of a container's or the node's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSample {
    /// Cumulative CPU time used, in nanoseconds (cgroup v2 `cpu.stat` `usage_usec` × 1000).
    pub cpu_ns: u64,
    /// Working-set memory in bytes: usage less inactive file pages, floored at 0.
    pub working_set_bytes: u64,
}

/// Where usage counters are read.
pub trait UsageSource: Send + Sync {
    /// The counters of running container `container_id` (its status `containerID` without the
    /// scheme), or `None` when it does not run here or has no counters.
    fn container_usage(&self, container_id: &str) -> Option<UsageSample>;

    /// The whole node's counters.
    fn node_usage(&self) -> Option<UsageSample>;

    /// The IDs of every container running here, where the source knows them: the metrics
    /// scraper then samples this node without reading its pods from the API. `None` (the
    /// default): the scraper takes the IDs from the pods' statuses.
    fn running_containers(&self) -> Option<Vec<String>> {
        None
    }
}
