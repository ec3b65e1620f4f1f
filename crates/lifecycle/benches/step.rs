//! Micro-benchmarks of the lifecycle model: one `PodMachine::step` for the inputs a running
//! pod sees most (a probe result that changes nothing, a timer tick), and a whole pod start
//! (new machine → sandbox → container running). Run with `cargo bench -p podvisor-lifecycle`
//! (or through `cargo xtask bench`).
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use podvisor_core::corev1::Pod;
use podvisor_core::{ContainerId, ProbeKind, ProbeOutcome, ProbeResult};
use podvisor_lifecycle::{Command, Input, PodMachine, Time};

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "containers": [
            {"name": "app", "image": "host", "command": ["run"],
             "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 1},
             "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}},
            {"name": "sidecar", "image": "host", "command": ["run"]}
        ]}
    }))
    .expect("the bench pod decodes")
}

/// A machine with both containers running; returns it, the app's instance and the time.
fn running(t0: Time) -> (PodMachine, ContainerId, Time) {
    let mut m = PodMachine::new(&pod(), t0);
    let mut now = t0;
    let mut queue = vec![Input::Tick];
    let mut app = None;
    let mut n = 0;
    while let Some(input) = queue.pop() {
        for command in m.step(now, input) {
            if let Command::CreateSandbox = command {
                queue.push(Input::SandboxReady {
                    pod_ip: Some("10.88.0.2".into()),
                });
            } else if let Command::StartContainer { name, .. } = command {
                n += 1;
                let id = ContainerId(format!("{name}-{n}"));
                if name == "app" {
                    app = Some(id.clone());
                }
                queue.push(Input::ContainerStarted {
                    name,
                    id,
                    started_at: now,
                });
            }
        }
        now = now + Duration::from_millis(1);
    }
    (m, app.expect("the app started"), now)
}

fn bench(c: &mut Criterion) {
    let t0 = Time::from_secs(1_700_000_000);
    c.bench_function("step: readiness success, nothing changes", |b| {
        let (mut m, id, now) = running(t0);
        b.iter(|| {
            black_box(m.step(
                now,
                Input::ProbeResult {
                    name: "app".into(),
                    id: id.clone(),
                    kind: ProbeKind::Readiness,
                    result: ProbeResult::new(ProbeOutcome::Success, ""),
                },
            ))
        });
    });
    c.bench_function("step: tick", |b| {
        let (mut m, _, now) = running(t0);
        b.iter(|| black_box(m.step(now, Input::Tick)));
    });
    c.bench_function("pod start: new machine to both containers running", |b| {
        b.iter(|| black_box(running(t0)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
