//! The seed article's Service demonstrations through the real `kubectl` against an in-process
//! node: init containers waiting for `myservice` and `mydb` to resolve through cluster DNS, and
//! readiness deciding which pods get a Service's traffic through its ClusterIP.
//!
//! Needs root (pod network namespaces, cluster DNS on the bridge, nftables) and kubectl: the
//! tests are `#[ignore = "needs root"]`, run by `cargo xtask test` as root.

mod support;

use std::time::Duration;

use support::{RunningNode, require_kubectl, require_nft, require_root};

const INIT_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: myapp-pod, labels: {app: myapp}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: myapp-container, image: host, command: [sh, -c, 'echo The app is running! && sleep 3600']}
  initContainers:
  - {name: init-myservice, image: host, command: [sh, -c, 'until getent hosts myservice; do echo waiting for myservice; sleep 1; done']}
  - {name: init-mydb, image: host, command: [sh, -c, 'until getent hosts mydb; do echo waiting for mydb; sleep 1; done']}
"#;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: myservice}
spec: {ports: [{protocol: TCP, port: 80, targetPort: 9376}]}
---
apiVersion: v1
kind: Service
metadata: {name: mydb}
spec: {ports: [{protocol: TCP, port: 80, targetPort: 9377}]}
"#;

const READINESS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: host
    command: [sh, -c, 'mkdir -p /tmp/WEBROOT && cd /tmp/WEBROOT && exec python3 -m http.server 8080']
    readinessProbe:
      httpGet: {path: /test.html, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: host
    command:
    - python3
    - -c
    - |
      import time, urllib.request
      while True:
          try:
              with urllib.request.urlopen("http://web/test.html", timeout=2) as r:
                  print("status", r.status, flush=True)
          except Exception as e:
              print("error", e, flush=True)
          time.sleep(0.5)
"#;

/// The demos need root (pod network namespaces), kubectl and the nftables datapath.
fn require_all() {
    require_root();
    require_kubectl();
    require_nft();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn init_containers_wait_until_the_services_resolve() {
    require_all();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.99.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start_with_own_services(data.path(), &cidr, "init").await;
    let pod = data.path().join("pod.yaml");
    std::fs::write(&pod, INIT_POD).unwrap();
    node.ok(&["apply", "-f", pod.to_str().unwrap()]);
    node.until(&["get", "pod", "myapp-pod"], 60, |t| t.contains("Init:0/2"))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = node.ok(&["get", "pod", "myapp-pod"]);
    assert!(
        still.contains("Init:0/2"),
        "waits while the Services are missing: {still}"
    );
    let logs = node.ok(&["logs", "myapp-pod", "-c", "init-myservice"]);
    assert!(logs.contains("waiting for myservice"), "{logs}");
    let services = data.path().join("services.yaml");
    std::fs::write(&services, SERVICES).unwrap();
    node.ok(&["apply", "-f", services.to_str().unwrap()]);
    node.until(&["get", "pod", "myapp-pod"], 60, |t| {
        t.contains("Running") && t.contains("1/1")
    })
    .await;
    node.ok(&["delete", "pod", "myapp-pod", "--wait=false"]);
    node.stop().await;
}

/// One HTTP GET from this process (the node) to `addr`: the status line, or why not.
fn get(addr: &str) -> String {
    let script = format!(
        "import urllib.request\ntry:\n  print(urllib.request.urlopen('http://{addr}/test.html', timeout=3).status)\nexcept Exception as e:\n  print('error', e)"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn readiness_decides_endpoints_and_service_traffic() {
    require_all();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.100.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start_with_own_services(data.path(), &cidr, "ready").await;
    let root = format!("podvisor-web-{}", std::process::id());
    let manifest = data.path().join("web.yaml");
    std::fs::write(&manifest, READINESS.replace("WEBROOT", &root)).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    node.until(&["get", "pod", "web"], 60, |t| {
        t.contains("0/1") && t.contains("Running")
    })
    .await;
    let ip = node.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let service = format!("{}:80", ip.trim());
    let eps = node.ok(&["get", "endpoints", "web"]);
    assert!(eps.contains("<none>"), "no endpoint while not ready: {eps}");
    // Not ready: the ClusterIP refuses.
    let refused = get(&service);
    assert!(refused.starts_with("error"), "{refused}");
    let file = std::path::Path::new("/tmp").join(&root).join("test.html");
    std::fs::write(&file, "ok").unwrap();
    node.until(&["get", "pod", "web"], 30, |t| t.contains("1/1"))
        .await;
    let pod_ip = node.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    node.until(&["get", "endpoints", "web"], 30, |t| {
        t.contains(&format!("{}:8080", pod_ip.trim()))
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get(&service) != "200" {
        assert!(
            std::time::Instant::now() < deadline,
            "the Service never answered: {}",
            get(&service)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A NodePort Service also answers on the node's own address.
    let node_ip = node.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let node_port = node.ok(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    if !node_ip.trim().is_empty() && !node_ip.trim().starts_with("127.") {
        assert_eq!(
            get(&format!("{}:{}", node_ip.trim(), node_port.trim())),
            "200",
            "NodePort on the node's address"
        );
    }
    // From inside another pod too: the name resolves through cluster DNS and the ClusterIP
    // reaches the ready pod.
    let client = data.path().join("client.yaml");
    std::fs::write(&client, CLIENT).unwrap();
    node.ok(&["apply", "-f", client.to_str().unwrap()]);
    node.until(&["logs", "client"], 60, |t| t.contains("status 200"))
        .await;
    node.ok(&["delete", "pod", "client", "--grace-period=0", "--force"]);
    // Not ready again: the endpoint and the traffic go, the container is not restarted.
    std::fs::remove_file(&file).unwrap();
    node.until(&["get", "endpoints", "web"], 30, |t| t.contains("<none>"))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !get(&service).starts_with("error") {
        assert!(std::time::Instant::now() < deadline, "the Service still answers");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let restarts = node.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(restarts.trim(), "0");
    node.ok(&["delete", "pod", "web", "--wait=false"]);
    node.stop().await;
    let _ = std::fs::remove_dir_all(std::path::Path::new("/tmp").join(&root));
}

const LIVENESS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: liveness-http}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: host
    command:
    - python3
    - -c
    - |
      import http.server, threading, time
      server = http.server.HTTPServer(("", 80), http.server.SimpleHTTPRequestHandler)
      threading.Thread(target=server.serve_forever, daemon=True).start()
      print("serving on :80", flush=True)
      time.sleep(3)
      server.shutdown(); server.server_close()
      print("port 80 closed", flush=True)
      time.sleep(3600)
    livenessProbe:
      tcpSocket: {port: 80}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
"#;

/// The seed's liveness demonstration: a container serving on port 80 stops answering; the node
/// restarts it, RESTARTS goes up and an Unhealthy event says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn liveness_restarts_the_container_when_port_80_stops_answering() {
    require_all();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.99.{}.0/24", (std::process::id() + 7) % 250);
    let node = RunningNode::start_with_own_services(data.path(), &cidr, "liveness").await;
    let pod = data.path().join("liveness.yaml");
    std::fs::write(&pod, LIVENESS).unwrap();
    node.ok(&["apply", "-f", pod.to_str().unwrap()]);
    let jsonpath = "jsonpath={.status.containerStatuses[0].restartCount}";
    node.until(&["get", "pod", "liveness-http", "-o", jsonpath], 60, |t| {
        t.trim().parse::<i32>().unwrap_or(0) >= 1
    })
    .await;
    let row = node.ok(&["get", "pod", "liveness-http"]);
    assert!(row.contains("Running"), "{row}");
    let described = node.ok(&["describe", "pod", "liveness-http"]);
    assert!(described.contains("Liveness probe failed"), "{described}");
    assert!(
        described.contains("Container web failed liveness probe, will be restarted"),
        "{described}"
    );
    node.ok(&["delete", "pod", "liveness-http", "--grace-period=0", "--force"]);
    node.stop().await;
}

const ROLLING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: host
        command: [sh, -c, 'mkdir -p /tmp/ROOT && cd /tmp/ROOT && echo ok > test.html && exec python3 -m http.server 8080']
        readinessProbe:
          httpGet: {path: /test.html, port: 8080}
          periodSeconds: 1
        livenessProbe:
          exec: {command: [sh, -c, 'test ! -e /tmp/ROOT/unhealthy-$(hostname)']}
          periodSeconds: 1
          failureThreshold: 1
        lifecycle:
          preStop:
            exec: {command: [sleep, '2']}
---
apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// The seed's readiness demonstration at workload scale (issue 16): a Deployment of 3 behind a
/// Service. During `kubectl rollout restart` the Service never has fewer than `replicas -
/// maxUnavailable` (3) ready endpoints and a client looping on it sees no failed request; a
/// deleted pod is replaced; a liveness failure restarts a container in place, no new pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_rolling_restart_behind_a_service_loses_no_request() {
    require_all();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.101.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start_with_own_services(data.path(), &cidr, "roll").await;
    let root = format!("podvisor-shop-{}", std::process::id());
    let manifest = data.path().join("shop.yaml");
    std::fs::write(&manifest, ROLLING.replace("ROOT", &root)).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    node.ok(&["rollout", "status", "deployment/shop", "--timeout=90s"]);
    let ip = node.ok(&["get", "service", "shop", "-o", "jsonpath={.spec.clusterIP}"]);
    let service = format!("{}:80", ip.trim());
    let ready_endpoints = |node: &RunningNode| {
        node.ok(&[
            "get",
            "endpoints",
            "shop",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ])
        .split_whitespace()
        .count()
    };
    node.until(
        &[
            "get",
            "endpoints",
            "shop",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ],
        30,
        |t| t.split_whitespace().count() == 3,
    )
    .await;
    // A client loops on the Service for the whole restart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, service) = (stop.clone(), service.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get(&service).as_str() {
                    "200" => ok += 1,
                    other => failed.push(other.to_owned()),
                }
            }
            (ok, failed)
        })
    };
    let before = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=shop",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    node.ok(&["rollout", "restart", "deployment/shop"]);
    let mut fewest = usize::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        fewest = fewest.min(ready_endpoints(&node));
        let (done, _) = node.kubectl(&["rollout", "status", "deployment/shop", "--watch=false"]);
        let status = node.ok(&["rollout", "status", "deployment/shop", "--watch=false"]);
        if done && status.contains("successfully rolled out") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restart never finished: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    assert!(
        fewest >= 3,
        "the Service had {fewest} ready endpoints during the restart"
    );
    assert!(
        ok > 0 && failed.is_empty(),
        "{ok} requests answered, failed: {failed:?}"
    );
    // Every pod replaced, once the old ones finished terminating.
    let after = node
        .until(
            &[
                "get",
                "pods",
                "-l",
                "app=shop",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            60,
            |t| t.split_whitespace().count() == 3 && before.split_whitespace().all(|p| !t.contains(p)),
        )
        .await;

    // A deleted pod is replaced.
    let victim = after.split_whitespace().next().unwrap().to_owned();
    node.ok(&["delete", "pod", &victim, "--wait=false"]);
    node.until(
        &[
            "get",
            "deployment",
            "shop",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        60,
        |t| t.trim() == "3",
    )
    .await;
    let now = node
        .until(
            &[
                "get",
                "pods",
                "-l",
                "app=shop",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            60,
            |t| !t.contains(&victim) && t.split_whitespace().count() == 3,
        )
        .await;

    // A liveness failure restarts the container in place: same pod, RESTARTS 1, no new pod.
    let sick = now.split_whitespace().next().unwrap().to_owned();
    let marker = std::path::Path::new("/tmp")
        .join(&root)
        .join(format!("unhealthy-{sick}"));
    std::fs::write(&marker, "").unwrap();
    node.until(
        &[
            "get",
            "pod",
            &sick,
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        60,
        |t| t.trim().parse::<u32>().is_ok_and(|n| n >= 1),
    )
    .await;
    std::fs::remove_file(&marker).unwrap();
    let pods = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=shop",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(
        pods.split_whitespace().count(),
        3,
        "no pod replaced for a liveness failure: {pods}"
    );
    assert!(pods.contains(&sick));
    node.ok(&["delete", "deployment", "shop"]);
    node.until(&["get", "pods", "-l", "app=shop", "-o", "name"], 60, |t| {
        t.trim().is_empty()
    })
    .await;
    node.stop().await;
    let _ = std::fs::remove_dir_all(std::path::Path::new("/tmp").join(&root));
}

const STATEFUL_DNS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: db, image: host, command: [sleep, '34571']}
---
apiVersion: v1
kind: Pod
metadata: {name: asker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: asker
    image: host
    command: [sh, -c, 'while true; do getent hosts db-0.db.default.svc.cluster.local db-1.db.default.svc.cluster.local; echo ---; sleep 1; done']
"#;

/// A StatefulSet's pods have stable DNS names through its headless Service:
/// `db-0.db.default.svc.cluster.local` is db-0's pod IP, from inside another pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn stateful_set_pods_have_stable_dns_names() {
    require_all();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.102.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start_with_own_services(data.path(), &cidr, "stsdns").await;
    let manifest = data.path().join("db.yaml");
    std::fs::write(&manifest, STATEFUL_DNS).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    node.ok(&["rollout", "status", "statefulset/db", "--timeout=90s"]);
    let ip0 = node.ok(&["get", "pod", "db-0", "-o", "jsonpath={.status.podIP}"]);
    let ip1 = node.ok(&["get", "pod", "db-1", "-o", "jsonpath={.status.podIP}"]);
    let (ip0, ip1) = (ip0.trim().to_owned(), ip1.trim().to_owned());
    assert!(!ip0.is_empty() && ip0 != ip1);
    let answered = |t: &str, ip: &str, name: &str| {
        t.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [ip, name])
    };
    node.until(&["logs", "asker", "--tail=20"], 60, |t| {
        answered(t, &ip0, "db-0.db.default.svc.cluster.local")
            && answered(t, &ip1, "db-1.db.default.svc.cluster.local")
    })
    .await;
    node.ok(&["delete", "-f", manifest.to_str().unwrap(), "--wait=false"]);
    node.stop().await;
}
