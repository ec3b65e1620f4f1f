//! Lays out the release binaries' code with the functions a running node executes first.
//!
//! The kernel reads an executable ahead of its page faults and maps what it has cached around
//! each fault, so wherever the node touches a function, the code around it becomes resident
//! too: with the functions it runs scattered over all of `.text`, most of the binary was. The
//! list in `layout/hot-functions.txt` (written by `cargo xtask layout`, which says how) names
//! those functions; lld's `--symbol-ordering-file` places them first, in the list's order, and
//! the rest after them as before. Names the build lacks (a stale list) are skipped, so a stale
//! list costs memory, never a failed link.
//!
//! Only release builds for x86_64 Linux, whose default linker is lld, take the list (`PROFILE`
//! is `release` for every profile that inherits from it). `PODVISOR_CODE_LAYOUT=off` leaves it
//! out, for a linker that does not know the flag. `podvisor-bench`, which runs the same node
//! for `node-footprint`, builds with this script too.

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let list = manifest.join("../../layout/hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=PODVISOR_CODE_LAYOUT");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_default = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let off = std::env::var("PODVISOR_CODE_LAYOUT").is_ok_and(|v| v == "off");
    if release && lld_default && !off && list.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
