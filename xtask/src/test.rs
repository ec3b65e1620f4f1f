//! `cargo xtask test`: the project's one test command.
//!
//! From the workspace root it runs, stopping at the first failure:
//!
//! 1. set-up ([`crate::setup`]): installs what the suite needs besides the Rust toolchain
//!    (`protoc`, `kubectl`, `etcd`, and as root `nftables`); it fails when it cannot;
//! 2. `cargo test --workspace --all-targets`, with `PROPTEST_CASES=256` unless already set; this
//!    includes xtask's tidy tests (repository policy);
//! 3. as root, the tests marked `#[ignore = "needs root"]` (`-- --ignored`): sandboxes, mounts,
//!    cgroup limits, the nftables datapath, the Service demos. Without root they are listed as
//!    not run, and under `CI=true` that is a failure;
//! 4. as root, the unprivileged pass: the node, runtime, kubelet and proxy test binaries run
//!    again as the unprivileged user `podvisor-test`, so the node a user without root gets is
//!    tested too (host network, no cgroups, the userspace NodePort proxy);
//! 5. `cargo test --workspace --doc`;
//! 6. `cargo doc --workspace --no-deps` with `-D warnings` added to `RUSTDOCFLAGS`;
//!
//! then prints what ran and what did not, with the reasons, and checks that the run left the
//! machine as it found it ([`crate::machine`]): no podvisor cgroup, interface, network namespace,
//! nftables table or orphaned process.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::flags::Parser;
use crate::machine::Snapshot;
use crate::step;

const HELP: &str = "\
cargo xtask test: run every test, doctest and a warnings-free doc build

USAGE:
    cargo xtask test

Runs, from the workspace root, stopping at the first failure:
    1. set-up: installs protoc, kubectl, etcd (and, as root, nftables) when missing; fails if
       it cannot (see `cargo xtask setup --help`)
    2. cargo test --workspace --all-targets   (PROPTEST_CASES defaults to 256)
    3. as root: the `#[ignore = \"needs root\"]` tests (cargo test ... -- --ignored)
    4. as root: the node, runtime, kubelet and proxy tests again as the unprivileged user
       `podvisor-test` (created if missing)
    5. cargo test --workspace --doc
    6. cargo doc --workspace --no-deps        (RUSTDOCFLAGS gains -D warnings)
then prints a summary of what ran and what was skipped, and fails if the run left podvisor
cgroups, interfaces, network namespaces, nftables tables or orphaned processes behind.

ENVIRONMENT:
    PROPTEST_CASES   proptest cases per property (default 256)
    RUSTDOCFLAGS     extra rustdoc flags; -D warnings is appended for step 6
    CI               when `true`, tests that cannot run here fail the run instead of being listed

OPTIONS:
    -h, --help       Print this message
";

/// How many cases each proptest property runs when the user has not set `PROPTEST_CASES`.
const DEFAULT_PROPTEST_CASES: &str = "256";

/// The unprivileged user of step 4.
const TEST_USER: &str = "podvisor-test";

/// The packages whose tests run again without root in step 4: everything that behaves
/// differently without root.
const UNPRIVILEGED_PACKAGES: [&str; 4] = [
    "podvisor-node",
    "podvisor-runtime",
    "podvisor-kubelet",
    "podvisor-proxy",
];

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    if Parser::new(args, "cargo xtask test --help").only_help()? {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    run_all()?;
    Ok(ExitCode::SUCCESS)
}

/// Every step; shared with `cargo xtask ci`.
pub(crate) fn run_all() -> Result<()> {
    let before = Snapshot::take_as_reaper();
    let root = is_root();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    crate::setup::install(crate::setup::Need::Tests { root })?;
    let mut summary = Summary::default();

    let proptest_cases =
        std::env::var("PROPTEST_CASES").unwrap_or_else(|_| DEFAULT_PROPTEST_CASES.to_owned());
    let proptest_note = format!("PROPTEST_CASES={proptest_cases}");
    let mut tests = step::cargo();
    tests
        .args(["test", "--workspace", "--all-targets"])
        .env("PROPTEST_CASES", &proptest_cases);
    step::run(
        "test [1/5] unit, integration and tidy tests",
        &proptest_note,
        &mut tests,
    )?;
    summary.ran("unit, integration and tidy tests");

    if root {
        let mut privileged = step::cargo();
        privileged
            .args(["test", "--workspace", "--all-targets", "--", "--ignored"])
            .env("PROPTEST_CASES", &proptest_cases);
        step::run("test [2/5] tests that need root", "", &mut privileged)?;
        summary.ran("tests that need root (`#[ignore = \"needs root\"]`)");

        unprivileged_pass()?;
        summary.ran(&format!(
            "node, runtime, kubelet and proxy tests as `{TEST_USER}` (no root)"
        ));
    } else {
        let names = ignored_tests()?;
        summary.skip(&format!(
            "{} tests that need root (run `cargo xtask test` as root): {}",
            names.len(),
            names.join(", ")
        ));
        summary.skip("the unprivileged pass (it needs root to switch to its user)");
    }

    let mut doctests = step::cargo();
    doctests.args(["test", "--workspace", "--doc"]);
    step::run("test [4/5] doctests", "", &mut doctests)?;
    summary.ran("doctests");

    let rustdocflags = match std::env::var("RUSTDOCFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_owned(),
    };
    let mut docs = step::cargo();
    docs.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", &rustdocflags);
    step::run(
        "test [5/5] docs build without warnings",
        &format!("RUSTDOCFLAGS='{rustdocflags}'"),
        &mut docs,
    )?;
    summary.ran("docs build without warnings");

    let leftovers = before.leftovers(Duration::from_secs(10));
    summary.print();
    if !leftovers.is_empty() {
        bail!(
            "the tests left these behind (each test must leave the machine as it found it):\n  {}",
            leftovers.join("\n  ")
        );
    }
    if ci && !summary.skipped.is_empty() {
        bail!("CI=true: every test must run; see `not run` above for why some could not");
    }
    eprintln!("\n==> test: all steps passed; the machine is as it was");
    Ok(())
}

