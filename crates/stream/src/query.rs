//! The query of exec and attach (rules 1.2-1.3) and port-forward's `ports` (rule 3.10).

use podvisor_core::streams::StdioRequest;

/// A request the API server answers with 400 before any upgrade; the text is the Status's
/// `message` (Kubernetes' own wording where there is one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// None of stdin, stdout and stderr asked for (rule 1.3).
    #[error("you must specify at least 1 of stdin, stdout, stderr")]
    NoStreams,
    /// exec without a `command`.
    #[error("you must specify at least one command for the container")]
    NoCommand,
    /// More than one container and none named (rule 1.3).
    #[error("a container name must be specified for pod {pod}, choose one of: [{}]{}", .containers.join(" "), init_suffix(.init_containers))]
    ContainerRequired {
        /// The pod's name.
        pod: String,
        /// Its containers.
        containers: Vec<String>,
        /// Its init containers.
        init_containers: Vec<String>,
    },
    /// The named container is not the pod's (rule 1.3).
    #[error("container {container} is not valid for pod {pod}")]
    UnknownContainer {
        /// The name asked for.
        container: String,
        /// The pod's name.
        pod: String,
    },
    /// port-forward over the WebSocket channel protocol without `ports` (rule 3.10).
    #[error("at least one port is required in query parameter \"ports\"")]
    NoPorts,
    /// A `ports` value that is not a port in 1..65535 (rule 3.10).
    #[error("invalid port {0:?}: ports must be numbers in 1..65535")]
    InvalidPort(String),
    /// More ports than the channel protocol has channels for (two channels per port, 256 in all).
    #[error("at most {max} ports can be forwarded on one connection, got {got}")]
    TooManyPorts {
        /// The limit.
        max: usize,
        /// How many were asked for.
        got: usize,
    },
}

fn init_suffix(init: &[String]) -> String {
    if init.is_empty() {
        String::new()
    } else {
        format!(" or one of the init containers: [{}]", init.join(" "))
    }
}

/// The most ports one WebSocket port-forward can carry: channel `2i+1` must fit in a byte.
pub(crate) const MAX_PORTS: usize = 128;

/// What exec and attach were asked for (rule 1.2), validated as far as the pod is not needed
/// (rule 1.3: at least one stream; `tty` drops `stderr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecQuery {
    /// The argv, in order (exec only; empty for attach).
    pub command: Vec<String>,
    /// The `container` asked for, `None` when absent or empty (see [`resolve_container`]).
    pub container: Option<String>,
    /// The streams asked for, with `stderr` false whenever `tty` is set.
    pub stdio: StdioRequest,
}

impl ExecQuery {
    /// Parses the query string (without `?`) of `pods/exec`; a `command` is required.
    pub fn parse_exec(query: &str) -> Result<Self, QueryError> {
        let parsed = Self::parse(query, true)?;
        if parsed.command.is_empty() {
            return Err(QueryError::NoCommand);
        }
        Ok(parsed)
    }

    /// Parses the query string (without `?`) of `pods/attach`; `command` is ignored.
    pub fn parse_attach(query: &str) -> Result<Self, QueryError> {
        Self::parse(query, false)
    }

    fn parse(query: &str, with_command: bool) -> Result<Self, QueryError> {
        let mut command = Vec::new();
        let mut container = None;
        let (mut stdin, mut stdout, mut stderr, mut tty) = (None, None, None, None);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            // Go's conversion takes the first value of a repeated scalar.
            match &*key {
                "command" if with_command => command.push(value.into_owned()),
                "container" => {
                    container.get_or_insert(value.into_owned());
                }
                "stdin" => _ = stdin.get_or_insert(query_bool(&value)),
                "stdout" => _ = stdout.get_or_insert(query_bool(&value)),
                "stderr" => _ = stderr.get_or_insert(query_bool(&value)),
                "tty" => _ = tty.get_or_insert(query_bool(&value)),
                _ => {}
            }
        }
        let tty = tty.unwrap_or(false);
        let stdio = StdioRequest {
            stdin: stdin.unwrap_or(false),
            stdout: stdout.unwrap_or(false),
            // Rule 1.3: with a TTY, stderr is merged into stdout; dropped silently.
            stderr: stderr.unwrap_or(false) && !tty,
            tty,
        };
        if !stdio.stdin && !stdio.stdout && !stdio.stderr {
            return Err(QueryError::NoStreams);
        }
        Ok(Self {
            command,
            container: container.filter(|c| !c.is_empty()),
            stdio,
        })
    }
}

