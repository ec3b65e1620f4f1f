//! `cargo xtask fuzz`: the never-panic property tests of every input parser, run round after
//! round with fresh random cases until a time budget is spent.
//!
//! The fuzzer is proptest's generation from each input's grammar (coverage-free: libFuzzer
//! needs a nightly toolchain, which these machines cannot install). Each round runs every
//! target with `PROPTEST_CASES` cases and a new random seed; a failure stops the run, and
//! proptest writes the shrunk case to the target's `*.proptest-regressions` file beside its
//! source: commit it, and every later `cargo test` replays it first (those files are the
//! corpus). Targets: manifest decoding (YAML/JSON), pod validation, request bodies (JSON,
//! YAML, protobuf), JSON/merge/strategic patches, label and field selectors, and request
//! options (`crates/apiserver/tests/never_panic.rs`, `crates/api`'s never-panic tests).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::flags::{Arg, Parser};
use crate::step;

const HELP: &str = "\
cargo xtask fuzz: run the never-panic property tests of every input parser for a time budget

USAGE:
    cargo xtask fuzz [--seconds N] [--cases N]

OPTIONS:
    --seconds N   How long to keep starting rounds [default: 600]
    --cases N     Cases per property per round [default: 2000]
    -h, --help    Print this message

A failure stops the run; its shrunk case is saved in the target's *.proptest-regressions file,
which `cargo test` replays first: commit it with the fix.
";

/// One fuzz target: a test executable of the workspace's build and the test-name filter it
/// runs with.
struct Target {
    package: &'static str,
    /// The test target's kind and name: `test` and the file's name, or `lib` and the crate's.
    kind: &'static str,
    name: &'static str,
    filter: &'static str,
}

const TARGETS: [Target; 2] = [
    Target {
        package: "podvisor-apiserver",
        kind: "test",
        name: "never_panic",
        filter: "",
    },
    Target {
        package: "podvisor-api",
        kind: "lib",
        name: "podvisor_api",
        filter: "never_panics",
    },
];

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let mut parser = Parser::new(args, "cargo xtask fuzz --help");
    let mut seconds: u64 = 600;
    let mut cases: u64 = 2000;
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) => match flag.as_str() {
                "help" => {
                    print!("{HELP}");
                    return Ok(ExitCode::SUCCESS);
                }
                name @ ("seconds" | "cases") => {
                    let value = parser.value()?;
                    let n = value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        parser.error(format!("`--{name} {value}` is not a positive number"))
                    })?;
                    if name == "seconds" {
                        seconds = n;
                    } else {
                        cases = n;
                    }
                }
                _ => return Err(parser.unknown_flag().into()),
            },
            Arg::Positional(arg) => {
                return Err(parser.error(format!("unexpected argument `{arg}`")).into());
            }
        }
    }
    crate::setup::install(crate::setup::Need::Build)?;
    // The suite's own executables (built once, with the workspace's features): `cargo test -p`
    // would build everything again for one package's features.
    let binaries = step::workspace_test_binaries()?;
    let targets = TARGETS
        .iter()
        .map(|t| {
            binaries
                .iter()
                .find(|b| b.package == t.package && b.target == t.name && b.kinds.iter().any(|k| k == t.kind))
                .map(|b| (t, b))
                .ok_or_else(|| anyhow!("cargo built no {} test `{}` of {}", t.kind, t.name, t.package))
        })
        .collect::<Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        for (target, binary) in &targets {
            let mut command = binary.command();
            command.arg("--quiet").env("PROPTEST_CASES", cases.to_string());
            if !target.filter.is_empty() {
                command.arg(target.filter);
            }
            step::run(
                format!(
                    "fuzz round {rounds}: {} {} `{}` {}",
                    target.package, target.kind, target.name, target.filter
                )
                .trim_end(),
                &format!("PROPTEST_CASES={cases}"),
                &mut command,
            )?;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("\n==> fuzz: {rounds} rounds of {cases} cases per property in {seconds} s found nothing");
    Ok(ExitCode::SUCCESS)
}
