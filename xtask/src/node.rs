//! `cargo xtask node`: run a podvisor node (a placeholder: the node is not built yet).
//!
//! The flags are parsed and validated now so scripts can be written against them; the command
//! then explains what is missing and exits with code 2. Once the node exists this module only
//! turns flags into its config and calls the node library; the wiring stays out of xtask.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::flags::{Arg, Parser};

const HELP: &str = "\
cargo xtask node: run a podvisor node (not built yet: exits with code 2)

USAGE:
    cargo xtask node [--data-dir DIR] [--listen ADDR] [--manifests DIR]

OPTIONS:
    --data-dir DIR    Where the node keeps its state and container logs [default: ./.podvisor]
    --listen ADDR     Address the API server listens on, as IP:PORT [default: 127.0.0.1:6443]
    --manifests DIR   A directory of Pod and Service manifests to apply at start (must exist)
    -h, --help        Print this message

Flags may also be written --flag=VALUE.

EXIT CODES:
    2   usage error, or (for now) the node is not built yet
";

/// The node's flags, validated.
#[derive(Debug, PartialEq, Eq)]
struct NodeArgs {
    data_dir: PathBuf,
    listen: SocketAddr,
    manifests: Option<PathBuf>,
}

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let Some(node_args) = parse(args)? else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    let manifests = match &node_args.manifests {
        Some(dir) => dir.display().to_string(),
        None => "(none)".to_owned(),
    };
    eprintln!(
        "\
error: `cargo xtask node` cannot run a node yet: the node is not built.

Missing:
  - issue #3: the process runtime, the probe handlers and the pod workers that drive
    podvisor-lifecycle;
  - issue #4: the API server.

The flags are accepted and were validated:
  --data-dir  {}
  --listen    {}
  --manifests {manifests}",
        node_args.data_dir.display(),
        node_args.listen,
    );
    Ok(ExitCode::from(2))
}

/// The validated flags, or `None` when `--help` was asked for.
fn parse(args: Vec<String>) -> Result<Option<NodeArgs>> {
    let mut parser = Parser::new(args, "cargo xtask node --help");
    let mut data_dir = PathBuf::from("./.podvisor");
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 6443));
    let mut manifests = None;
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) => match flag.as_str() {
                "help" => return Ok(None),
                "data-dir" => {
                    let value = parser.value()?;
                    if value.is_empty() {
                        return Err(parser.error("`--data-dir` must not be empty").into());
                    }
                    data_dir = PathBuf::from(value);
                }
                "listen" => {
                    let value = parser.value()?;
                    listen = value.parse().map_err(|error| {
                        parser.error(format!(
                            "`--listen {value}` is not an address of the form IP:PORT \
                             (e.g. 127.0.0.1:6443): {error}"
                        ))
                    })?;
                }
                "manifests" => {
                    let value = PathBuf::from(parser.value()?);
                    if !value.is_dir() {
                        return Err(parser
                            .error(format!("`--manifests {}` is not a directory", value.display()))
                            .into());
                    }
                    manifests = Some(value);
                }
                _ => return Err(parser.unknown_flag().into()),
            },
            Arg::Positional(arg) => {
                return Err(parser.error(format!("unexpected argument `{arg}`")).into());
            }
        }
    }
    Ok(Some(NodeArgs {
        data_dir,
        listen,
        manifests,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Option<NodeArgs>> {
        parse(args.iter().map(|arg| (*arg).to_owned()).collect())
    }

    #[test]
    fn defaults() {
        let args = parse_strs(&[]).unwrap().unwrap();
        assert_eq!(args.data_dir, PathBuf::from("./.podvisor"));
        assert_eq!(args.listen, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(args.manifests, None);
    }

    #[test]
    fn flags_are_read() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let args = parse_strs(&["--data-dir", "/tmp/pv", "--listen=[::1]:7000", "--manifests", dir])
            .unwrap()
            .unwrap();
        assert_eq!(args.data_dir, PathBuf::from("/tmp/pv"));
        assert_eq!(args.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(args.manifests, Some(PathBuf::from(dir)));
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, expected) in [
            (&["--listen", "localhost"][..], "`--listen localhost`"),
            (
                &["--manifests", "/does/not/exist"][..],
                "`--manifests /does/not/exist`",
            ),
            (&["--data-dir"][..], "`--data-dir` needs a value"),
            (&["--bogus"][..], "unknown option `--bogus`"),
        ] {
            let error = parse_strs(args).unwrap_err().to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn help_is_recognised() {
        assert_eq!(parse_strs(&["--help"]).unwrap(), None);
        assert_eq!(parse_strs(&["-h"]).unwrap(), None);
    }
}
