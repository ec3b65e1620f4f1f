//! Peers, side by side: supervisord and pm2 when they are on `PATH` (never installed by the
//! harness; when absent, a note says how to install them). Each runs in its own temporary
//! home, supervising `sleep 3600` programs:
//!
//! - burst: 100 programs (beside `burst-110`) or 1,000 (beside `burst-1000`) started with one
//!   command (`supervisorctl start all`, `pm2 start` of an ecosystem file) until the command
//!   returns with all of them running (`startsecs=0` for supervisord); the command-line tool's
//!   own start-up is included, as a user pays it; then the daemon's resident memory (VmRSS)
//!   with them all running, beside `node-footprint`'s node RSS;
//! - crash-restart: one program killed with SIGKILL until the peer's daemon has a new `sleep`
//!   child (seen in `/proc`, polled every millisecond).
#![allow(
    clippy::disallowed_methods,
    reason = "the peers are driven from plain threads, not tokio workers"
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::stats::{Goal, Percentiles, Row};

/// How many programs the peers start beside a burst benchmark of `pods`: 100 (issue 6's figure)
/// beside `burst-110`, as many as its pods beside `burst-1000` (1,000 in a full run).
fn programs(bench: &str, pods: usize) -> usize {
    if bench == "burst-1000" { pods } else { 100 }
}

/// One measurement of a peer.
struct Measured {
    metric: String,
    unit: &'static str,
    value: Percentiles,
}

impl Measured {
    fn time(metric: String, samples: &[Duration]) -> Option<Measured> {
        Some(Measured {
            metric,
            unit: "ms",
            value: Percentiles::of_durations_ms(samples)?,
        })
    }

    /// The daemon `pid`'s VmRSS with `programs` programs running.
    fn rss(pid: u32, programs: usize) -> Option<Measured> {
        let kb = crate::footprint::rss_kb(&pid.to_string()).ok()?;
        Some(Measured {
            metric: format!("daemon RSS, {programs} programs running"),
            unit: "MB",
            value: Percentiles::single(kb / 1024.0),
        })
    }
}

/// Whether `program` is an executable file on `PATH`. It is looked up, not run: `pm2 --version`
/// starts pm2's daemon in the user's own `~/.pm2`, which would outlive the run.
fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// One note per missing peer, with how to install it.
pub(crate) fn notes() -> Vec<String> {
    [("supervisord", "pip install supervisor"), ("pm2", "npm i -g pm2")]
        .iter()
        .filter(|(peer, _)| !installed(peer))
        .map(|(peer, install)| format!("peer {peer}: not installed, skipped (install with `{install}`)"))
        .collect()
}

/// The peers' rows for `bench` (`burst-110`, `burst-1000` of `pods` pods, or `crash-restart`),
/// `n` crash samples each.
pub(crate) fn rows(bench: &str, pods: usize, n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let burst = bench.starts_with("burst-");
    let programs = programs(bench, pods);
    for peer in ["supervisord", "pm2"] {
        if !installed(peer) {
            continue;
        }
        let measured = match (peer, burst) {
            ("supervisord", true) => Supervisord::start(programs).and_then(|s| s.burst(programs)),
            ("supervisord", false) => Supervisord::start(1).and_then(|s| s.crashes(n)),
            (_, true) => Pm2::start().and_then(|p| p.burst(programs)),
            (_, false) => Pm2::start().and_then(|p| p.crashes(n)),
        };
        match measured {
            Ok(measured) => rows.extend(measured.into_iter().flatten().map(|m| Row {
                bench: bench.into(),
                metric: format!("peer {peer}: {}", m.metric),
                unit: m.unit,
                value: m.value,
                floor: None,
                goal: Goal::None,
                note: None,
            })),
            Err(e) => eprintln!("    peer {peer} failed: {e:#}"),
        }
    }
    rows
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running a peer command")?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `sleep` children of `parent`, from /proc.
fn sleep_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        let name = stat
            .split_once('(')
            .map_or("", |(_, rest)| &rest[..rest.rfind(')').unwrap_or(0)]);
        let ppid = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        let alive = stat[close + 2..].split(' ').next() != Some("Z");
        if ppid == Some(parent) && name == "sleep" && alive {
            out.push(pid);
        }
    }
    out
}

