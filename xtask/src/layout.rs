//! `cargo xtask layout`: find the functions a running node executes and write them, in order, to
//! `layout/hot-functions.txt`, the list the release link of `podvisor` and `podvisor-bench` puts
//! first in the executable's code (`crates/podvisor/build.rs`).
//!
//! Why: the kernel reads an executable ahead of its page faults and maps what it has cached
//! around each fault (in large folios), so the node's code was resident wherever it touched a
//! function: 25-30 MB of a 36 MB `.text` at 0 pods, most of the node's memory. The functions it
//! runs fill a few megabytes once they sit together.
//!
//! How:
//! 1. a release build in `target/layout` with every function aligned to a page of its own
//!    (`-C llvm-args=-align-all-functions=12`), so a resident code page names one function;
//! 2. its binary is written back, dropped from the page cache, and read-ahead is turned off on
//!    its block device (restored however the command ends), so a page is resident only if the
//!    node executed code on it;
//! 3. once the node has unmapped what its start-up ran (ten seconds after it starts,
//!    `podvisor_runtime::process::release_start_up_pages`), it takes 110 pods with an HTTP
//!    readiness and a TCP liveness probe (what `node-footprint` measures), the everyday kubectl
//!    commands run against it, then it idles for more than a probe period;
//! 4. the functions on its resident code pages (its `/proc/PID/pagemap`, the binary's symbols
//!    from `nm`), in address order, are the list.
//!
//! Function names carry a hash of their crate's build (its version, features, toolchain), so a
//! list goes stale as those change: names it lists that a build lacks are skipped, and the code
//! they stand for is laid out as if there were no list. Run it again after a toolchain or
//! dependency update; it prints how much of the old list the current code still has. Root only
//! (read-ahead, page map); needs `kubectl`, `nm` and `readelf`.
//!
//! `podvisor-bench` is a subject of its own because node-footprint's node runs in it (its
//! `__node-child`): the generic code that binary instantiates is named after its own build, so
//! a change to the benchmark harness alone can rename some of the node's functions there and
//! stale the list for that binary while `podvisor`'s is unchanged (one such change took the
//! names found from 9,218 to 9,127 and the node's RSS at 20 pods up by 1 MB). node-footprint
//! reports the names found (its "functions laid out first" row): after a harness change, check
//! it, and run this again when it falls.
#![allow(
    clippy::disallowed_methods,
    reason = "xtask is synchronous: no tokio worker to block"
)]

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::flags::Parser;

const HELP: &str = "\
cargo xtask layout: list the functions a running node executes (layout/hot-functions.txt)

USAGE:
    cargo xtask layout

Builds podvisor with every function on a page of its own (target/layout), runs its node cold
with read-ahead off on the binary's block device (restored afterwards), gives it 110 probed
pods (once it has unmapped what its start-up ran) and the everyday kubectl commands, and
writes the functions on its resident code pages to layout/hot-functions.txt. The release link
lays those out first. Root; needs kubectl.
";

