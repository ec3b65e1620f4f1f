//! Workloads through the real `kubectl` against an in-process node (issue 16): a Deployment
//! created, healed, scaled, rolled out, rolled back, paused, described and deleted with its
//! ReplicaSets and pods (or without them, `--cascade=orphan`), and the `default`
//! ServiceAccount. Pods use the host network without root.

mod support;

use support::{RunningNode, require_kubectl};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: web, image: host, command: [sleep, '34567']}
"#;

/// The names of the pods `kubectl get pods -l app=web` lists.
fn pod_names(node: &RunningNode) -> Vec<String> {
    let out = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    out.split_whitespace().map(str::to_owned).collect()
}

/// A node of its own, pod CIDR `10.<octet>.<pid>.0/24` (each test of this file a different
/// octet: they run at once in one process), ready for pods (its `default` ServiceAccount made),
/// with `manifest` applied; what `kubectl apply` said.
async fn node_with(octet: u8, tag: &str, manifest: &str) -> (tempfile::TempDir, RunningNode, String) {
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.{octet}.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, tag).await;
    node.until(&["get", "serviceaccount", "default"], 30, |t| {
        t.contains("default")
    })
    .await;
    let path = data.path().join(format!("{tag}.yaml"));
    std::fs::write(&path, manifest).unwrap();
    let out = node.ok(&["apply", "-f", path.to_str().unwrap()]);
    (data, node, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_heals_scales_rolls_out_and_back_and_goes_with_its_dependents() {
    require_kubectl();
    let (_data, node, out) = node_with(98, "deploy", WEB).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let status = node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    let table = node.ok(&["get", "deployment", "web"]);
    assert!(table.contains("READY") && table.contains("UP-TO-DATE"), "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("3/3")),
        "{table}"
    );
    let rs = node.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let first_rs = rs.trim().to_owned();
    assert!(
        first_rs.starts_with("web-") && !first_rs.contains(' '),
        "one ReplicaSet: {rs}"
    );
    let hash = first_rs.trim_start_matches("web-");
    let pods = pod_names(&node);
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(
        pods.iter().all(|p| p.starts_with(&format!("{first_rs}-"))),
        "{pods:?}"
    );
    let labels = node.ok(&[
        "get",
        "pod",
        &pods[0],
        "-o",
        "jsonpath={.metadata.labels.pod-template-hash}",
    ]);
    assert_eq!(labels.trim(), hash);

    // A deleted pod is replaced.
    node.ok(&["delete", "pod", &pods[0], "--wait=false"]);
    node.until(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        ],
        60,
        |t| t.lines().count() == 3 && !t.contains(&pods[0]),
    )
    .await;

    // Scaling, through the scale subresource.
    node.ok(&["scale", "deployment", "web", "--replicas=5"]);
    node.until(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        60,
        |t| t.trim() == "5",
    )
    .await;
    node.ok(&["scale", "deployment", "web", "--replicas=2"]);
    node.until(&["get", "pods", "-l", "app=web", "-o", "name"], 60, |t| {
        t.lines().count() == 2
    })
    .await;

    // A template change rolls out a second ReplicaSet; undo brings the first back.
    node.ok(&["set", "env", "deployment/web", "COLOR=blue"]);
    let status = node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = node.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains('1') && history.contains('2'),
        "{history}"
    );
    let rss = node.ok(&["get", "rs", "-l", "app=web"]);
    assert_eq!(rss.lines().count(), 3, "two ReplicaSets: {rss}");
    node.ok(&["rollout", "undo", "deployment/web"]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let revision = node.ok(&[
        "get",
        "rs",
        &first_rs,
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert_eq!(
        revision.trim(),
        "3",
        "the first ReplicaSet is the new one again: {}\n{}",
        node.ok(&["get", "rs", &first_rs, "-o", "jsonpath={.spec.template}"]),
        node.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template}"])
    );
    node.until(
        &["get", "rs", &first_rs, "-o", "jsonpath={.status.readyReplicas}"],
        60,
        |t| t.trim() == "2",
    )
    .await;

    // Paused: template changes wait; resume rolls them out.
    node.ok(&["rollout", "pause", "deployment/web"]);
    let (refused, why) = node.kubectl(&["rollout", "restart", "deployment/web"]);
    assert!(
        !refused && why.contains("can't restart paused deployment"),
        "{why}"
    );
    node.ok(&["set", "env", "deployment/web", "COLOR=red"]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rss = node.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rss.lines().count(), 2, "no rollout while paused: {rss}");
    node.ok(&["rollout", "resume", "deployment/web"]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let rss = node.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rss.lines().count(), 3, "{rss}");
    node.ok(&["rollout", "restart", "deployment/web"]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let restarted = node.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ]);
    assert!(
        restarted.contains("kubectl.kubernetes.io/restartedAt"),
        "{restarted}"
    );

    // set image and set resources start rollouts too.
    node.ok(&["set", "image", "deployment/web", "web=host:2"]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    node.ok(&["set", "resources", "deployment/web", "--limits=cpu=200m"]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let image = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].resources.limits.cpu}",
    ]);
    assert!(
        image.split_whitespace().all(|c| c == "200m") && !image.trim().is_empty(),
        "{image}"
    );
    let history = node.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.lines().count() >= 7, "revisions 2..6 listed: {history}");
    let rs = node.ok(&["describe", "rs", "-l", "app=web"]);
    assert!(
        rs.contains("SuccessfulCreate") && rs.contains("Created pod: web-"),
        "{rs}"
    );
    let described = node.ok(&["describe", "deployment", "web"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(described.contains("NewReplicaSet:"), "{described}");
    let all = node.ok(&["get", "all"]);
    assert!(
        all.contains("deployment.apps/web") && all.contains("replicaset.apps/web-"),
        "{all}"
    );

    // Deleting the Deployment takes its ReplicaSets and pods.
    node.ok(&["delete", "deployment", "web"]);
    node.until(&["get", "rs,pods", "-l", "app=web", "-o", "name"], 60, |t| {
        t.trim().is_empty()
    })
    .await;

    // --cascade=foreground: the Deployment stays (finalizer foregroundDeletion) until its
    // ReplicaSet and pods are gone, and kubectl waits for that.
    node.ok(&[
        "create",
        "deployment",
        "front",
        "--image=host",
        "--replicas=2",
        "--",
        "sleep",
        "34566",
    ]);
    node.ok(&["rollout", "status", "deployment/front", "--timeout=60s"]);
    let out = node.ok(&[
        "delete",
        "deployment",
        "front",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(out.contains("deployment.apps \"front\" deleted"), "{out}");
    let left = node.ok(&["get", "deployment,rs,pods", "-l", "app=front", "-o", "name"]);
    assert!(
        left.trim().is_empty(),
        "nothing left once kubectl returns: {left}"
    );

    // --cascade=orphan keeps them, without the owner's reference.
    node.ok(&[
        "create",
        "deployment",
        "keep",
        "--image=host",
        "--",
        "sleep",
        "34568",
    ]);
    node.ok(&["rollout", "status", "deployment/keep", "--timeout=60s"]);
    node.ok(&["delete", "deployment", "keep", "--cascade=orphan"]);
    let (gone, _) = node.kubectl(&["get", "deployment", "keep"]);
    assert!(!gone, "the Deployment is gone");
    let owners = node
        .until(
            &[
                "get",
                "rs",
                "-l",
                "app=keep",
                "-o",
                "jsonpath={.items[*].metadata.ownerReferences}",
            ],
            30,
            |t| t.trim().is_empty(),
        )
        .await;
    assert!(owners.trim().is_empty());
    let rs = node.ok(&["get", "rs", "-l", "app=keep", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "{rs}");
    node.ok(&["delete", "rs", "-l", "app=keep"]);
    node.until(&["get", "pods", "-l", "app=keep", "-o", "name"], 60, |t| {
        t.trim().is_empty()
    })
    .await;
    node.stop().await;
}

const RECREATE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: redo, labels: {app: redo}}
spec:
  replicas: 2
  strategy: {type: Recreate}
  selector: {matchLabels: {app: redo}}
  template:
    metadata: {labels: {app: redo}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: main
        image: host
        command: [sh, -c, 'trap "" TERM; while true; do sleep 1; done']
"#;

/// The pods `kubectl get pods -l app=redo` lists: name, and whether they are terminating.
fn redo_pods(node: &RunningNode) -> Vec<(String, bool)> {
    let out = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=redo",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, deleted) = l.split_once(' ').unwrap_or((l, ""));
            (name.to_owned(), !deleted.trim().is_empty())
        })
        .collect()
}

/// Rule 3.12 end to end: a Recreate rollout starts no new pod while an old one is still there
/// (they take their 3 s grace: the container ignores SIGTERM), then creates the new ones as
/// soon as the last old one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_rollout_starts_the_new_pods_once_the_old_ones_are_gone() {
    require_kubectl();
    let (_data, node, _) = node_with(95, "recreate", RECREATE).await;
    let status = node.ok(&["rollout", "status", "deployment/redo", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let old: Vec<String> = redo_pods(&node).into_iter().map(|(n, _)| n).collect();
    assert_eq!(old.len(), 2, "{old:?}");

    let started = std::time::Instant::now();
    node.ok(&["set", "env", "deployment/redo", "ROUND=2"]);
    // While any old pod is there, there is no other pod.
    let mut saw_terminating = false;
    loop {
        let pods = redo_pods(&node);
        if !pods.iter().any(|(n, _)| old.contains(n)) {
            break;
        }
        saw_terminating |= pods.iter().any(|(n, t)| old.contains(n) && *t);
        let new: Vec<&String> = pods.iter().map(|(n, _)| n).filter(|n| !old.contains(n)).collect();
        assert!(new.is_empty(), "new pods {new:?} beside old ones: {pods:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "old pods still there: {pods:?}"
        );
    }
    assert!(saw_terminating, "the old pods were seen terminating");
    // Then the new ones, without waiting for anything else (the progress deadline's look
    // comes only after 600 s).
    let status = node.ok(&["rollout", "status", "deployment/redo", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let new = redo_pods(&node);
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.iter().all(|(n, t)| !old.contains(n) && !t), "{new:?}");
    let sets = node.ok(&[
        "get",
        "rs",
        "-l",
        "app=redo",
        "-o",
        "jsonpath={range .items[*]}{.spec.replicas}{\" \"}{end}",
    ]);
    let mut sizes: Vec<&str> = sets.split_whitespace().collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        ["0", "2"],
        "the old ReplicaSet at 0, the new one at 2: {sets}"
    );
    node.stop().await;
}

const STATEFUL: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: host
        command: [sleep, '34569']
        readinessProbe:
          exec: {command: ['true']}
          periodSeconds: 1
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: agent, image: host, command: [sleep, '34570']}
"#;

/// The creation time of each pod `kubectl get pods -l app=db` lists, by name.
fn created(node: &RunningNode) -> std::collections::BTreeMap<String, String> {
    let out = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=db",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.creationTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_sets_keep_names_and_order_and_daemon_sets_cover_the_node() {
    require_kubectl();
    let (data, node, _) = node_with(97, "sts", STATEFUL).await;
    let status = node.ok(&["rollout", "status", "statefulset/db", "--timeout=90s"]);
    assert!(
        status.contains("partitioned roll out complete") || status.contains("rolling update complete"),
        "{status}"
    );
    let pods = created(&node);
    assert_eq!(
        pods.keys().collect::<Vec<_>>(),
        ["db-0", "db-1", "db-2"],
        "stable names"
    );
    assert!(
        pods["db-0"] <= pods["db-1"] && pods["db-1"] <= pods["db-2"],
        "created in order: {pods:?}"
    );
    let hostname = node.ok(&[
        "get",
        "pod",
        "db-1",
        "-o",
        "jsonpath={.spec.hostname}/{.spec.subdomain}",
    ]);
    assert_eq!(hostname.trim(), "db-1/db");
    let table = node.ok(&["get", "statefulset", "db"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("3/3")),
        "{table}"
    );
    // A deleted member comes back under its own name.
    let uid = node.ok(&["get", "pod", "db-1", "-o", "jsonpath={.metadata.uid}"]);
    node.ok(&["delete", "pod", "db-1", "--wait=false"]);
    node.until(
        &[
            "get",
            "pod",
            "db-1",
            "-o",
            "jsonpath={.metadata.uid} {.status.phase}",
        ],
        60,
        |t| !t.contains(uid.trim()) && t.contains("Running"),
    )
    .await;
    // Scale-down removes the highest ordinals.
    node.ok(&["scale", "statefulset", "db", "--replicas=1"]);
    node.until(&["get", "pods", "-l", "app=db", "-o", "name"], 60, |t| {
        t.trim() == "pod/db-0"
    })
    .await;
    let events = node.ok(&["get", "events", "--field-selector", "involvedObject.name=db"]);
    assert!(
        events.contains("create Pod db-2 in StatefulSet db successful"),
        "{events}"
    );
    assert!(
        events.contains("delete Pod db-2 in StatefulSet db successful"),
        "{events}"
    );
    let described = node.ok(&["describe", "statefulset", "db"]);
    assert!(described.contains("SuccessfulDelete"), "{described}");
    let revisions = node.ok(&["get", "controllerrevisions"]);
    assert!(revisions.contains("statefulset.apps/db"), "{revisions}");

    // The DaemonSet: one pod on the one node.
    node.until(
        &[
            "get",
            "daemonset",
            "agent",
            "-o",
            "jsonpath={.status.numberReady}",
        ],
        60,
        |t| t.trim() == "1",
    )
    .await;
    let pods = node.ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert_eq!(pods.split_whitespace().collect::<Vec<_>>(), ["e2e-node"]);
    let described = node.ok(&["describe", "daemonset", "agent"]);
    assert!(described.contains("Created pod: agent-"), "{described}");
    let ds = node.ok(&["get", "daemonset", "agent"]);
    assert!(ds.contains("NODE SELECTOR"), "{ds}");
    let manifest = data.path().join("sts.yaml");
    node.ok(&["delete", "-f", manifest.to_str().unwrap()]);
    node.until(&["get", "pods", "-o", "name"], 60, |t| {
        !t.contains("db-") && !t.contains("agent-")
    })
    .await;
    node.stop().await;
}

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: count}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - {name: count, image: host, command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX']}
---
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 2
  parallelism: 2
  completionMode: Indexed
  ttlSecondsAfterFinished: 3
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - {name: work, image: host, command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX']}
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - {name: broken, image: host, command: ['false']}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: '* * * * *'
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 1
          containers:
          - {name: tick, image: host, command: [sh, -c, 'echo tick']}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_fail_after_their_back_off_and_cron_jobs_start_them() {
    require_kubectl();
    let (_data, node, _) = node_with(96, "jobs", JOBS).await;
    node.ok(&["wait", "--for=condition=complete", "job/count", "--timeout=60s"]);
    let table = node.ok(&["get", "job", "count"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(
        row.get(1..3),
        Some(&["Complete", "3/3"][..]),
        "{table}\n{}\n{}",
        node.ok(&["get", "pods", "-l", "job-name=count", "-o", "wide"]),
        node.ok(&["get", "job", "count", "-o", "jsonpath={.status}"])
    );
    let pods = node.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=count",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    assert_eq!(
        pods.split_whitespace().filter(|p| *p == "Succeeded").count(),
        3,
        "{pods}"
    );
    let finalizers = node.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=count",
        "-o",
        "jsonpath={.items[*].metadata.finalizers}",
    ]);
    assert!(
        !finalizers.contains("job-tracking"),
        "counted pods lose the tracking finalizer: {finalizers}"
    );

    // Indexed: each pod knows its index; the TTL then deletes the Job and its pods.
    let logs = node
        .until(&["logs", "-l", "job-name=indexed", "--prefix"], 60, |t| {
            t.contains("index=0") && t.contains("index=1")
        })
        .await;
    assert!(logs.contains("index=0"), "{logs}");
    node.until(&["get", "jobs", "-o", "name"], 60, |t| {
        !t.contains("job.batch/indexed")
    })
    .await;
    node.until(
        &["get", "pods", "-l", "job-name=indexed", "-o", "name"],
        60,
        |t| t.trim().is_empty(),
    )
    .await;

    // backoffLimit 1: the second failure, 10 s after the first, fails the Job.
    let (failed, why) = node.kubectl(&["wait", "--for=condition=failed", "job/broken", "--timeout=90s"]);
    assert!(
        failed,
        "{why}\n{}\n{}",
        node.ok(&["get", "pods", "-l", "job-name=broken", "-o", "wide"]),
        node.ok(&["get", "job", "broken", "-o", "jsonpath={.status}"])
    );
    let reason = node.ok(&[
        "get",
        "job",
        "broken",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
    ]);
    assert_eq!(reason.trim(), "BackoffLimitExceeded");
    let failed = node.ok(&["get", "job", "broken", "-o", "jsonpath={.status.failed}"]);
    assert_eq!(failed.trim(), "2");
    let described = node.ok(&["describe", "job", "broken"]);
    assert!(
        described.contains("BackoffLimitExceeded") && described.contains("Created pod: broken-"),
        "{described}"
    );

    // The CronJob starts a Job at the next minute.
    let job = node
        .until(
            &[
                "get",
                "jobs",
                "-l",
                "",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            75,
            |t| t.split_whitespace().any(|j| j.starts_with("tick-")),
        )
        .await;
    let name = job
        .split_whitespace()
        .find(|j| j.starts_with("tick-"))
        .unwrap()
        .to_owned();
    node.ok(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{name}"),
        "--timeout=60s",
    ]);
    node.until(
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ],
        30,
        |t| !t.trim().is_empty(),
    )
    .await;
    let cron = node.ok(&["get", "cronjob", "tick"]);
    assert!(
        cron.contains("* * * * *") && cron.contains("<none>"),
        "schedule, no time zone: {cron}"
    );
    let owner = node.ok(&[
        "get",
        "job",
        &name,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(owner.trim(), "CronJob");

    // kubectl's generators: a CronJob, a Job from its template (not from `tick`, whose history
    // limit of 1 would trim it as its older finished Job), and a Job of their own.
    node.ok(&[
        "create",
        "cronjob",
        "nightly",
        "--image=host",
        "--schedule=0 3 * * *",
        "--",
        "sh",
        "-c",
        "echo hi",
    ]);
    let nightly = node.ok(&[
        "get",
        "cronjob",
        "nightly",
        "-o",
        "jsonpath={.spec.schedule} {.spec.jobTemplate.spec.template.spec.restartPolicy}",
    ]);
    assert_eq!(nightly.trim(), "0 3 * * * OnFailure");
    node.ok(&["create", "job", "manual", "--from=cronjob/nightly"]);
    node.ok(&["wait", "--for=condition=complete", "job/manual", "--timeout=60s"]);
    let logs = node.ok(&["logs", "job/manual"]);
    assert_eq!(logs.trim(), "hi");
    node.ok(&[
        "create",
        "job",
        "once",
        "--image=host",
        "--",
        "sh",
        "-c",
        "echo once",
    ]);
    node.ok(&["wait", "--for=condition=complete", "job/once", "--timeout=60s"]);
    let all = node.ok(&["get", "all"]);
    assert!(
        all.contains("cronjob.batch/nightly") && all.contains("job.batch/once"),
        "{all}"
    );

    // Deleting a Job (kubectl asks for background) takes its pods.
    node.ok(&["delete", "job", "count"]);
    node.until(&["get", "pods", "-l", "job-name=count", "-o", "name"], 60, |t| {
        t.trim().is_empty()
    })
    .await;
    let described = node.ok(&["describe", "cronjob", "tick"]);
    assert!(
        described.contains("SuccessfulCreate") && described.contains("Created job tick-"),
        "{described}"
    );
    node.ok(&["delete", "cronjob", "tick"]);
    node.until(&["get", "jobs", "-o", "name"], 60, |t| !t.contains("tick-"))
        .await;
    node.stop().await;
}
