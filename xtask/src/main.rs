//! `cargo xtask`: podvisor's developer commands.
fn main() {}
