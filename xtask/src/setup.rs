//! `cargo xtask setup`: installs what building and testing podvisor need beyond the Rust
//! toolchain, from Debian's packages, when missing:
//!
//! - `protoc` (`protobuf-compiler`): the etcd client's build script compiles etcd's protocol
//!   files, so every build of the workspace needs it, and the well-known types they import
//!   (`google/protobuf/descriptor.proto`, ...: `libprotobuf-dev`, which `--no-install-recommends`
//!   does not bring with protoc);
//! - `kubectl` (`kubernetes-client`): the kubectl end-to-end tests;
//! - `etcd` (`etcd-server`): the etcd store's tests, the multi-server tests and the etcd
//!   benchmarks start their own etcd members; `etcdctl` (`etcd-client`): the store's test
//!   that reads the keys as kube-apiserver lays them out;
//! - `python3-kubernetes`: the Python client's exec stream in the kubectl end-to-end tests
//!   (run with Debian's `/usr/bin/python3`);
//! - as root, `nft` (`nftables`): the Service datapath of the root-only tests.
//!
//! `cargo xtask test` runs it first; `cargo xtask node` makes sure of `protoc` before it builds,
//! `bench` of `protoc` and `etcd`; CI runs it before clippy. Installing needs root and apt-get;
//! without them a missing tool is an error naming the package to install.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Result, bail};

use crate::flags::Parser;

const HELP: &str = "\
cargo xtask setup: install what building and testing podvisor need (Debian packages)

USAGE:
    cargo xtask setup

Installs, when missing: protobuf-compiler and libprotobuf-dev (protoc and the well-known
types etcd's protocol files import, needed to build), kubernetes-client
(kubectl), python3-kubernetes (the Python client), etcd-server and etcd-client (etcd,
etcdctl) and, as root, nftables
(nft). Needs root and apt-get to install;
otherwise fails naming what is missing.

OPTIONS:
    -h, --help       Print this message
";

/// What a command needs installed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// Building the workspace: `protoc`.
    Build,
    /// Building and running the benchmarks: `protoc`, and `etcd` for the benchmarks that
    /// start their own etcd member.
    Bench,
    /// Building and running every test (`nft` only as root, where the root tests run).
    Tests {
        /// Whether this process is root.
        root: bool,
    },
}

/// One tool and the Debian package that brings it.
struct Tool {
    name: &'static str,
    package: &'static str,
    present: fn() -> bool,
}

const PROTOC: Tool = Tool {
    name: "protoc",
    package: "protobuf-compiler",
    present: || runs("protoc", &["--version"]),
};
const WELL_KNOWN_PROTOS: Tool = Tool {
    name: "protoc's well-known types (google/protobuf/descriptor.proto)",
    package: "libprotobuf-dev",
    present: || Path::new("/usr/include/google/protobuf/descriptor.proto").exists(),
};
const KUBECTL: Tool = Tool {
    name: "kubectl",
    package: "kubernetes-client",
    present: || runs("kubectl", &["version", "--client"]),
};
const PYTHON_CLIENT: Tool = Tool {
    name: "the Python kubernetes client",
    package: "python3-kubernetes",
    present: || runs("/usr/bin/python3", &["-c", "import kubernetes.stream"]),
};
const ETCD: Tool = Tool {
    name: "etcd",
    package: "etcd-server",
    present: || Path::new("/usr/bin/etcd").exists(),
};
const ETCDCTL: Tool = Tool {
    name: "etcdctl",
    package: "etcd-client",
    present: || Path::new("/usr/bin/etcdctl").exists(),
};
const NFT: Tool = Tool {
    name: "nft",
    package: "nftables",
    present: || {
        Path::new("/usr/sbin/nft").exists() || Path::new("/sbin/nft").exists() || runs("nft", &["--version"])
    },
};

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    if Parser::new(args, "cargo xtask setup --help").only_help()? {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    install(Need::Tests {
        root: crate::test::is_root(),
    })?;
    eprintln!("==> setup: everything is installed");
    Ok(ExitCode::SUCCESS)
}

/// Installs the tools `need` asks for that are missing, or fails naming them. Idempotent.
pub(crate) fn install(need: Need) -> Result<()> {
    let tools: Vec<Tool> = match need {
        Need::Build => vec![PROTOC, WELL_KNOWN_PROTOS],
        Need::Bench => vec![PROTOC, WELL_KNOWN_PROTOS, ETCD],
        Need::Tests { root: true } => {
            vec![
                PROTOC,
                WELL_KNOWN_PROTOS,
                KUBECTL,
                PYTHON_CLIENT,
                ETCD,
                ETCDCTL,
                NFT,
            ]
        }
        Need::Tests { root: false } => {
            vec![PROTOC, WELL_KNOWN_PROTOS, KUBECTL, PYTHON_CLIENT, ETCD, ETCDCTL]
        }
    };
    let missing: Vec<&Tool> = tools.iter().filter(|t| !(t.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    let names: Vec<&str> = missing.iter().map(|t| t.name).collect();
    if !(crate::test::is_root() && Path::new("/usr/bin/apt-get").exists()) {
        bail!(
            "set-up: {} missing and cannot be installed here (that needs root and apt-get): \
             install Debian's {}",
            names.join(", "),
            packages.join(" ")
        );
    }
    eprintln!("==> set-up: installing Debian packages {}", packages.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["update", "-qq"]) {
        bail!("set-up: apt-get update failed");
    }
    if !apt(&[
        &["install", "-y", "-qq", "--no-install-recommends"][..],
        &packages,
    ]
    .concat())
    {
        bail!("set-up: apt-get install {} failed", packages.join(" "));
    }
    for tool in missing {
        if !(tool.present)() {
            bail!(
                "set-up: {} still does not run after installing {}",
                tool.name,
                tool.package
            );
        }
    }
    Ok(())
}

/// Whether `program args` runs and succeeds.
pub(crate) fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}
