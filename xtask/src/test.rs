//! `cargo xtask test`: the project's one test command.
//!
//! From the workspace root it runs, stopping at the first failure:
//!
//! 1. `cargo test --workspace --all-targets`, with `PROPTEST_CASES=256` unless already set;
//!    this includes xtask's tidy tests (repository policy);
//! 2. `cargo test --workspace --doc`;
//! 3. `cargo doc --workspace --no-deps` with `-D warnings` added to `RUSTDOCFLAGS`.
//!
//! Set-up steps (installing kubectl and the like) go in [`set_up`], which runs first.

use std::process::ExitCode;

use anyhow::Result;

use crate::flags::Parser;
use crate::step;

const HELP: &str = "\
cargo xtask test: run every test, doctest and a warnings-free doc build

USAGE:
    cargo xtask test

Runs, from the workspace root, stopping at the first failure:
    1. cargo test --workspace --all-targets   (PROPTEST_CASES defaults to 256)
    2. cargo test --workspace --doc
    3. cargo doc --workspace --no-deps        (RUSTDOCFLAGS gains -D warnings)

ENVIRONMENT:
    PROPTEST_CASES   proptest cases per property (default 256)
    RUSTDOCFLAGS     extra rustdoc flags; -D warnings is appended for step 3

OPTIONS:
    -h, --help       Print this message
";

/// How many cases each proptest property runs when the user has not set `PROPTEST_CASES`.
const DEFAULT_PROPTEST_CASES: &str = "256";

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    if Parser::new(args, "cargo xtask test --help").only_help()? {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    run_all()?;
    Ok(ExitCode::SUCCESS)
}

/// Runs every step; shared with `cargo xtask ci`.
pub(crate) fn run_all() -> Result<()> {
    set_up()?;

    let mut tests = step::cargo();
    tests.args(["test", "--workspace", "--all-targets"]);
    let proptest_note = match std::env::var("PROPTEST_CASES") {
        Ok(cases) => format!("PROPTEST_CASES={cases}"),
        Err(_) => {
            tests.env("PROPTEST_CASES", DEFAULT_PROPTEST_CASES);
            format!("PROPTEST_CASES={DEFAULT_PROPTEST_CASES}")
        }
    };
    step::run(
        "test [1/3] unit, integration and tidy tests",
        &proptest_note,
        &mut tests,
    )?;

    let mut doctests = step::cargo();
    doctests.args(["test", "--workspace", "--doc"]);
    step::run("test [2/3] doctests", "", &mut doctests)?;

    let rustdocflags = match std::env::var("RUSTDOCFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_owned(),
    };
    let mut docs = step::cargo();
    docs.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", &rustdocflags);
    step::run(
        "test [3/3] docs build without warnings",
        &format!("RUSTDOCFLAGS='{rustdocflags}'"),
        &mut docs,
    )?;

    eprintln!("\n==> test: all steps passed");
    Ok(())
}

/// Prepares what the tests need beyond the Rust toolchain.
///
/// Nothing yet. Later issues add steps here (installing a pinned kubectl for the end-to-end
/// tests, for example); each must be idempotent, announce itself, and work as root on a fresh
/// clone, since `.ci/run` runs it that way.
fn set_up() -> Result<()> {
    Ok(())
}
