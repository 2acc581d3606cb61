//! The proxy's audit records (stream `KUBEGATE_AUDIT`, subjects `kubegate.audit.>`). Each replica
//! numbers its records 1, 2, 3, … in `position` within its own `stream` (`proxy-<replica>`), so a
//! reader can prove none is missing.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::EnvironmentRole;
use crate::macros::domain_events;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Denied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SessionKind {
    Exec,
    Attach,
    PortForward,
}

/// Who made a request and as whom it went upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditSubject {
    /// Absent when the token could not be verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<EnvironmentRole>,
    /// `Impersonate-User` sent upstream (absent for requests never forwarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impersonated_groups: Vec<String>,
    pub client_address: String,
}

/// What a request asked for, as the proxy classified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<u64>,
    pub verb: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request path as received (without the query string).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestAudited {
    pub request_id: String,
    pub subject: AuditSubject,
    pub target: AuditTarget,
    pub decision: Decision,
    /// Why it was denied, or how it ended when it failed upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: u16,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStarted {
    pub session_id: String,
    pub request_id: String,
    pub kind: SessionKind,
    pub subject: AuditSubject,
    pub target: AuditTarget,
    /// The subprotocol agreed with the upstream (e.g. `v5.channel.k8s.io`, `SPDY/3.1`).
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionEnded {
    pub session_id: String,
    pub request_id: String,
    pub kind: SessionKind,
    pub started_at: DateTime<Utc>,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How it ended: `closed`, `revoked`, `shutdown`, `error: …`.
    pub end_reason: String,
}

domain_events! {
    /// Every record the proxy writes to the audit stream.
    pub enum AuditEvent, service "audit", stream "KUBEGATE_AUDIT" {
        RequestAudited(RequestAudited) = "request.audited" v 1,
        SessionStarted(SessionStarted) = "session.started" v 1,
        SessionEnded(SessionEnded) = "session.ended" v 1,
    }
}