/// What ran and what did not, printed at the end.
#[derive(Default)]
struct Summary {
    ran: Vec<String>,
    skipped: Vec<String>,
}

impl Summary {
    fn ran(&mut self, what: &str) {
        self.ran.push(what.to_owned());
    }

    fn skip(&mut self, why: &str) {
        self.skipped.push(why.to_owned());
    }

    fn print(&self) {
        eprintln!("\n==> test: summary");
        for what in &self.ran {
            eprintln!("    ran      {what}");
        }
        for why in &self.skipped {
            eprintln!("    not run  {why}");
        }
    }
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The names of the ignored tests (every one is `needs root`), from libtest's `--list --ignored`.
fn ignored_tests() -> Result<Vec<String>> {
    let out = step::cargo()
        .args([
            "test",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "--list",
            "--ignored",
        ])
        .output()
        .context("cannot list the ignored tests")?;
    if !out.status.success() {
        bail!(
            "listing the ignored tests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

/// Step 4: the test binaries of [`UNPRIVILEGED_PACKAGES`] run as [`TEST_USER`].
fn unprivileged_pass() -> Result<()> {
    eprintln!("\n==> test [3/5] node, runtime, kubelet and proxy tests as `{TEST_USER}` (no root)");
    let home = ensure_user()?;
    let binaries: Vec<_> = step::workspace_test_binaries()?
        .into_iter()
        .filter(|b| UNPRIVILEGED_PACKAGES.contains(&b.package.as_str()))
        .collect();
    if binaries.is_empty() {
        bail!(
            "cargo built no test binaries for {}",
            UNPRIVILEGED_PACKAGES.join(", ")
        );
    }
    let root = crate::project_root();
    open_path_for_others(&root)?;
    for binary in binaries {
        let mut command = Command::new("runuser");
        command
            .args(["-u", TEST_USER, "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .args(binary.environment().map(|(k, v)| format!("{k}={}", v.display())))
            .arg("TMPDIR=/tmp")
            .arg(&binary.path)
            .current_dir(&binary.package_dir);
        step::run(
            &format!("unprivileged: {}", binary.name()),
            &format!("user={TEST_USER}"),
            &mut command,
        )?;
    }
    Ok(())
}

/// Creates the unprivileged test user when missing; returns its home directory.
fn ensure_user() -> Result<PathBuf> {
    let home = PathBuf::from("/var/lib").join(TEST_USER);
    if !crate::setup::runs("id", &["-u", TEST_USER]) {
        let status = Command::new("useradd")
            .args(["--system", "--create-home", "--home-dir"])
            .arg(&home)
            .args(["--shell", "/usr/sbin/nologin", TEST_USER])
            .status()
            .context("cannot run useradd")?;
        if !status.success() {
            bail!("useradd {TEST_USER} failed ({status})");
        }
    }
    std::fs::create_dir_all(&home)?;
    let status = Command::new("chown")
        .arg(format!("{TEST_USER}:"))
        .arg(&home)
        .status()?;
    if !status.success() {
        bail!("chown of {} failed", home.display());
    }
    Ok(home)
}

/// Lets other users reach `dir`: adds the search (x) bit for others on `dir` and each of its
/// ancestors that lacks it (listing stays as it was), saying which it changed.
fn open_path_for_others(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors() {
        let meta =
            std::fs::metadata(ancestor).with_context(|| format!("cannot read {}", ancestor.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))
                .with_context(|| format!("cannot open {} to others", ancestor.display()))?;
            eprintln!(
                "==> unprivileged pass: added o+x to {} so `{TEST_USER}` can reach the tests",
                ancestor.display()
            );
        }
    }
    Ok(())
}
