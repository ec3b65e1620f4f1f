//! `cargo xtask ci`: everything CI checks, in order; `.ci/run` calls this.
//!
//! `cargo fmt --all --check`, then `cargo clippy --workspace --all-targets -- -D warnings`, then
//! the steps of `cargo xtask test`. Stops at the first failure.

use std::process::ExitCode;

use anyhow::Result;

use crate::flags::Parser;
use crate::{step, test};

const HELP: &str = "\
cargo xtask ci: run what CI runs (`.ci/run` calls this)

USAGE:
    cargo xtask ci

Runs, from the workspace root, stopping at the first failure:
    1. cargo fmt --all --check
    2. cargo clippy --workspace --all-targets -- -D warnings
    3. cargo xtask test   (see `cargo xtask test --help`)

OPTIONS:
    -h, --help   Print this message
";

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    if Parser::new(args, "cargo xtask ci --help").only_help()? {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }

    crate::setup::install(crate::setup::Need::Tests {
        root: crate::test::is_root(),
    })?;
    let mut fmt = step::cargo();
    fmt.args(["fmt", "--all", "--check"]);
    step::run("ci: formatting", "", &mut fmt)?;

    let mut clippy = step::cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    step::run("ci: clippy", "", &mut clippy)?;

    test::run_all()?;
    eprintln!("\n==> ci: all checks passed");
    Ok(ExitCode::SUCCESS)
}
