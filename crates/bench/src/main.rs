//! `podvisor-bench`: podvisor's benchmarks, each measured against a floor taken in the same run
//! (a minimal Rust program doing the bare operation), because absolute times on shared
//! machines drift by ±20% between runs and ratios do not. Run it through `cargo xtask bench`,
//! which builds it in release mode.
//!
//! Prints a table (benchmark, metric, p50, p99, floor, ratio, goal, verdict) and, with
//! `--json FILE`, writes the same rows as JSON. The benchmarks and goals are issue #6's; the
//! cluster ones (`sched-throughput`, `api-etcd`, `watch-latency`) issue #15's; the workload
//! controllers' (`deploy-100`, `rollout-100`) issue #16's; `node-restart` (pods adopted by a
//! new node process) issue #18's.
#![forbid(unsafe_code)]

mod api;
mod api_etcd;
mod api_node;
mod api_scale;
mod burst;
mod crash_restart;
mod deployment;
mod endpoint_propagation;
mod etcd;
mod floor;
mod footprint;
mod node_footprint;
mod node_restart;
mod peers;
mod pod_start;
mod pods;
mod probe_cpu;
mod probe_timing;
mod report;
mod sched;
mod stats;
mod watch_latency;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::stats::Row;

const HELP: &str = "\
podvisor-bench: run podvisor's benchmarks against floors measured in the same run

USAGE:
    podvisor-bench [--quick] [--json FILE] [NAME...]
    (normally through `cargo xtask bench`, which builds this in release mode)

ARGUMENTS:
    NAME...       Run only the benchmarks whose names contain one of these [default: all]

OPTIONS:
    --quick       Small sizes: a smoke test of everything in under two minutes
    --json FILE   Also write the results as JSON to FILE
    -h, --help    Print this message

BENCHMARKS:
    pod-start      one-container pod created → Running        (floor: spawn+wait, namespaces as root)
    burst-110      110 pods applied at once → all Running → all deleted → all gone
                          (floor: spawn and kill 110 processes; as root each in new namespaces
                           and its own pod and container cgroups)
    burst-1000     the same with 1,000 pods                     (floor: the same with 1,000)
    crash-restart  SIGKILL of an Always container → replaced   (floor: kill + waitpid + spawn)
    probe-cpu      CPU of 110 pods' HTTP+TCP (and exec) probes at 1 s, TIME_WAIT, false failures
    probe-cpu-1000 the same for 1,000 pods' HTTP+TCP probes at 10 s and at 1 s
    probe-timing   330 HTTP probes at period 1 s: lateness idle and with both cores loaded
    api            create/get/list pods, watch fan-out          (floor: loopback HTTP round trip)
    api-10k        list of 10,000 pods, one change fanned out to 1,000 watchers
                   (floors: the same list encoded by a minimal hyper server; one line written
                   to 1,000 loopback connections)
    endpoint-propagation  readiness flip → EndpointSlice watch event, one endpoint
    endpoint-propagation-1000  the same in a Service of 1,000 endpoints, slices of 100
                                                (floor: the one-endpoint flip)
    footprint      RSS and CPU of the pod parts, 0 and N probed pods
    node-footprint the whole node's RSS and idle CPU at 0, 110 and 1,000 probed pods (10 s
                   probes), and the PSS of the containers' monitors and sandbox holders
    sched-throughput  1,000 pending pods bound by the scheduler onto 3 Nodes, pods/s
                                                (floor: the same pods/binding POSTs, one by one)
    api-etcd       pod create/get on an API server on etcd and on redb
                                                (floor: raw etcd put/get; loopback HTTP for redb)
    watch-latency  pod status write on server A → agent's watch via server B, one etcd
                                                (floor: etcd put → etcd watch event)
    deploy-100     Deployment of 100 created → 100 available, on a whole node
                                  (floor: the 100 pods created directly → all Ready)
    rollout-100    rolling update of those 100 (25% surge/unavailable) → done, old pods gone
                                  (floor: 100 pods started and deleted directly)

EXIT CODES:
    0   every benchmark ran (goals missed are reported, not failures)
    1   a benchmark failed to run
    2   usage error
";

/// The validated command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    quick: bool,
    json: Option<PathBuf>,
    names: Vec<String>,
}

