//! Kubernetes `Status` documents: the final word of an exec/attach on its error channel, and the
//! bodies of refused upgrades.

use serde_json::{Value, json};

use super::negotiate::RcVersion;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited 0 (or the attach ended normally).
    Success,
    /// The command exited with a non-zero code (128+N when killed by signal N).
    Exited { code: i32, command: Vec<String> },
    /// The command could not be run at all.
    Internal(String),
}

impl Outcome {
    /// The `Status` as the kubelet writes it on the error stream (metadata, status, message,
    /// reason, details; no kind/apiVersion).
    pub fn status(&self) -> Value {
        match self {
            Outcome::Success => json!({"metadata": {}, "status": "Success"}),
            Outcome::Exited { code, command } => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                    command.join(" ")
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Internal(message) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": message}]},
                "code": 500,
            }),
        }
    }

    /// The bytes to write on the error channel for a protocol version, or `None` when nothing is
    /// written (v1–v3 success). v4+ send JSON; older versions send the error text.
    pub fn error_channel_bytes(&self, version: RcVersion) -> Option<Vec<u8>> {
        if version.json_status() {
            return Some(self.status().to_string().into_bytes());
        }
        match self {
            Outcome::Success => None,
            Outcome::Exited { code, command } => Some(
                format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                    command.join(" ")
                )
                .into_bytes(),
            ),
            Outcome::Internal(message) => Some(format!("Internal error occurred: {message}").into_bytes()),
        }
    }
}

/// A full `Status` object for an HTTP error answer.
pub fn failure_body(code: u16, reason: &str, message: &str) -> Vec<u8> {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn success_is_the_bare_status() {
        assert_eq!(Outcome::Success.status().to_string(), r#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(Outcome::Success.error_channel_bytes(RcVersion::V1), None);
        assert!(Outcome::Success.error_channel_bytes(RcVersion::V4).is_some());
    }

    #[test]
    fn exit_code_travels_as_a_cause() {
        let s =
            Outcome::Exited { code: 3, command: vec!["sh".into(), "-c".into(), "exit 3".into()] }.status();
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn old_protocols_get_text() {
        let o = Outcome::Exited { code: 1, command: vec!["false".into()] };
        let text = String::from_utf8(o.error_channel_bytes(RcVersion::V2).unwrap()).unwrap();
        assert!(text.contains("exit code 1"), "{text}");
    }
}