/// A query boolean as Go converts it (rule 1.2): false when `0` or `false` in any case, true
/// otherwise, the empty string included.
fn query_bool(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

/// Picks the container of an exec or attach (rule 1.3): the one named, which must be one of
/// `containers`, `init_containers` or `ephemeral_containers`; none named and exactly one
/// container: that one.
pub fn resolve_container(
    pod: &str,
    requested: Option<&str>,
    containers: &[&str],
    init_containers: &[&str],
    ephemeral_containers: &[&str],
) -> Result<String, QueryError> {
    match requested {
        Some(name) => {
            let all = containers
                .iter()
                .chain(init_containers)
                .chain(ephemeral_containers);
            if all.into_iter().any(|c| *c == name) {
                Ok(name.to_owned())
            } else {
                Err(QueryError::UnknownContainer {
                    container: name.to_owned(),
                    pod: pod.to_owned(),
                })
            }
        }
        None => match containers {
            [only] => Ok((*only).to_owned()),
            _ => Err(QueryError::ContainerRequired {
                pod: pod.to_owned(),
                containers: containers.iter().map(|c| (*c).to_owned()).collect(),
                init_containers: init_containers.iter().map(|c| (*c).to_owned()).collect(),
            }),
        },
    }
}

/// The `ports` of a WebSocket port-forward (rule 3.10): repeated and/or comma-separated, each in
/// 1..65535, in order, at least one and at most 128.
pub fn parse_ports(query: &str) -> Result<Vec<u16>, QueryError> {
    let mut ports = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "ports" {
            continue;
        }
        for part in value.split(',') {
            let port = part
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| QueryError::InvalidPort(part.to_owned()))?;
            ports.push(port);
            if ports.len() > MAX_PORTS {
                return Err(QueryError::TooManyPorts {
                    max: MAX_PORTS,
                    got: ports.len(),
                });
            }
        }
    }
    if ports.is_empty() {
        return Err(QueryError::NoPorts);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query_as_kubectl_sends_it() {
        let q = ExecQuery::parse_exec(
            "command=sh&command=-c&command=echo%20hi&container=app&stdin=true&stdout=true&stderr=true",
        )
        .unwrap();
        assert_eq!(q.command, ["sh", "-c", "echo hi"]);
        assert_eq!(q.container.as_deref(), Some("app"));
        assert_eq!(
            q.stdio,
            StdioRequest {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
    }

    #[test]
    fn booleans_follow_go_conversion() {
        // Empty string is true; 0 and false (any case) are false; the first value wins.
        let q = ExecQuery::parse_attach("stdout=&stderr=FALSE&stdin=0&tty=1&tty=false").unwrap();
        assert_eq!(
            q.stdio,
            StdioRequest {
                stdin: false,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        let q = ExecQuery::parse_attach("stderr=yes").unwrap();
        assert!(q.stdio.stderr);
    }

    #[test]
    fn tty_drops_stderr_and_streams_are_required() {
        let q = ExecQuery::parse_exec("command=ls&stderr=true&stdin=true&tty=true").unwrap();
        assert_eq!(
            q.stdio,
            StdioRequest {
                stdin: true,
                stdout: false,
                stderr: false,
                tty: true
            }
        );
        assert_eq!(
            ExecQuery::parse_exec("command=ls&tty=true&stderr=true"),
            Err(QueryError::NoStreams)
        );
        assert_eq!(ExecQuery::parse_exec("command=ls"), Err(QueryError::NoStreams));
        assert_eq!(
            QueryError::NoStreams.to_string(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert_eq!(ExecQuery::parse_exec("stdout=true"), Err(QueryError::NoCommand));
        let attach = ExecQuery::parse_attach("command=ignored&stdout=true&container=").unwrap();
        assert!(attach.command.is_empty());
        assert_eq!(attach.container, None);
    }

    #[test]
    fn container_resolution_messages() {
        assert_eq!(resolve_container("p", None, &["a"], &[], &[]).unwrap(), "a");
        assert_eq!(
            resolve_container("p", Some("dbg"), &["a", "b"], &[], &["dbg"]).unwrap(),
            "dbg"
        );
        assert_eq!(
            resolve_container("p", None, &["a", "b"], &["i"], &[])
                .unwrap_err()
                .to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(
            resolve_container("p", None, &["a", "b"], &[], &[])
                .unwrap_err()
                .to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(
            resolve_container("p", Some("x"), &["a"], &[], &[])
                .unwrap_err()
                .to_string(),
            "container x is not valid for pod p"
        );
    }

    #[test]
    fn ports_repeated_and_comma_separated() {
        assert_eq!(parse_ports("ports=8080,9090&ports=1").unwrap(), [8080, 9090, 1]);
        assert_eq!(parse_ports("other=1"), Err(QueryError::NoPorts));
        assert_eq!(parse_ports("ports=0"), Err(QueryError::InvalidPort("0".into())));
        assert_eq!(
            parse_ports("ports=65536"),
            Err(QueryError::InvalidPort("65536".into()))
        );
        assert_eq!(parse_ports("ports=80,"), Err(QueryError::InvalidPort("".into())));
        let many = (1..=129)
            .map(|p| format!("ports={p}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            parse_ports(&many),
            Err(QueryError::TooManyPorts { max: 128, got: 129 })
        );
    }
}
