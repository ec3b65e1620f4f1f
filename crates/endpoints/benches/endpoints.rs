//! Micro-benchmarks of the endpoint computation: a Service selecting 110 pods (every third not
//! ready) among 330, to Endpoints and to EndpointSlices. Run with
//! `cargo bench -p podvisor-endpoints` (or through `cargo xtask bench`).
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use podvisor_core::corev1::{Pod, Service};
use podvisor_endpoints::{desired_endpoints, desired_slices};
use serde_json::json;

fn pods() -> Vec<Pod> {
    (0..330)
        .map(|i| {
            let app = if i % 3 == 0 { "web" } else { "other" };
            let ready = if i % 9 == 0 { "False" } else { "True" };
            serde_json::from_value(json!({
                "metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("u{i}"),
                             "labels": {"app": app}},
                "spec": {"nodeName": "node", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": format!("10.88.{}.{}", i / 250, i % 250 + 1),
                           "conditions": [{"type": "Ready", "status": ready}]}
            }))
            .expect("a bench pod decodes")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .expect("the bench service decodes");
    let pods = pods();
    c.bench_function("desired_endpoints: 110 of 330 pods", |b| {
        b.iter(|| black_box(desired_endpoints(&service, &pods)));
    });
    c.bench_function("desired_slices: 110 of 330 pods", |b| {
        b.iter(|| black_box(desired_slices(&service, &pods)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
