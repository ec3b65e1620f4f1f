//! `cargo xtask bench`: build the benchmark harness (`crates/bench`, the `podvisor-bench`
//! binary) in release mode and run it, then the criterion micro-benchmarks of the lifecycle
//! model and the endpoint computation (`micro`).
//!
//! The flags are checked here first so a typo fails before a release build; the harness checks
//! the benchmark names. `--json FILE` is resolved against the current directory. Afterwards the
//! run fails if it left podvisor cgroups, interfaces, tables or orphaned processes (the peers'
//! programs included) behind ([`crate::machine`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::flags::{Arg, Parser};
use crate::step;

const HELP: &str = "\
cargo xtask bench: run the benchmarks against floors measured in the same run

Installs etcd when missing (the etcd benchmarks start their own member), builds
`podvisor-bench` (crates/bench) in release mode and runs it. It prints a table
(benchmark, metric, p50, p99, floor, ratio, goal, verdict); ratios to the floor are the
point, because absolute times drift ±20% on shared machines. Missed goals are reported,
not failures.

USAGE:
    cargo xtask bench [--quick] [--json FILE] [NAME...]

ARGUMENTS:
    NAME...       Run only the benchmarks whose names contain one of these [default: all]
                  (pod-start, burst-110, crash-restart, probe-cpu, probe-timing, api,
                  endpoint-propagation, footprint, sched-throughput, api-etcd, watch-latency,
                  deploy-100, rollout-100, node-restart, node-footprint, burst-1000, probe-cpu-1000,
                  api-10k, endpoint-propagation-1000;
                  `micro` for the criterion micro-benchmarks of PodMachine::step and the
                  endpoint computation)

OPTIONS:
    --quick       Small sizes: a smoke test of everything in under two minutes after the build
    --json FILE   Also write the results as JSON to FILE
    -h, --help    Print this message

EXIT CODES:
    0   every benchmark ran
    1   the build or a benchmark failed
    2   usage error
";

/// The bench flags, validated.
#[derive(Debug, Default, PartialEq, Eq)]
struct BenchArgs {
    quick: bool,
    json: Option<PathBuf>,
    names: Vec<String>,
}

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let Some(bench_args) = parse(args)? else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    crate::setup::install(crate::setup::Need::Bench)?;
    let before = crate::machine::Snapshot::take_as_reaper();
    let micro = bench_args.names.is_empty() || bench_args.names.iter().any(|n| n == "micro");
    let names: Vec<&String> = bench_args.names.iter().filter(|n| *n != "micro").collect();
    let mut code = ExitCode::SUCCESS;
    if bench_args.names.is_empty() || !names.is_empty() {
        code = harness(&bench_args, &names)?;
    }
    if micro && code == ExitCode::SUCCESS {
        code = micro_benchmarks(bench_args.quick)?;
    }
    let leftovers = before.leftovers(std::time::Duration::from_secs(10));
    if !leftovers.is_empty() {
        anyhow::bail!(
            "the benchmarks left these behind (a run must leave the machine as it found it):\n  {}",
            leftovers.join("\n  ")
        );
    }
    Ok(code)
}

/// The criterion micro-benchmarks (`--quick`: criterion's quick mode).
fn micro_benchmarks(quick: bool) -> Result<ExitCode> {
    let mut command = step::cargo();
    command.args([
        "bench",
        "-p",
        "podvisor-lifecycle",
        "-p",
        "podvisor-endpoints",
        "--bench",
        "step",
        "--bench",
        "endpoints",
        "--",
    ]);
    if quick {
        command.arg("--quick");
    }
    eprintln!("\n==> bench: micro-benchmarks (criterion)");
    let status = command.status().context("cannot start `cargo bench`")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The harness with the given names.
fn harness(bench_args: &BenchArgs, names: &[&String]) -> Result<ExitCode> {
    let mut command = step::cargo();
    command.args(["run", "--release", "--quiet", "-p", "podvisor-bench", "--"]);
    if bench_args.quick {
        command.arg("--quick");
    }
    if let Some(json) = &bench_args.json {
        // cargo runs in the workspace root; keep a relative FILE relative to where we were called.
        let json = std::env::current_dir()
            .context("reading the current directory for `--json`")?
            .join(json);
        command.arg("--json").arg(json);
    }
    command.args(names);
    let shown: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    eprintln!("\n==> bench: cargo {}", shown.join(" "));
    let status = command
        .status()
        .context("cannot start `cargo run -p podvisor-bench`")?;
    // The harness's own exit code: 2 for a usage error (an unknown NAME), 1 for a failure.
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(2) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    })
}

/// The validated flags, or `None` when `--help` was asked for.
fn parse(args: Vec<String>) -> Result<Option<BenchArgs>> {
    let mut parser = Parser::new(args, "cargo xtask bench --help");
    let mut bench_args = BenchArgs::default();
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) => match flag.as_str() {
                "help" => return Ok(None),
                "quick" => bench_args.quick = true,
                "json" => {
                    let value = parser.value()?;
                    if value.is_empty() {
                        return Err(parser.error("`--json` must not be empty").into());
                    }
                    bench_args.json = Some(PathBuf::from(value));
                }
                _ => return Err(parser.unknown_flag().into()),
            },
            Arg::Positional(name) => bench_args.names.push(name),
        }
    }
    Ok(Some(bench_args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Option<BenchArgs>> {
        parse(args.iter().map(|arg| (*arg).to_owned()).collect())
    }

    #[test]
    fn flags_and_names() {
        let args = parse_strs(&["--quick", "step", "--json", "out.json", "printer"])
            .unwrap()
            .unwrap();
        assert_eq!(
            args,
            BenchArgs {
                quick: true,
                json: Some(PathBuf::from("out.json")),
                names: vec!["step".to_owned(), "printer".to_owned()],
            }
        );
    }

    #[test]
    fn errors_name_the_flag() {
        let error = parse_strs(&["--json"]).unwrap_err().to_string();
        assert!(error.contains("`--json` needs a value"), "{error}");
        let error = parse_strs(&["--quick=1"]).unwrap_err().to_string();
        assert!(error.contains("`--quick` takes no value"), "{error}");
    }
}
