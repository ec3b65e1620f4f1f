//! `cargo xtask bench`: run the benchmarks (a placeholder: they are not written yet).
//!
//! The flags are parsed now so scripts can be written against them; the command then explains
//! what is missing and exits with code 2.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::flags::{Arg, Parser};

const HELP: &str = "\
cargo xtask bench: run the benchmarks (not built yet: exits with code 2)

USAGE:
    cargo xtask bench [--quick] [--json FILE] [NAME...]

ARGUMENTS:
    NAME...       Run only the benchmarks whose names contain one of these [default: all]

OPTIONS:
    --quick       Fewer iterations: a smoke test, not a measurement
    --json FILE   Also write the results as JSON to FILE
    -h, --help    Print this message

EXIT CODES:
    2   usage error, or (for now) the benchmarks are not built yet
";

/// The bench flags, validated.
#[derive(Debug, Default, PartialEq, Eq)]
struct BenchArgs {
    quick: bool,
    json: Option<PathBuf>,
    names: Vec<String>,
}

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let Some(bench_args) = parse(args)? else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    let json = match &bench_args.json {
        Some(file) => file.display().to_string(),
        None => "(none)".to_owned(),
    };
    let names = if bench_args.names.is_empty() {
        "(all)".to_owned()
    } else {
        bench_args.names.join(" ")
    };
    eprintln!(
        "\
error: `cargo xtask bench` has nothing to run yet: the benchmarks are issue #6.

The flags are accepted and were validated:
  --quick {}
  --json  {json}
  NAME... {names}",
        bench_args.quick,
    );
    Ok(ExitCode::from(2))
}

/// The validated flags, or `None` when `--help` was asked for.
fn parse(args: Vec<String>) -> Result<Option<BenchArgs>> {
    let mut parser = Parser::new(args, "cargo xtask bench --help");
    let mut bench_args = BenchArgs::default();
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) => match flag.as_str() {
                "help" => return Ok(None),
                "quick" => bench_args.quick = true,
                "json" => {
                    let value = parser.value()?;
                    if value.is_empty() {
                        return Err(parser.error("`--json` must not be empty").into());
                    }
                    bench_args.json = Some(PathBuf::from(value));
                }
                _ => return Err(parser.unknown_flag().into()),
            },
            Arg::Positional(name) => bench_args.names.push(name),
        }
    }
    Ok(Some(bench_args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Option<BenchArgs>> {
        parse(args.iter().map(|arg| (*arg).to_owned()).collect())
    }

    #[test]
    fn flags_and_names() {
        let args = parse_strs(&["--quick", "step", "--json", "out.json", "printer"])
            .unwrap()
            .unwrap();
        assert_eq!(
            args,
            BenchArgs {
                quick: true,
                json: Some(PathBuf::from("out.json")),
                names: vec!["step".to_owned(), "printer".to_owned()],
            }
        );
    }

    #[test]
    fn errors_name_the_flag() {
        let error = parse_strs(&["--json"]).unwrap_err().to_string();
        assert!(error.contains("`--json` needs a value"), "{error}");
        let error = parse_strs(&["--quick=1"]).unwrap_err().to_string();
        assert!(error.contains("`--quick` takes no value"), "{error}");
    }
}
