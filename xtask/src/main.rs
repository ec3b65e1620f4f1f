//! `cargo xtask`: podvisor's developer commands, in the style of
//! [matklad/cargo-xtask](https://github.com/matklad/cargo-xtask).
//!
//! xtask is project automation that bootstraps from cargo alone: `cargo xtask <command>` (an alias
//! in `.cargo/config.toml`) builds and runs this binary. Each subcommand lives in its own module
//! and runs from the workspace root, whatever the current directory:
//!
//! - [`test`](mod@test): the project's one test command (`cargo xtask test`);
//! - [`ci`]: what `.ci/run` runs: formatting, clippy, then `test`;
//! - [`node`]: builds the `podvisor` binary with optimizations and runs `podvisor node` (the
//!   runtime, kubelet, API server, store and Services) in the foreground;
//! - [`bench`](mod@bench): builds the benchmark harness in release mode and runs it;
//! - [`fuzz`]: runs the never-panic property tests of every input parser for a time budget;
//! - [`soak`]: soaks a release node (10,000 pods, 1,000 connections, 500 watches).
//! - [`layout`]: lists the functions a running node executes, which the release link of the
//!   node's binaries lays out first (`layout/hot-functions.txt`).
//!
//! Repository policy (doc comments, dependency direction, manifest rules) is checked by the
//! `#[test]`s in `tidy.rs`, so plain `cargo test` enforces it and CI needs nothing extra.
//!
//! Keep this crate's dependencies few: it is built before anything else can run. Arguments are
//! parsed by the small hand-rolled parser in [`flags`]; switch to clap (with `derive`) once the
//! commands grow real option sets.
//!
//! Exit codes: 0 on success, 1 when a step fails, 2 on a usage error.
#![forbid(unsafe_code)]

mod bench;
mod ci;
mod flags;
mod fuzz;
mod layout;
mod machine;
mod node;
mod setup;
mod soak;
mod step;
mod test;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use flags::UsageError;

const HELP: &str = "\
cargo xtask: podvisor's developer commands

USAGE:
    cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
    test     Run every test, doctest and a warnings-free doc build (the project's one test command)
    ci       Run what CI runs: cargo fmt --check, clippy -D warnings, then `test`
    node     Build the podvisor binary (release) and run `podvisor node` with the given flags
    bench    Run the benchmarks against floors measured in the same run (--quick, --json FILE)
    fuzz     Run the never-panic property tests of every input parser for a time budget
    soak     Soak a release node with pods, connections, watches and big objects (root)
    setup    Install what building and testing need (protoc, kubectl, etcd, nftables)
    layout   List the functions a running node executes, for the release link's code order (root)
    help     Print this message

Run `cargo xtask <COMMAND> --help` for a command's options.

EXIT CODES:
    0  success
    1  a step failed (its output says which)
    2  usage error
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("test") => test::run(rest),
        Some("ci") => ci::run(rest),
        Some("node") => node::run(rest),
        Some("bench") => bench::run(rest),
        Some("fuzz") => fuzz::run(rest),
        Some("soak") => soak::run(rest),
        Some("setup") => setup::run(rest),
        Some("layout") => layout::run(rest),
        Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprint!("{HELP}");
            Ok(ExitCode::from(2))
        }
        Some(other) => {
            Err(UsageError::new(format!("unknown command `{other}`"), "cargo xtask --help").into())
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            if let Some(usage) = error.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
                return ExitCode::from(2);
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map(PathBuf::from).unwrap_or(xtask_dir)
}
