//! The live pod table the node shows on a terminal, like `kubectl get pods -w`.

use podvisor_apiserver::strategy::pod::printer::pod_row;
use podvisor_core::corev1::Pod;
use podvisor_lifecycle::Time;

/// Renders `pods` as an aligned table with the columns NAME READY STATUS RESTARTS AGE IP
/// (and NAMESPACE first when the pods are not all in one namespace).
pub fn render(pods: &[Pod], now: Time) -> String {
    let namespaces: std::collections::BTreeSet<&str> = pods
        .iter()
        .map(|p| p.metadata.namespace.as_deref().unwrap_or("default"))
        .collect();
    let with_ns = namespaces.len() > 1;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"];
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    rows.push(header.into_iter().map(str::to_owned).collect());
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    for pod in sorted {
        let row = pod_row(pod, now);
        let mut cells = vec![row.name, row.ready, row.status, row.restarts, row.age, row.ip];
        if with_ns {
            cells.insert(
                0,
                pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            );
        }
        rows.push(cells);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
