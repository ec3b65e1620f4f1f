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
/// Installs what the end-to-end tests need besides the Rust toolchain: `kubectl` (from
/// Debian's `kubernetes-client` package) when it is missing and the machine can install it
/// (root with apt-get). Idempotent; without it the kubectl tests say they were skipped.
fn set_up() -> Result<()> {
    let has = |program: &str| {
        std::process::Command::new(program)
            .arg("version")
            .arg("--client")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // `nft` programs the Service datapath (podvisor-proxy); without it Service traffic is not
    // proxied and the datapath tests skip.
    let has_nft =
        std::path::Path::new("/usr/sbin/nft").exists() || std::path::Path::new("/sbin/nft").exists();
    let mut packages = Vec::new();
    if !has("kubectl") {
        packages.push("kubernetes-client");
    }
    if !has_nft {
        packages.push("nftables");
    }
    if packages.is_empty() {
        return Ok(());
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let apt = std::path::Path::new("/usr/bin/apt-get").exists();
    if !(root && apt) {
        eprintln!(
            "==> set-up: kubectl not found and cannot be installed here (needs root and apt-get); kubectl tests will be skipped"
        );
        return Ok(());
    }
    eprintln!("==> set-up: installing Debian packages {}", packages.join(" "));
    let quiet = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(quiet(&["update", "-qq"])
        && quiet(&[&["install", "-y", "-qq"][..], &packages].concat())
        && has("kubectl"))
    {
        eprintln!("==> set-up: installing kubectl failed; kubectl tests will be skipped");
    }
    Ok(())
}