/// Where the list lives, from the workspace root (read by `crates/podvisor/build.rs`).
pub(crate) const LIST: &str = "layout/hot-functions.txt";
/// Pods the node takes, as `node-footprint` grows it to.
const PODS: usize = 110;
/// How long after its start the node unmaps its executable's pages
/// (`podvisor_runtime::process::RELEASE_START_UP_PAGES_AFTER`, 10 s), with a margin: the
/// exercise waits for it, so what only start-up ran stays out of the list and what pods use
/// is in it.
const START_UP_RELEASED: Duration = Duration::from_secs(13);
/// Longer than the probes' period (10 s), so every probe's path runs at least twice.
const IDLE: Duration = Duration::from_secs(25);
const PAGE: u64 = 4096;

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    if Parser::new(args, "cargo xtask layout --help").only_help()? {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    if !crate::test::is_root() {
        bail!("cargo xtask layout needs root: it turns read-ahead off and reads the node's page map");
    }
    crate::setup::install(crate::setup::Need::Tests { root: true })?;
    let root = crate::project_root();
    let work = root.join("target/layout");
    let old = read_list(&root.join(LIST));
    // Each binary is built on its own, as its users build it: cargo unifies features per build,
    // and a crate's features are in its functions' names, so the two builds name many of the
    // same functions apart.
    let mut functions = Vec::new();
    let mut seen = HashSet::new();
    let mut pages = 0;
    for subject in [Subject::Podvisor, Subject::Bench] {
        let binary = crate::node::build_package_with(subject.package(), |cargo| {
            cargo
                .env("CARGO_TARGET_DIR", &work)
                .env("RUSTFLAGS", "-C llvm-args=-align-all-functions=12")
                .env("PODVISOR_CODE_LAYOUT", "off");
        })?;
        let binary = binary
            .canonicalize()
            .context("finding the layout build's binary")?;
        let resident = {
            let _read_ahead = ReadAheadOff::on(&binary)?;
            evict(&binary)?;
            let data = work.join("node");
            let _ = std::fs::remove_dir_all(&data);
            std::fs::create_dir_all(&data).context("making the node's data directory")?;
            let started = Instant::now();
            let mut node = Node::start(subject, &binary, &data)?;
            std::thread::sleep(START_UP_RELEASED.saturating_sub(started.elapsed()));
            let found = exercise(&node.kubeconfig, &data, &node)
                .and_then(|()| resident_code_pages(node.id(), &binary));
            node.stop();
            found?
        };
        pages += resident.len();
        for function in functions_on(&binary, &resident)? {
            if seen.insert(function.0.clone()) {
                functions.push(function);
            }
        }
    }
    let bytes: u64 = functions.iter().map(|f| f.1).sum();
    let mut out = String::from(
        "# Functions a running node executes, in address order: the release link puts them first\n\
         # (crates/podvisor/build.rs). Written by `cargo xtask layout`; regenerate after toolchain or\n\
         # dependency updates (names carry a hash of their crate's build).\n",
    );
    for (name, _) in &functions {
        out.push_str(name);
        out.push('\n');
    }
    std::fs::create_dir_all(root.join("layout")).context("making layout/")?;
    std::fs::write(root.join(LIST), out).with_context(|| format!("writing {LIST}"))?;
    let kept = functions.iter().filter(|(name, _)| old.contains(name)).count();
    eprintln!(
        "==> layout: {pages} resident code pages in the two runs; {} functions, {:.1} MB, written \
         to {LIST} ({kept} of them were in the list before, which had {})",
        functions.len(),
        bytes as f64 / 1e6,
        old.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A binary that runs the node.
#[derive(Clone, Copy)]
enum Subject {
    /// `podvisor node`, stopped with SIGINT.
    Podvisor,
    /// `podvisor-bench __node-child`, node-footprint's node, stopped by closing its stdin.
    Bench,
}

impl Subject {
    fn package(self) -> &'static str {
        match self {
            Subject::Podvisor => "podvisor",
            Subject::Bench => "podvisor-bench",
        }
    }
}

/// The names in a list file (comments and blank lines skipped, as the linker reads it).
fn read_list(path: &Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Read-ahead turned off on the block device holding a file, and restored on drop.
struct ReadAheadOff {
    knob: PathBuf,
    was: String,
}

impl ReadAheadOff {
    fn on(file: &Path) -> Result<Self> {
        let dev = std::fs::metadata(file)
            .context("reading the binary's metadata")?
            .dev();
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let device = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        let device = device.canonicalize().with_context(|| {
            format!(
                "{} is not on a block device's file system ({} missing): read-ahead cannot be turned off",
                file.display(),
                device.display()
            )
        })?;
        // A partition has no queue of its own; its disk (the parent directory) has.
        let knob = [
            device.join("queue/read_ahead_kb"),
            device.join("../queue/read_ahead_kb"),
        ]
        .into_iter()
        .find(|knob| knob.exists())
        .with_context(|| format!("no read_ahead_kb for {}", device.display()))?;
        let was = std::fs::read_to_string(&knob)
            .with_context(|| format!("reading {}", knob.display()))?
            .trim()
            .to_owned();
        std::fs::write(&knob, "0").with_context(|| format!("writing {}", knob.display()))?;
        eprintln!("==> layout: read-ahead off on {} (was {was} KiB)", knob.display());
        Ok(Self { knob, was })
    }
}

impl Drop for ReadAheadOff {
    fn drop(&mut self) {
        match std::fs::write(&self.knob, &self.was) {
            Ok(()) => eprintln!("==> layout: read-ahead back to {} KiB", self.was),
            Err(e) => eprintln!(
                "error: could not restore {} to {}: {e}; write it by hand",
                self.knob.display(),
                self.was
            ),
        }
    }
}

/// Writes `file` back and drops its pages from the page cache.
fn evict(file: &Path) -> Result<()> {
    let f = std::fs::File::open(file).context("opening the binary")?;
    f.sync_all().context("writing the binary back")?;
    nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .context("dropping the binary from the page cache")?;
    Ok(())
}

/// The layout build's node, stopped gracefully on [`Node::stop`] (then killed).
struct Node {
    child: Child,
    subject: Subject,
    kubeconfig: PathBuf,
}

impl Node {
    fn start(subject: Subject, binary: &Path, data: &Path) -> Result<Self> {
        let log = std::fs::File::create(data.with_extension("log")).context("the node's log")?;
        let mut command = Command::new(binary);
        let kubeconfig = match subject {
            Subject::Podvisor => {
                let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                command
                    .args(["node", "--data-dir"])
                    .arg(data)
                    .args(["--listen", &format!("127.0.0.1:{port}")]);
                data.join("kubeconfig")
            }
            Subject::Bench => {
                // DATA_DIR, place number, room for pods (crates/bench/src/node_footprint.rs).
                command.arg("__node-child").arg(data).args(["7", "1000"]);
                data.join("node/kubeconfig")
            }
        };
        let child = command
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the node")?;
        let mut node = Self {
            child,
            subject,
            kubeconfig,
        };
        // Cold and without read-ahead, every page of code is a read from the disk.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !node.kubeconfig.exists() {
            if Instant::now() > deadline {
                node.stop();
                bail!(
                    "the node wrote no kubeconfig within 120 s (see {})",
                    data.with_extension("log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(node)
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        match self.subject {
            Subject::Podvisor => {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            }
            Subject::Bench => drop(self.child.stdin.take()),
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pods with probes against a local HTTP server, then the everyday kubectl commands, then idle.
fn exercise(kubeconfig: &Path, data: &Path, node: &Node) -> Result<()> {
    let target = TcpListener::bind("127.0.0.1:0").context("the probes' target")?;
    let port = target.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in target.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let mut manifest = String::new();
    for i in 0..PODS {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: layout-{i}, labels: {{app: layout}}}}\n\
             spec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: host\n\
             \x20   command: [sh, -c, 'echo started; exec sleep 3600']\n\
             \x20   readinessProbe: {{httpGet: {{host: 127.0.0.1, port: {port}, path: /}}, periodSeconds: 10}}\n\
             \x20   livenessProbe: {{tcpSocket: {{host: 127.0.0.1, port: {port}}}, periodSeconds: 10}}\n"
        ));
    }
    manifest.push_str(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: layout}\n\
         spec: {selector: {app: layout}, ports: [{port: 80}]}\n",
    );
    let manifest_path = data.with_extension("yaml");
    std::fs::write(&manifest_path, manifest).context("writing the manifest")?;
    let kubectl = |args: &[&str]| -> Result<()> {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args(args)
            .output()
            .context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let manifest = manifest_path.to_string_lossy();
    eprintln!("==> layout: {PODS} probed pods on node {}", node.id());
    // The namespace's ServiceAccount, which pods are admitted with, comes a moment after the API.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = kubectl(&["apply", "-f", &manifest]) {
        if Instant::now() > deadline {
            return Err(e);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=layout",
        "--timeout=600s",
    ])?;
    for args in [
        &["get", "pods", "-o", "wide"][..],
        &["get", "endpointslices,endpoints,services"],
        &["describe", "pod", "layout-0"],
        &["logs", "layout-0"],
        &["exec", "layout-0", "--", "true"],
        &["get", "events"],
        &["delete", "pod", "layout-1", "--wait"],
    ] {
        kubectl(args)?;
    }
    eprintln!("==> layout: idle for {} s", IDLE.as_secs());
    std::thread::sleep(IDLE);
    Ok(())
}

/// The ELF addresses of the code pages of `binary` that process `pid` has resident.
fn resident_code_pages(pid: u32, binary: &Path) -> Result<BTreeSet<u64>> {
    let segments = load_segments(binary)?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("reading the node's maps")?;
    let mut pagemap =
        std::fs::File::open(format!("/proc/{pid}/pagemap")).context("opening the node's pagemap")?;
    let mut pages = BTreeSet::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || Path::new(fields[5]) != binary || !fields[1].contains('x') {
            continue;
        }
        let (start, end) = fields[0].split_once('-').context("a maps line")?;
        let start = u64::from_str_radix(start, 16)?;
        let end = u64::from_str_radix(end, 16)?;
        let offset = u64::from_str_radix(fields[2], 16)?;
        let (file_offset, vaddr) = segments
            .iter()
            .copied()
            .filter(|&(file_offset, _)| file_offset / PAGE * PAGE <= offset)
            .max()
            .context("no load segment for the code mapping")?;
        let count = (end - start) / PAGE;
        let mut entries = vec![0u8; usize::try_from(count * 8)?];
        pagemap.seek(SeekFrom::Start(start / PAGE * 8))?;
        pagemap
            .read_exact(&mut entries)
            .context("reading the node's pagemap")?;
        for (i, entry) in entries.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(entry.try_into()?);
            if entry >> 63 == 1 {
                pages.insert(offset + i as u64 * PAGE + vaddr - file_offset);
            }
        }
    }
    if pages.is_empty() {
        bail!("the node has no resident code pages of {}", binary.display());
    }
    Ok(pages)
}

/// The (file offset, virtual address) of each loadable segment, from `readelf -lW`.
fn load_segments(binary: &Path) -> Result<Vec<(u64, u64)>> {
    let out = Command::new("readelf")
        .arg("-lW")
        .arg(binary)
        .output()
        .context("running readelf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let segments: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&"LOAD")).then_some(())?;
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            Some((hex(fields.get(1)?)?, hex(fields.get(2)?)?))
        })
        .collect();
    if segments.is_empty() {
        bail!("readelf found no load segments in {}", binary.display());
    }
    Ok(segments)
}

/// The functions (name, size) of `binary` with code on one of `pages`, in address order.
fn functions_on(binary: &Path, pages: &BTreeSet<u64>) -> Result<Vec<(String, u64)>> {
    let mut nm = Command::new("nm")
        .args(["-S", "--defined-only", "-n"])
        .arg(binary)
        .stdout(Stdio::piped())
        .spawn()
        .context("running nm")?;
    let mut functions = Vec::new();
    let mut seen = HashSet::new();
    for line in BufReader::new(nm.stdout.take().context("nm's output")?).lines() {
        let line = line?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, size, kind, name] = fields[..] else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            continue;
        }
        let (Ok(address), Ok(size)) = (u64::from_str_radix(address, 16), u64::from_str_radix(size, 16))
        else {
            continue;
        };
        let first = address / PAGE * PAGE;
        if size > 0 && pages.range(first..address + size).next().is_some() && seen.insert(name.to_owned()) {
            functions.push((name.to_owned(), size));
        }
    }
    if !nm.wait()?.success() {
        bail!("nm failed on {}", binary.display());
    }
    Ok(functions)
}
