//! Port resolution for HTTP and TCP handlers (rules 4.1-4.3).

use podvisor_core::corev1;
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Why a handler's `port` does not name a usable port. The kubelet treats this as a handler
/// error: the probe result is discarded (rule 3.9).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A number outside 1..65535.
    #[error("invalid port number: {port}")]
    OutOfRange {
        /// The number given (or the named port's `containerPort`).
        port: i64,
    },
    /// A name that is neither a port of the container nor a decimal number.
    #[error("couldn't find port: {name} in container ports")]
    UnknownName {
        /// The name given.
        name: String,
    },
}

/// Resolves `port` against the container's own `ports`: an integer is used as is; a string is
/// looked up by `ports[].name`, and failing that parsed as a decimal number. The result must be
/// in 1..65535.
pub fn resolve(port: &IntOrString, ports: &[corev1::ContainerPort]) -> Result<u16, PortError> {
    let number = match port {
        IntOrString::Int(number) => i64::from(*number),
        IntOrString::String(name) => {
            let named = ports
                .iter()
                .find(|candidate| candidate.name.as_deref() == Some(name.as_str()));
            match named {
                Some(found) => i64::from(found.container_port),
                None => name
                    .parse::<i64>()
                    .map_err(|_| PortError::UnknownName { name: name.clone() })?,
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|port| *port != 0)
        .ok_or(PortError::OutOfRange { port: number })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, port: i32) -> corev1::ContainerPort {
        corev1::ContainerPort {
            name: Some(name.to_owned()),
            container_port: port,
            ..Default::default()
        }
    }

    #[test]
    fn integers_names_and_numeric_strings() {
        let ports = [named("http", 8080), named("bad", 70000)];
        assert_eq!(resolve(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(resolve(&IntOrString::String("http".into()), &ports), Ok(8080));
        assert_eq!(resolve(&IntOrString::String("9090".into()), &ports), Ok(9090));
        assert_eq!(
            resolve(&IntOrString::String("metrics".into()), &ports),
            Err(PortError::UnknownName {
                name: "metrics".into()
            })
        );
        assert_eq!(
            resolve(&IntOrString::String("bad".into()), &ports),
            Err(PortError::OutOfRange { port: 70000 })
        );
        assert_eq!(
            resolve(&IntOrString::Int(0), &ports),
            Err(PortError::OutOfRange { port: 0 })
        );
        assert_eq!(
            resolve(&IntOrString::Int(-1), &ports),
            Err(PortError::OutOfRange { port: -1 })
        );
    }
}
