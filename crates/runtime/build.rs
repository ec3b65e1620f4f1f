//! Builds the container monitor (`src/sys/monitor/program.rs`, issue 18) as an executable of
//! its own with the same `rustc`, for the target being built: the runtime carries its bytes
//! (`include_bytes!`) and runs it from a memfd, so every program that links the runtime (the
//! node, its tests, the benchmark harness) has the monitor without installing anything.
//!
//! The monitor uses `std` only, so it needs no crate; it is optimised for size and its panics
//! abort. It is linked statically where the C library allows it (glibc's `libc.a`, part of
//! the development files every Rust build on Linux needs): a container start executes it, and a
//! dynamically linked one spent about a quarter of a millisecond of each start in the dynamic
//! loader (mapping libc, relocating it) on the development machine, and dirtied more pages. Should
//! the static link fail, it is linked dynamically, with a warning.

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
    let gnu = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "gnu");
    let build = |static_libc: bool| {
        let mut command = Command::new(&rustc);
        if static_libc {
            command.args(["-C", "target-feature=+crt-static"]);
        }
        command
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
            .expect("run rustc for the container monitor")
            .success()
    };
    if gnu && build(true) {
        return;
    }
    if gnu {
        println!(
            "cargo::warning=the container monitor could not be linked statically (is glibc's libc.a \
             installed?): it is linked dynamically, and each container start takes a little longer"
        );
    }
    assert!(build(false), "building the container monitor ({source}) failed");
}
