//! Builds the container monitor (`src/sys/monitor/program.rs`, issue 18) as an executable of
//! its own with the same `rustc`, for the target being built: the runtime carries its bytes
//! (`include_bytes!`) and runs it from a memfd, so every program that links the runtime (the
//! node, its tests, the benchmark harness) has the monitor without installing anything.
//!
//! The monitor uses `std` only, so it needs no crate; it is optimised for size and its panics
//! abort.

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
    let status = Command::new(rustc)
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
        ])
        .arg("-o")
        .arg(&exe)
        .arg(source)
        .status()
        .expect("run rustc for the container monitor");
    assert!(
        status.success(),
        "building the container monitor ({source}) failed"
    );
}
