//! The pod `Table`'s columns, as kube-apiserver's pod printer declares them; the cells come
//! from [`podvisor_lifecycle::printer`], whose items are re-exported here.

pub use podvisor_lifecycle::printer::*;

use crate::table::Column;

const POD_COLUMNS: [Column; 9] = [
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: "The name of the pod, unique within its namespace.",
        priority: 0,
    },
    Column {
        name: "Ready",
        type_: "string",
        format: "",
        description: "The aggregate readiness state of this pod for accepting traffic.",
        priority: 0,
    },
    Column {
        name: "Status",
        type_: "string",
        format: "",
        description: "The aggregate status of the containers in this pod.",
        priority: 0,
    },
    Column {
        name: "Restarts",
        type_: "string",
        format: "",
        description: "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        priority: 0,
    },
    Column {
        name: "Age",
        type_: "string",
        format: "",
        description: "How long ago the server created the pod (metadata.creationTimestamp).",
        priority: 0,
    },
    Column {
        name: "IP",
        type_: "string",
        format: "",
        description: "The pod's primary IP address (status.podIPs); empty until one is allocated.",
        priority: 1,
    },
    Column {
        name: "Node",
        type_: "string",
        format: "",
        description: "The node the pod is bound to (spec.nodeName).",
        priority: 1,
    },
    Column {
        name: "Nominated Node",
        type_: "string",
        format: "",
        description: "The node the scheduler nominated for the pod while preempting others (status.nominatedNodeName).",
        priority: 1,
    },
    Column {
        name: "Readiness Gates",
        type_: "string",
        format: "",
        description: "Extra pod conditions that must be True before the pod counts as ready (spec.readinessGates).",
        priority: 1,
    },
];

/// The pod `Table` columns, in the order of the cells of a [`PodRow`].
pub fn pod_columns() -> &'static [Column] {
    &POD_COLUMNS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_columns_match_kube_apiserver() {
        let cols: Vec<_> = pod_columns()
            .iter()
            .map(|c| (c.name, c.type_, c.format, c.priority))
            .collect();
        assert_eq!(
            cols,
            [
                ("Name", "string", "name", 0),
                ("Ready", "string", "", 0),
                ("Status", "string", "", 0),
                ("Restarts", "string", "", 0),
                ("Age", "string", "", 0),
                ("IP", "string", "", 1),
                ("Node", "string", "", 1),
                ("Nominated Node", "string", "", 1),
                ("Readiness Gates", "string", "", 1),
            ]
        );
        assert!(pod_columns().iter().all(|c| !c.description.is_empty()));
    }
}
