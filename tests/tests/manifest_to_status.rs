//! Manifests as users write them, loaded, defaulted and validated by `podvisor-api`, then run
//! through the lifecycle model: what `kubectl get pods` would show at each step.

use podvisor_api::manifest::{self, FieldValidation, Object};
use podvisor_api::{defaults, validation};
use podvisor_apiserver::strategy::pod::printer::pod_row;
use podvisor_core::corev1::Pod;
use podvisor_core::{ProbeKind, ProbeOutcome};
use podvisor_test_support::Sim;

/// Loads one pod the way the API server will: parse, default, validate.
fn admit(yaml: &str) -> Pod {
    let objects = manifest::load(yaml, FieldValidation::Strict).expect("manifest loads");
    let [Object::Pod(pod)] = <[Object; 1]>::try_from(objects).expect("one object") else {
        panic!("not a pod")
    };
    let mut pod = *pod;
    defaults::default_pod(&mut pod);
    validation::validate_pod(&pod).expect("valid pod");
    pod.metadata.uid = Some("uid-1".into());
    pod.metadata.creation_timestamp =
        Some(podvisor_lifecycle::Time::from_secs(podvisor_test_support::T0).to_k8s());
    pod
}

fn columns(sim: &Sim) -> (String, String, String) {
    let row = pod_row(&sim.m.pod(), sim.now);
    (row.ready, row.status, row.restarts)
}

/// The seed article's first demonstration: init containers that wait for two Services.
#[test]
fn init_containers_block_the_app_until_they_succeed() {
    let pod = admit(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels: {app: myapp}
spec:
  containers:
  - name: myapp-container
    image: busybox
    command: ['sh', '-c', 'echo The app is running! && sleep 3600']
  initContainers:
  - name: init-myservice
    image: busybox
    command: ['sh', '-c', 'until nslookup myservice; do echo waiting; sleep 2; done']
  - name: init-mydb
    image: busybox
    command: ['sh', '-c', 'until nslookup mydb; do echo waiting; sleep 2; done']
"#,
    );
    let mut sim = Sim::new(pod);
    assert_eq!(columns(&sim), ("0/1".into(), "Init:0/2".into(), "0".into()));
    sim.advance(60.0);
    assert_eq!(columns(&sim).1, "Init:0/2", "stays while the Service is missing");
    sim.exit("init-myservice", 0);
    assert_eq!(columns(&sim).1, "Init:1/2");
    sim.exit("init-mydb", 0);
    assert_eq!(columns(&sim), ("1/1".into(), "Running".into(), "0".into()));
    assert_eq!(sim.phase(), "Running");
}

/// The seed's liveness demonstration: the port stops answering, the container is restarted.
#[test]
fn liveness_probe_restarts_a_container_whose_port_closed() {
    let pod = admit(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: liveness-http}
spec:
  containers:
  - name: web
    image: nginx
    command: [python3, -m, http.server, "80"]
    livenessProbe:
      tcpSocket: {port: 80}
      initialDelaySeconds: 1
      periodSeconds: 3
"#,
    );
    let mut sim = Sim::new(pod);
    // Defaults from the API: failureThreshold 3, timeout 1.
    for _ in 0..3 {
        sim.advance(3.0);
        assert_eq!(sim.probe("web", ProbeKind::Liveness, ProbeOutcome::Failure), 1);
    }
    assert_eq!(sim.cs("web").restart_count, 1);
    let (ready, status, restarts) = columns(&sim);
    assert_eq!((ready.as_str(), status.as_str()), ("1/1", "Running"));
    assert!(restarts.starts_with("1 ("), "{restarts}");
    assert!(
        sim.event_lines()
            .contains(&"Killing: Container web failed liveness probe, will be restarted".into()),
        "{:?}",
        sim.event_lines()
    );
}

/// The seed's readiness demonstration: READY follows the probe, without restarts.
#[test]
fn readiness_probe_gates_ready_without_restarting() {
    let pod = admit(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: readiness-http, labels: {app: web}}
spec:
  containers:
  - name: web
    image: nginx
    command: [python3, -m, http.server, "80"]
    readinessProbe:
      httpGet: {path: /test.html, port: 80}
      periodSeconds: 1
"#,
    );
    let mut sim = Sim::new(pod);
    assert_eq!(columns(&sim).0, "0/1");
    sim.probe("web", ProbeKind::Readiness, ProbeOutcome::Failure);
    sim.advance(1.0);
    sim.probe("web", ProbeKind::Readiness, ProbeOutcome::Success);
    assert_eq!(columns(&sim), ("1/1".into(), "Running".into(), "0".into()));
    for _ in 0..3 {
        sim.advance(1.0);
        sim.probe("web", ProbeKind::Readiness, ProbeOutcome::Failure);
    }
    assert_eq!(columns(&sim), ("0/1".into(), "Running".into(), "0".into()));
    assert_eq!(sim.cond("Ready"), "False/ContainersNotReady");
}

#[test]
fn a_manifest_with_several_mistakes_reports_all_of_them() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: broken}
spec:
  restartPolicy: Sometimes
  containers:
  - name: App
    image: busybox
    livenessProbe:
      exec: {command: [check]}
      periodSeconds: -1
"#;
    // A type mistake is reported with the field it is in.
    let typo = text.replace("[check]", "[true]");
    let err = manifest::load(&typo, FieldValidation::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.containers[0].livenessProbe.exec.command[0]"),
        "{err}"
    );

    let [Object::Pod(pod)] =
        <[Object; 1]>::try_from(manifest::load(text, FieldValidation::Strict).unwrap()).unwrap()
    else {
        panic!("not a pod")
    };
    let mut pod = *pod;
    defaults::default_pod(&mut pod);
    let errors = validation::validate_pod(&pod).unwrap_err();
    let messages = errors.messages();
    for expected in [
        "spec.restartPolicy: Unsupported value: \"Sometimes\"",
        "spec.containers[0].name: Invalid value: \"App\"",
        "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
        "spec.containers[0].command: Required value",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(expected)),
            "missing {expected:?} in {messages:#?}"
        );
    }
}

#[test]
fn a_multi_document_file_with_a_list_loads_every_object() {
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: myservice}
  spec: {ports: [{port: 80, targetPort: 9376}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
  spec: {containers: [{name: a, image: x, command: [sleep, "1"]}]}
---
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
"#;
    let kinds: Vec<String> = manifest::load(text, FieldValidation::Strict)
        .unwrap()
        .iter()
        .map(|o| o.kind().to_owned())
        .collect();
    assert_eq!(kinds, ["Service", "Pod", "Namespace"]);
}
