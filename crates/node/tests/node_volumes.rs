//! Volumes, ConfigMaps and Secrets end to end through `kubectl`, with the manifests of
//! `examples/`: an init container preparing an emptyDir the app serves, a Secret only the init
//! container can read, a ConfigMap update reaching a mounted file (and not a subPath mount), and
//! a missing Secret reference waiting in CreateContainerConfigError until the Secret exists;
//! and the other volume types (projected, downwardAPI, hostPath, memory emptyDir) in one pod.
//!
//! Needs root (containers get their own mount namespace) and kubectl: `#[ignore = "needs root"]`,
//! run by `cargo xtask test` as root.

mod support;

use support::{RunningNode, require_kubectl, require_root};

const MIXED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: mixed, labels: {app: mixed}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: host
    command:
    - sh
    - -c
    - |
      echo "conf: $(cat /config/app.conf)"
      echo "greeting: $(cat /all/greeting)"
      echo "pass: $(cat /all/pass)"
      echo "labels: $(cat /info/labels)"
      echo "name: $(cat /all/name)"
      echo "cache: $(df -k --output=fstype,size /cache | tail -1 | tr -s ' ')"
      echo hi > /host/from-pod
      echo done
    volumeMounts:
    - {name: files, mountPath: /config}
    - {name: all, mountPath: /all}
    - {name: info, mountPath: /info}
    - {name: cache, mountPath: /cache}
    - {name: host, mountPath: /host}
  volumes:
  - name: files
    configMap: {name: files}
  - name: all
    projected:
      sources:
      - configMap: {name: greeting, items: [{key: message, path: greeting}]}
      - secret: {name: db-password, items: [{key: password, path: pass}]}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: cache
    emptyDir: {medium: Memory, sizeLimit: 16Mi}
  - name: host
    hostPath: {path: HOST_DIR, type: DirectoryOrCreate}
"#;

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn volumes_configmaps_and_secrets_through_kubectl() {
    require_root();
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cidr = format!("10.98.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(dir.path(), &cidr, "vol").await;
    let data_dir = dir.path().join("node");
    let apply = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        node.ok(&["apply", "-f", file.to_str().unwrap()])
    };

    // 1. The init container writes a file into an emptyDir; the app serves it (its readiness
    //    probe fetches it over HTTP).
    apply("init.yaml", &example("volume-init-config.yaml"));
    node.until(&["get", "pod", "volume-init-config"], 60, |t| {
        t.contains("1/1") && t.contains("Running")
    })
    .await;
    let served = node.ok(&["logs", "volume-init-config", "-c", "app"]);
    assert!(
        served.contains("GET /config.txt") && served.contains(" 200 "),
        "{served}"
    );
    let init_log = node.ok(&["logs", "volume-init-config", "-c", "render-config"]);
    assert!(init_log.contains("wrote /work/config.txt"), "{init_log}");

    // 2. Only the init container can read the Secret.
    let manifest = example("secret-isolation.yaml").replace("/var/lib/podvisor", data_dir.to_str().unwrap());
    apply("secret.yaml", &manifest);
    let logs = node
        .until(&["logs", "secret-isolation", "-c", "app"], 60, |t| {
            t.contains("host location")
        })
        .await;
    assert!(logs.contains("token is 7 characters long"), "{logs}");
    assert!(logs.contains("app: /secrets/token: not readable"), "{logs}");
    assert!(
        logs.contains("app: the secret's host location: not readable"),
        "{logs}"
    );
    assert!(!logs.contains("hunter2"), "{logs}");
    // The Secret is there on the host (on a tmpfs, readable by root only), just not for the app.
    let uid = node.ok(&["get", "pod", "secret-isolation", "-o", "jsonpath={.metadata.uid}"]);
    let host = data_dir
        .join("volumes")
        .join(uid.trim())
        .join("secret/creds/token");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "hunter2");
    let described = node.ok(&["describe", "pod", "secret-isolation"]);
    let events = node.ok(&["get", "events", "-o", "yaml"]);
    assert!(!described.contains("hunter2") && !events.contains("hunter2"));

    // 3. A ConfigMap update reaches the mounted file, not the subPath mount.
    apply("configmap.yaml", &example("configmap-update.yaml"));
    node.until(&["logs", "configmap-update"], 60, |t| {
        t.contains("volume: hello  subPath: hello")
    })
    .await;
    node.ok(&[
        "patch",
        "configmap",
        "greeting",
        "-p",
        r#"{"data":{"message":"bonjour"}}"#,
    ]);
    node.until(&["logs", "configmap-update", "--tail=1"], 30, |t| {
        t.contains("volume: bonjour  subPath: hello")
    })
    .await;

    // 4. A missing Secret keeps the container in CreateContainerConfigError, then it recovers.
    apply("missing.yaml", &example("missing-secret.yaml"));
    node.until(&["get", "pod", "missing-secret"], 30, |t| {
        t.contains("CreateContainerConfigError")
    })
    .await;
    node.until(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=missing-secret",
        ],
        30,
        |t| t.contains(r#"Error: secret "db-password" not found"#),
    )
    .await;
    node.ok(&[
        "create",
        "secret",
        "generic",
        "db-password",
        "--from-literal=password=s3cr3t",
    ]);
    node.until(&["get", "pod", "missing-secret"], 30, |t| t.contains("Running"))
        .await;
    let logs = node
        .until(&["logs", "missing-secret"], 30, |t| t.contains("got a password"))
        .await;
    assert!(logs.contains("got a password of 6 characters"), "{logs}");
    let restarts = node.ok(&[
        "get",
        "pod",
        "missing-secret",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(restarts.trim(), "0");

    // 5. The other volume types in one pod: projected (ConfigMap + Secret + downward API),
    //    downwardAPI labels, hostPath with DirectoryOrCreate, a memory-backed emptyDir with a
    //    size limit; and a ConfigMap made with --from-file.
    let conf = dir.path().join("app.conf");
    std::fs::write(&conf, "mode=fast\n").unwrap();
    node.ok(&[
        "create",
        "configmap",
        "files",
        &format!("--from-file={}", conf.display()),
    ]);
    let host_dir = dir.path().join("host-made");
    let pod = MIXED.replace("HOST_DIR", host_dir.to_str().unwrap());
    apply("mixed.yaml", &pod);
    let logs = node.until(&["logs", "mixed"], 60, |t| t.contains("done")).await;
    assert!(logs.contains("conf: mode=fast"), "{logs}");
    assert!(logs.contains("greeting: bonjour"), "{logs}");
    assert!(logs.contains("pass: s3cr3t"), "{logs}");
    assert!(logs.contains(r#"labels: app="mixed""#), "{logs}");
    assert!(logs.contains("name: mixed"), "{logs}");
    assert!(logs.contains("cache: tmpfs 16384"), "{logs}");
    assert!(host_dir.is_dir(), "DirectoryOrCreate made the host directory");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("from-pod")).unwrap(),
        "hi\n"
    );

    // Deleting a pod removes its volumes (the Secret's tmpfs included).
    node.ok(&["delete", "pod", "secret-isolation", "--wait=true"]);
    node.until(&["get", "pods"], 30, |t| !t.contains("secret-isolation"))
        .await;
    let gone = std::time::Instant::now();
    while data_dir.join("volumes").join(uid.trim()).exists() {
        assert!(
            gone.elapsed() < std::time::Duration::from_secs(20),
            "volumes not removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    node.stop().await;
}
