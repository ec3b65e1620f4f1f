//! Builds the container monitor (`src/sys/monitor/program.rs`, issue 18) as an executable of
//! its own with the same `rustc`, for the target being built: the runtime carries its bytes
//! (`include_bytes!`) and runs it from a memfd, so every program that links the runtime (the
//! node, its tests, the benchmark harness) has the monitor without installing anything.
//!
//! The monitor has no C library and no `std` (`core` and `alloc`, its own entry point and
//! system calls), so it needs no crate and links against nothing: a static executable at a
//! fixed address (nothing to relocate at start), optimised for size, its panics an exit. Every
//! container start and pod sandbox executes it, and glibc's start-up alone was about 0.3 ms of
//! each of those executions on the development machine (see the program's docs).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "src/sys/monitor/program.rs";
    println!("cargo::rerun-if-changed={source}");
    println!("cargo::rerun-if-changed=src/logs/cri.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let exe = out.join("podvisor-monitor");
    let built = Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "podvisor_monitor",
        ])
        .args(["--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "debuginfo=0",
            // A static executable at a fixed address, with the program's own `_start`.
            "-C",
            "target-feature=+crt-static",
            "-C",
            "relocation-model=static",
            "-C",
            "link-arg=-nostartfiles",
            "-C",
            "link-arg=-nostdlib",
            "-C",
            "link-arg=-static",
        ])
        .arg("-o")
        .arg(&exe)
        .arg(source)
        .status()
        .expect("run rustc for the container monitor")
        .success();
    assert!(built, "building the container monitor ({source}) failed");
}