/// One benchmark: its name and its sizes (full, quick).
struct Bench {
    name: &'static str,
    full: usize,
    quick: usize,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "pod-start",
        full: 200,
        quick: 20,
    },
    // Pods per burst.
    Bench {
        name: "burst-110",
        full: 110,
        quick: 20,
    },
    Bench {
        name: "burst-1000",
        full: 1000,
        quick: 50,
    },
    Bench {
        name: "crash-restart",
        full: 100,
        quick: 10,
    },
    // Pods created, got and listed; the watchers and changes scale from it.
    Bench {
        name: "api",
        full: 1000,
        quick: 100,
    },
    // Probed pods (two probes each, period 1 s).
    Bench {
        name: "probe-cpu",
        full: 110,
        quick: 20,
    },
    // Probed pods (two probes each, period 10 s and 1 s).
    Bench {
        name: "probe-cpu-1000",
        full: 1000,
        quick: 20,
    },
    // Probes (two per pod, period 1 s).
    Bench {
        name: "probe-timing",
        full: 330,
        quick: 30,
    },
    // Pods listed; the watchers are a tenth of it.
    Bench {
        name: "api-10k",
        full: 10_000,
        quick: 500,
    },
    // Readiness flips.
    Bench {
        name: "endpoint-propagation",
        full: 200,
        quick: 20,
    },
    // Endpoints of the Service whose one pod flips (slices of 100); the floor is one endpoint.
    Bench {
        name: "endpoint-propagation-1000",
        full: 1000,
        quick: 200,
    },
    // Probed pods of the larger size.
    Bench {
        name: "footprint",
        full: 110,
        quick: 20,
    },
    // Pending pods scheduled (and as many bound directly for the floor).
    Bench {
        name: "sched-throughput",
        full: 1000,
        quick: 100,
    },
    // Pods created and got on each store.
    Bench {
        name: "api-etcd",
        full: 1000,
        quick: 100,
    },
    // Status writes.
    Bench {
        name: "watch-latency",
        full: 300,
        quick: 50,
    },
    // Replicas (and as many bare pods for the floor), rounds: 3 full, 1 quick.
    Bench {
        name: "deploy-100",
        full: 100,
        quick: 20,
    },
    Bench {
        name: "rollout-100",
        full: 100,
        quick: 20,
    },
    // The whole node grown to the largest of its sizes (110 and this).
    Bench {
        name: "node-footprint",
        full: 1000,
        quick: 20,
    },
    // Pods adopted by a new node process (rounds: 3 full, 1 quick).
    Bench {
        name: "node-restart",
        full: 110,
        quick: 20,
    },
];

fn main() -> ExitCode {
    let code = run_process();
    // Every path's pod nodes, the harness's and a child's (footprint).
    pods::remove_data_dirs();
    code
}

