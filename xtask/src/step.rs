//! Running one visible step: print the command line, run it with inherited output, check status.
//!
//! Output is never captured: CI reads cargo's own summary lines.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The cargo that runs xtask (set by `cargo run`), so nested builds use the same toolchain.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(crate::project_root());
    command
}

/// Runs `command` as the step called `name`, announcing it on stderr first.
///
/// `env_note` lists the environment set for the step, e.g. `PROPTEST_CASES=256`.
pub(crate) fn run(name: &str, env_note: &str, command: &mut Command) -> Result<()> {
    let program = command.get_program().to_string_lossy();
    // Show `cargo`, not the full path in `$CARGO`.
    let program = program.rsplit('/').next().unwrap_or(&program).to_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let env_prefix = if env_note.is_empty() {
        String::new()
    } else {
        format!("{env_note} ")
    };
    eprintln!("\n==> {name}: {env_prefix}{program} {}", args.join(" "));
    let status = command
        .status()
        .with_context(|| format!("cannot start `{program}` for step `{name}`"))?;
    if !status.success() {
        bail!(
            "step `{name}` failed ({status}): {env_prefix}{program} {}",
            args.join(" ")
        );
    }
    Ok(())
}
