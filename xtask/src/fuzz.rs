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

use anyhow::Result;

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

/// (package, cargo test arguments) of each target.
const TARGETS: [(&str, &[&str]); 2] = [
    ("podvisor-apiserver", &["--test", "never_panic"]),
    ("podvisor-api", &["--lib", "never_panics"]),
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
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        for (package, target) in TARGETS {
            let mut command = step::cargo();
            command
                .args(["test", "--quiet", "-p", package])
                .args(target)
                .env("PROPTEST_CASES", cases.to_string());
            step::run(
                &format!("fuzz round {rounds}: {package} {}", target.join(" ")),
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
