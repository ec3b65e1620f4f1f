//! Running one visible step: print the command line, run it with inherited output, check status;
//! and finding the test executables of the workspace's build.
//!
//! Output is never captured: CI reads cargo's own summary lines.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// A test executable cargo built: its package, its target, and the directory it runs in.
pub(crate) struct TestBinary {
    pub(crate) path: PathBuf,
    pub(crate) package: String,
    /// The target's name (`never_panic` for `tests/never_panic.rs`; the crate's for its lib).
    pub(crate) target: String,
    /// The target's kinds, as cargo names them (`lib`, `test`, `bin`, ...).
    pub(crate) kinds: Vec<String>,
    pub(crate) package_dir: PathBuf,
}

impl TestBinary {
    /// A command that runs this executable as `cargo test` would: in its package's directory,
    /// with `CARGO_MANIFEST_DIR` set.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command.envs(self.environment()).current_dir(&self.package_dir);
        command
    }

    /// What `cargo test` sets for the executable (its package's `CARGO_MANIFEST_DIR`), for a
    /// wrapper that starts it with an environment of its own (`runuser ... env`).
    pub(crate) fn environment(&self) -> [(&'static str, &Path); 1] {
        [("CARGO_MANIFEST_DIR", self.package_dir.as_path())]
    }

    /// The executable's file name, as a step's name.
    pub(crate) fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Every test executable of `cargo test --workspace --all-targets`, built first when needed.
///
/// Always the whole workspace: cargo unifies the dependencies' features over the packages it
/// builds, so `cargo test -p one` would build everything again with other features (twice the
/// build's time and disk) instead of running what the suite's build made.
pub(crate) fn workspace_test_binaries() -> Result<Vec<TestBinary>> {
    let names = package_names()?;
    let out = cargo()
        .args([
            "test",
            "--workspace",
            "--all-targets",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        // Cargo's progress and errors show as they come (a first build takes minutes); the
        // JSON messages on stdout are read.
        .stderr(Stdio::inherit())
        .output()
        .context("cannot build the test binaries")?;
    if !out.status.success() {
        bail!("building the test binaries failed (cargo's errors are above)");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(path), Some(manifest), Some(id)) = (
            message.get("executable").and_then(|e| e.as_str()),
            message.get("manifest_path").and_then(|m| m.as_str()),
            message.get("package_id").and_then(|i| i.as_str()),
        ) else {
            continue;
        };
        let Some(package) = names.get(id) else {
            bail!("cargo built a test of package `{id}`, which `cargo metadata` does not list");
        };
        let target = &message["target"];
        binaries.push(TestBinary {
            path: PathBuf::from(path),
            package: package.clone(),
            target: target["name"].as_str().unwrap_or_default().to_owned(),
            kinds: target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            package_dir: Path::new(manifest)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        });
    }
    if binaries.is_empty() {
        bail!("cargo built no test binaries");
    }
    Ok(binaries)
}

/// The workspace's package names by package id, from `cargo metadata`.
fn package_names() -> Result<HashMap<String, String>> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    Ok(metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?.to_owned(), p["name"].as_str()?.to_owned())))
        .collect())
}