/// The harness, or one of its child processes.
fn run_process() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(node_footprint::CHILD_ARG) {
        return match node_footprint::child(argv.get(1..).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: node child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if argv.first().map(String::as_str) == Some(footprint::CHILD_ARG) {
        return match footprint::child(argv.get(1..).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: footprint child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e:#}\n\nRun `podvisor-bench --help` for usage.");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The flags, or `None` for `--help`.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => out.quick = true,
            "--json" => {
                let value = args.next().context("`--json` needs a FILE")?;
                if value.is_empty() || value.starts_with("--") {
                    bail!("`--json` needs a FILE, got {value:?}");
                }
                out.json = Some(PathBuf::from(value));
            }
            s if s.starts_with("--json=") => {
                let value = &s["--json=".len()..];
                if value.is_empty() {
                    bail!("`--json` must not be empty");
                }
                out.json = Some(PathBuf::from(value));
            }
            s if s.starts_with('-') => bail!("unknown flag `{s}`"),
            name => out.names.push(name.to_owned()),
        }
    }
    for name in &out.names {
        if !BENCHES.iter().any(|b| b.name.contains(name.as_str())) {
            let known: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
            bail!("no benchmark matches NAME `{name}` (known: {})", known.join(", "));
        }
    }
    Ok(Some(out))
}

fn run(args: &Args) -> Result<()> {
    let selected: Vec<&Bench> = BENCHES
        .iter()
        .filter(|b| args.names.is_empty() || args.names.iter().any(|n| b.name.contains(n.as_str())))
        .collect();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for bench in &selected {
        let n = if args.quick { bench.quick } else { bench.full };
        eprintln!("==> {} (n = {n})", bench.name);
        let t = Instant::now();
        // On a worker of the runtime, as the node's own consumers of a pod's view are: the
        // harness's main thread is not one, and each wake-up of it would cross threads (and,
        // on a small machine, wait for a core the node's new processes hold).
        let (name, quick) = (bench.name, args.quick);
        let result = tokio
            .block_on(tokio.spawn(run_one(name, n, quick)))
            .context("the benchmark's task")
            .and_then(|r| r);
        let mut new_rows = result.with_context(|| format!("benchmark {}", bench.name))?;
        if matches!(bench.name, "burst-110" | "burst-1000" | "crash-restart") {
            let samples = if args.quick { 3 } else { 20 };
            // Outside the runtime: the peers are driven with blocking commands.
            new_rows.extend(peers::rows(bench.name, n, samples));
        }
        eprintln!("    done in {:.1} s", t.elapsed().as_secs_f64());
        rows.extend(new_rows);
    }
    let peer_notes = peers::notes();
    print!("{}", report::table(&rows));
    for note in report::notes(&rows).iter().chain(&peer_notes) {
        println!("note: {note}");
    }
    println!(
        "({} run, {:.1} s; ratios are the point: absolute times drift ±20% on shared machines)",
        if args.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.json {
        let json = report::json(&rows, args.quick, &peer_notes);
        let text = serde_json::to_string_pretty(&json).context("encoding the JSON")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing `--json` file {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs benchmark `name` with size `n`.
async fn run_one(name: &'static str, n: usize, quick: bool) -> Result<Vec<Row>> {
    match name {
        "pod-start" => pod_start::run(n).await,
        "crash-restart" => crash_restart::run(n).await,
        "burst-110" => burst::run(name, n, if quick { 1 } else { 5 }).await,
        "burst-1000" => burst::run(name, n, if quick { 1 } else { 3 }).await,
        "api" => {
            api::run(&api::Sizes {
                pods: n,
                lists: if quick { 5 } else { 20 },
                watchers: if quick { 10 } else { 50 },
                changes: if quick { 10 } else { 50 },
            })
            .await
        }
        "api-10k" => {
            api_scale::run(&api_scale::Sizes {
                pods: n,
                lists: if quick { 3 } else { 10 },
                watchers: n / 10,
                changes: if quick { 5 } else { 20 },
            })
            .await
        }
        "endpoint-propagation" => endpoint_propagation::run(n).await,
        "endpoint-propagation-1000" => endpoint_propagation::run_scale(if quick { 10 } else { 100 }, n).await,
        "probe-cpu" => probe_cpu::run(n, Duration::from_secs(if quick { 3 } else { 10 })).await,
        "probe-cpu-1000" => {
            let (slow, fast) = if quick { (10, 3) } else { (20, 10) };
            probe_cpu::run_scale(n, Duration::from_secs(slow), Duration::from_secs(fast)).await
        }
        "probe-timing" => probe_timing::run(n, Duration::from_secs(if quick { 3 } else { 10 })).await,
        "footprint" => {
            let idle = Duration::from_secs(if quick { 2 } else { 5 });
            footprint::run(n, idle).await
        }
        "sched-throughput" => sched::run(n).await,
        "api-etcd" => api_etcd::run(n).await,
        "watch-latency" => watch_latency::run(n).await,
        "deploy-100" | "rollout-100" => {
            let measure = if name == "deploy-100" {
                deployment::Measure::Deploy
            } else {
                deployment::Measure::Rollout
            };
            deployment::run(n, if quick { 1 } else { 3 }, measure).await
        }
        "node-restart" => node_restart::run(n, if quick { 1 } else { 3 }).await,
        "node-footprint" => {
            let sizes: &[usize] = if quick { &[n] } else { &[110, n] };
            let idle = if quick {
                Duration::from_secs(10)
            } else {
                node_footprint::IDLE_WINDOW
            };
            node_footprint::run(sizes, idle).await
        }
        other => bail!("benchmark {other} has no runner"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>> {
        parse(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags_parse_and_errors_name_the_flag() {
        let a = args(&["--quick", "--json", "out.json", "pod"]).unwrap().unwrap();
        assert!(a.quick);
        assert_eq!(a.json, Some(PathBuf::from("out.json")));
        assert_eq!(a.names, vec!["pod".to_owned()]);
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(format!("{:#}", args(&["--json"]).unwrap_err()).contains("--json"));
        assert!(format!("{:#}", args(&["--bogus"]).unwrap_err()).contains("--bogus"));
        assert!(format!("{:#}", args(&["nothing"]).unwrap_err()).contains("nothing"));
        for name in ["sched", "api-etcd", "watch-latency", "deploy-100", "rollout"] {
            assert_eq!(args(&[name]).unwrap().unwrap().names, vec![name.to_owned()]);
        }
    }
}
