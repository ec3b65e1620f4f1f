//! A small command-line parser for the subcommands: long flags, values, positionals and `--help`.
//!
//! Accepts `--flag value`, `--flag=value`, `-h`, and `--` to end the flags. Every error names the
//! flag it is about and points at the command's `--help`.

use std::fmt;

/// A mistake in the command line: reported with exit code 2 and a pointer to `--help`.
#[derive(Debug)]
pub(crate) struct UsageError {
    message: String,
    help: &'static str,
}

impl UsageError {
    pub(crate) fn new(message: impl Into<String>, help: &'static str) -> Self {
        Self {
            message: message.into(),
            help,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see `{}`)", self.message, self.help)
    }
}

impl std::error::Error for UsageError {}

/// One item of a command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    /// `--name` or `--name=value` (the name is stored without the dashes), or `-h`.
    Flag(String),
    /// Anything else, and everything after `--`.
    Positional(String),
}

/// Walks the arguments of one subcommand.
pub(crate) struct Parser {
    args: std::vec::IntoIter<String>,
    /// The `value` of a `--flag=value` just returned, until [`Parser::value`] takes it.
    inline_value: Option<String>,
    /// The flag just returned, for error messages.
    current_flag: String,
    only_positionals: bool,
    /// How to get help, e.g. `cargo xtask node --help`.
    help: &'static str,
}

impl Parser {
    pub(crate) fn new(args: Vec<String>, help: &'static str) -> Self {
        Self {
            args: args.into_iter(),
            inline_value: None,
            current_flag: String::new(),
            only_positionals: false,
            help,
        }
    }

    /// The next argument, or `None` at the end.
    ///
    /// Fails if the previous flag was given an inline value (`--quick=yes`) it did not take.
    pub(crate) fn next_arg(&mut self) -> Result<Option<Arg>, UsageError> {
        if let Some(value) = self.inline_value.take() {
            return Err(self.error(format!("`--{}` takes no value, got `{value}`", self.current_flag)));
        }
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if self.only_positionals {
            return Ok(Some(Arg::Positional(arg)));
        }
        if arg == "--" {
            self.only_positionals = true;
            return self.next_arg();
        }
        if arg == "-h" {
            self.current_flag = "help".to_owned();
            return Ok(Some(Arg::Flag(self.current_flag.clone())));
        }
        if arg == "-f" {
            // kubectl's short form of --filename.
            self.current_flag = "filename".to_owned();
            return Ok(Some(Arg::Flag(self.current_flag.clone())));
        }
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            self.current_flag = name.to_owned();
            self.inline_value = value;
            return Ok(Some(Arg::Flag(self.current_flag.clone())));
        }
        if arg.starts_with('-') && arg.len() > 1 {
            return Err(self.error(format!("unknown option `{arg}`")));
        }
        Ok(Some(Arg::Positional(arg)))
    }

    /// The value of the flag just returned: inline (`--flag=value`) or the next argument.
    pub(crate) fn value(&mut self) -> Result<String, UsageError> {
        if let Some(value) = self.inline_value.take() {
            return Ok(value);
        }
        match self.args.next() {
            Some(value) if !value.starts_with("--") => Ok(value),
            _ => Err(self.error(format!("`--{}` needs a value", self.current_flag))),
        }
    }

    /// For commands without options: whether `--help` was asked for; any other argument is an error.
    pub(crate) fn only_help(mut self) -> Result<bool, UsageError> {
        match self.next_arg()? {
            None => Ok(false),
            Some(Arg::Flag(flag)) if flag == "help" => Ok(true),
            Some(Arg::Flag(_)) => Err(self.unknown_flag()),
            Some(Arg::Positional(arg)) => Err(self.error(format!("unexpected argument `{arg}`"))),
        }
    }

    /// A usage error about `message`.
    pub(crate) fn error(&self, message: impl Into<String>) -> UsageError {
        UsageError::new(message, self.help)
    }

    /// The error for the flag just returned, when the command does not know it.
    pub(crate) fn unknown_flag(&self) -> UsageError {
        self.error(format!("unknown option `--{}`", self.current_flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(args: &[&str]) -> Parser {
        Parser::new(
            args.iter().map(|arg| (*arg).to_owned()).collect(),
            "cargo xtask test --help",
        )
    }

    #[test]
    fn flags_values_and_positionals() {
        let mut p = parser(&[
            "--json",
            "out.json",
            "--listen=1.2.3.4:5",
            "name",
            "--",
            "--quick",
        ]);
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Flag("json".into())));
        assert_eq!(p.value().unwrap(), "out.json");
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Flag("listen".into())));
        assert_eq!(p.value().unwrap(), "1.2.3.4:5");
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Positional("name".into())));
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Positional("--quick".into())));
        assert_eq!(p.next_arg().unwrap(), None);
    }

    #[test]
    fn missing_value_names_the_flag() {
        let mut p = parser(&["--data-dir"]);
        p.next_arg().unwrap();
        let error = p.value().unwrap_err().to_string();
        assert!(error.contains("`--data-dir` needs a value"), "{error}");
    }

    #[test]
    fn unexpected_inline_value_names_the_flag() {
        let mut p = parser(&["--quick=yes"]);
        p.next_arg().unwrap();
        let error = p.next_arg().unwrap_err().to_string();
        assert!(error.contains("`--quick` takes no value"), "{error}");
    }
}
