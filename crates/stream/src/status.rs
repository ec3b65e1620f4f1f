//! What the error channel or stream carries when a session ends (rules 1.13, 2.5).

use podvisor_core::streams::{SessionEnd, StreamError};
use serde_json::json;

/// How a session ended, as far as the client is told: the session's own end, or why it never
/// started.
pub(crate) type Outcome = Result<SessionEnd, StreamError>;

/// The `metav1.Status` JSON of v4 and v5 (rule 1.13).
pub(crate) fn json(outcome: &Outcome) -> Vec<u8> {
    let status = match outcome {
        Ok(SessionEnd::Exited(0)) => json!({"metadata": {}, "status": "Success"}),
        Ok(SessionEnd::Exited(code)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": non_zero_message(*code),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Ok(SessionEnd::Failed(message)) => internal_error(message),
        Err(e) => internal_error(&e.to_string()),
    };
    status.to_string().into_bytes()
}

/// The plain text of v1-v3 (and `channel.k8s.io` over WebSocket): the failure's message,
/// nothing on success (rule 1.13).
pub(crate) fn text(outcome: &Outcome) -> Option<Vec<u8>> {
    match outcome {
        Ok(SessionEnd::Exited(0)) => None,
        Ok(SessionEnd::Exited(code)) => Some(non_zero_message(*code).into_bytes()),
        Ok(SessionEnd::Failed(message)) => Some(internal_message(message).into_bytes()),
        Err(e) => Some(internal_message(&e.to_string()).into_bytes()),
    }
}

fn non_zero_message(code: i32) -> String {
    format!("command terminated with non-zero exit code: exit status {code}")
}

fn internal_message(message: &str) -> String {
    format!("Internal error occurred: error executing command in container: {message}")
}

fn internal_error(message: &str) -> serde_json::Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": internal_message(message),
        "reason": "InternalError",
        "details": {"causes": [{"message": format!("error executing command in container: {message}")}]},
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parsed(outcome: &Outcome) -> Value {
        serde_json::from_slice(&json(outcome)).unwrap()
    }

    #[test]
    fn success_non_zero_and_internal_error() {
        assert_eq!(
            parsed(&Ok(SessionEnd::Exited(0))),
            json!({"metadata": {}, "status": "Success"})
        );
        let failed = parsed(&Ok(SessionEnd::Exited(3)));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        let internal = parsed(&Err(StreamError::NotFound("c1".into())));
        assert_eq!(internal["reason"], "InternalError");
        assert_eq!(internal["code"], 500);
        assert_eq!(
            internal["message"],
            "Internal error occurred: error executing command in container: container not found (c1)"
        );
        assert_eq!(text(&Ok(SessionEnd::Exited(0))), None);
        assert_eq!(
            text(&Ok(SessionEnd::Exited(2))).unwrap(),
            b"command terminated with non-zero exit code: exit status 2"
        );
    }
}
