//! `cargo xtask soak`: the whole-node soak (`crates/podvisor/tests/soak.rs`) at full size,
//! against the release `podvisor` binary that `cargo xtask node` runs.
//!
//! 10,000 pods created and deleted in batches, 1,000 idle connections, 500 watches that never
//! read and ten 1 MiB objects; `/readyz` within a second throughout; memory under 256 MB, and
//! afterwards within 2x of the start plus the store's page cache, no more descriptors, every write readable, no cgroup, veth or
//! IP left. Needs root (pod sandboxes). `cargo xtask test` runs the same test smaller.

use std::process::ExitCode;

use anyhow::Result;

use crate::flags::{Arg, Parser};
use crate::step;

const HELP: &str = "\
cargo xtask soak: soak a release node with pods, connections, watches and big objects (root)

USAGE:
    cargo xtask soak [--pods N] [--connections N] [--watches N]

OPTIONS:
    --pods N          Pods created and deleted, in batches of 20 [default: 10000]
    --connections N   Idle connections held at once [default: 1000]
    --watches N       Watches that never read, held at once [default: 500]
    -h, --help        Print this message
";

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let mut parser = Parser::new(args, "cargo xtask soak --help");
    let mut counts = [("pods", 10_000u64), ("connections", 1000), ("watches", 500)];
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) if flag == "help" => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            Arg::Flag(flag) => {
                let Some(slot) = counts.iter_mut().find(|(name, _)| *name == flag) else {
                    return Err(parser.unknown_flag().into());
                };
                let value = parser.value()?;
                slot.1 =
                    value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        parser.error(format!("`--{flag} {value}` is not a positive number"))
                    })?;
            }
            Arg::Positional(arg) => {
                return Err(parser.error(format!("unexpected argument `{arg}`")).into());
            }
        }
    }
    let binary = crate::node::build()?;
    let mut command = step::cargo();
    command
        .args([
            "test",
            "-p",
            "podvisor",
            "--test",
            "soak",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .env("PODVISOR_SOAK_BINARY", &binary);
    let mut note = format!("PODVISOR_SOAK_BINARY={}", binary.display());
    for (name, n) in counts {
        let var = format!("PODVISOR_SOAK_{}", name.to_uppercase());
        note.push_str(&format!(" {var}={n}"));
        command.env(var, n.to_string());
    }
    step::run("soak", &note, &mut command)?;
    Ok(ExitCode::SUCCESS)
}