/// Kills the first `sleep` child of `parent` `n` times and measures until a new one exists.
fn crash_loop(parent: u32, n: usize) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let deadline = Instant::now() + Duration::from_secs(20);
        let victim = loop {
            if let Some(pid) = sleep_children(parent).first() {
                break *pid;
            }
            if Instant::now() > deadline {
                bail!("the peer never started its program");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let start = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .context("killing the peer's program")?;
        loop {
            if sleep_children(parent).iter().any(|p| *p != victim) {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("the peer never restarted its program");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(start.elapsed());
        // Let the peer settle (it counts fast restarts).
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(samples)
}

struct Supervisord {
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Supervisord {
    /// A supervisord with `programs` `sleep` programs that start on demand and restart at once.
    fn start(programs: usize) -> Result<Supervisord> {
        let dir = tempfile::tempdir().context("a temp dir for supervisord")?;
        let d = dir.path().display();
        let mut conf = format!(
            "[supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [unix_http_server]\nfile={d}/s.sock\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [supervisorctl]\nserverurl=unix://{d}/s.sock\n"
        );
        for i in 0..programs {
            // One program starts by itself for the crash loop; the burst starts them on demand.
            let autostart = programs == 1;
            conf.push_str(&format!(
                "[program:p{i}]\ncommand=sleep 3600\nautostart={autostart}\nautorestart=true\nstartsecs=0\nstartretries=1000\n"
            ));
        }
        std::fs::write(dir.path().join("s.conf"), conf)?;
        let daemon = Command::new("supervisord")
            .args(["-n", "-c"])
            .arg(dir.path().join("s.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting supervisord")?;
        let s = Supervisord { dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.ctl(&["status"]).is_err_and(|_| Instant::now() < deadline) {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("supervisorctl")
            .arg("-c")
            .arg(self.dir.path().join("s.conf"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running supervisorctl")?;
        // `status` exits 3 when programs are stopped; only a missing daemon is an error here.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("refused connection") || text.contains("no such file") {
            bail!("supervisord is not up: {text}");
        }
        Ok(text)
    }

    fn burst(self, programs: usize) -> Result<Vec<Option<Measured>>> {
        let start = Instant::now();
        self.ctl(&["start", "all"])?;
        let elapsed = start.elapsed();
        let running = sleep_children(self.daemon.id()).len();
        if running != programs {
            bail!("supervisord started {running} of {programs} programs");
        }
        Ok(vec![
            Measured::time(
                format!("{programs} started (supervisorctl start all)"),
                &[elapsed],
            ),
            Measured::rss(self.daemon.id(), programs),
        ])
    }

    fn crashes(self, n: usize) -> Result<Vec<Option<Measured>>> {
        let samples = crash_loop(self.daemon.id(), n)?;
        Ok(vec![Measured::time(
            "SIGKILL→replacement spawned".into(),
            &samples,
        )])
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        kill_daemon_and_programs(self.daemon.id());
        let _ = self.daemon.wait();
    }
}

/// Ends a peer's daemon and every program it runs, leaving nothing behind: the daemon is
/// stopped first (SIGSTOP: it can no longer restart what is killed), then its programs and the
/// daemon are killed. A daemon killed first would leave its programs orphaned and running.
fn kill_daemon_and_programs(daemon: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Ok(daemon_pid) = i32::try_from(daemon).map(Pid::from_raw) else {
        return;
    };
    let _ = kill(daemon_pid, Signal::SIGSTOP);
    for program in sleep_children(daemon) {
        if let Ok(pid) = i32::try_from(program) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = kill(daemon_pid, Signal::SIGKILL);
}

struct Pm2 {
    home: tempfile::TempDir,
}

impl Pm2 {
    fn start() -> Result<Pm2> {
        let home = tempfile::tempdir().context("a temp PM2_HOME")?;
        let pm2 = Pm2 { home };
        // Start the daemon first, so it is not part of what is measured.
        run(pm2.cmd().arg("ping"))?;
        Ok(pm2)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("pm2");
        c.env("PM2_HOME", self.home.path()).stderr(Stdio::null());
        c
    }

    fn daemon_pid(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.home.path().join("pm2.pid")).context("reading pm2.pid")?;
        text.trim().parse().context("pm2.pid")
    }

    fn ecosystem(&self, n: usize) -> Result<std::path::PathBuf> {
        let apps: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({"name": format!("p{i}"), "script": "sleep", "args": "3600",
                                         "interpreter": "none", "autorestart": true, "restart_delay": 0,
                                         // Fast restarts must not count as unstable ones.
                                         "min_uptime": 100, "max_restarts": 100_000})
            })
            .collect();
        let path = self.home.path().join("ecosystem.json");
        std::fs::write(&path, serde_json::json!({"apps": apps}).to_string())?;
        Ok(path)
    }

    fn burst(self, programs: usize) -> Result<Vec<Option<Measured>>> {
        let file = self.ecosystem(programs)?;
        let start = Instant::now();
        run(self.cmd().arg("start").arg(&file))?;
        let daemon = self.daemon_pid()?;
        while sleep_children(daemon).len() < programs {
            if start.elapsed() > Duration::from_secs(300) {
                bail!("pm2 did not start {programs} programs");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = start.elapsed();
        Ok(vec![
            Measured::time(format!("{programs} started (pm2 start ecosystem)"), &[elapsed]),
            Measured::rss(daemon, programs),
        ])
    }

    fn crashes(self, n: usize) -> Result<Vec<Option<Measured>>> {
        let file = self.ecosystem(1)?;
        run(self.cmd().arg("start").arg(&file))?;
        let samples = crash_loop(self.daemon_pid()?, n)?;
        Ok(vec![Measured::time(
            "SIGKILL→replacement spawned".into(),
            &samples,
        )])
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        if let Ok(daemon) = self.daemon_pid() {
            kill_daemon_and_programs(daemon);
        }
    }
}
