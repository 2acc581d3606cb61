//! One row of the audit timeline, whatever stream it came from: when, what kind of thing, who did
//! it (and to whom), where (environment, namespace, resource), how it ended, which request caused
//! it, and where in which stream it is recorded.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use kubegate_events::audit::{AuditEvent, AuditSubject, AuditTarget, Decision, SessionKind};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{Actor, DomainEvent, Envelope};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::directory::Directory;

/// The stream a row comes from. The order is the tie-break between rows of the same instant: a
/// domain event sorts before the requests it made possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Identity,
    Environments,
    Audit,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Identity, Source::Environments, Source::Audit];

    /// The JetStream stream.
    pub fn stream(self) -> &'static str {
        match self {
            Source::Identity => IdentityEvent::STREAM,
            Source::Environments => EnvironmentEvent::STREAM,
            Source::Audit => AuditEvent::STREAM,
        }
    }

    /// The subject filter selecting every message of the stream.
    pub fn all_subjects(self) -> String {
        match self {
            Source::Identity => IdentityEvent::subject_filter(),
            Source::Environments => EnvironmentEvent::subject_filter(),
            Source::Audit => AuditEvent::subject_filter(),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.stream())
    }
}

/// What a row is about, for `--kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A request through the proxy (every one, reads too).
    Request,
    /// An exec, attach or port-forward session: its start and its end.
    Session,
    /// A sign-in, good or bad.
    Signin,
    /// A kubeconfig token issued or revoked, or all of a user's tokens revoked.
    Token,
    /// A settings change (the kubeconfig expiry).
    Settings,
    /// An environment's access policy set.
    Access,
    /// An environment registered, renamed, changed or removed.
    Environment,
    /// A kubeconfig downloaded.
    Kubeconfig,
    /// A user created, changed or deleted.
    User,
    /// A team created, renamed or deleted, or its members changed.
    Team,
    /// A signing key added or retired.
    Key,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Request,
        Kind::Session,
        Kind::Signin,
        Kind::Token,
        Kind::Settings,
        Kind::Access,
        Kind::Environment,
        Kind::Kubeconfig,
        Kind::User,
        Kind::Team,
        Kind::Key,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Session => "session",
            Kind::Signin => "signin",
            Kind::Token => "token",
            Kind::Settings => "settings",
            Kind::Access => "access",
            Kind::Environment => "environment",
            Kind::Kubeconfig => "kubeconfig",
            Kind::User => "user",
            Kind::Team => "team",
            Kind::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The stream whose events are of this kind.
    pub fn source(self) -> Source {
        match self {
            Kind::Request | Kind::Session => Source::Audit,
            Kind::Access | Kind::Environment | Kind::Kubeconfig => Source::Environments,
            _ => Source::Identity,
        }
    }

    /// One subject filter that selects this kind's events in its stream (perhaps with others,
    /// which the filter then drops), when there is a narrower one than the whole stream.
    pub fn subject(self) -> Option<&'static str> {
        match self {
            Kind::Request => Some("kubegate.audit.request.>"),
            Kind::Session => Some("kubegate.audit.session.>"),
            Kind::Signin => Some("kubegate.identity.signin.>"),
            // Tokens live under `token.` and `user.tokens-revoked`: two subjects, so the stream.
            Kind::Token => None,
            Kind::Settings => Some("kubegate.identity.settings.>"),
            Kind::User => Some("kubegate.identity.user.>"),
            Kind::Team => Some("kubegate.identity.team.>"),
            Kind::Key => Some("kubegate.identity.signing-key.>"),
            Kind::Access => Some("kubegate.environments.access.>"),
            Kind::Environment => Some("kubegate.environments.environment.>"),
            Kind::Kubeconfig => Some("kubegate.environments.kubeconfig.>"),
        }
    }

    /// The kind of an event type, without decoding it.
    pub fn of_event(event_type: &str) -> Option<Kind> {
        Some(match event_type {
            "RequestAudited" => Kind::Request,
            "SessionStarted" | "SessionEnded" => Kind::Session,
            "SignInSucceeded" | "SignInFailed" => Kind::Signin,
            "KubeconfigTokenIssued" | "KubeconfigTokenRevoked" | "UserTokensRevoked" => Kind::Token,
            "KubeconfigExpiryChanged" => Kind::Settings,
            "AccessPolicySet" => Kind::Access,
            "EnvironmentRegistered"
            | "EnvironmentRenamed"
            | "EnvironmentEndpointChanged"
            | "EnvironmentCredentialRotated"
            | "EnvironmentRemoved" => Kind::Environment,
            "KubeconfigDownloaded" => Kind::Kubeconfig,
            "UserCreated"
            | "UserRoleChanged"
            | "UserPasswordChanged"
            | "UserDisabled"
            | "UserEnabled"
            | "UserDeleted" => Kind::User,
            "TeamCreated" | "TeamRenamed" | "TeamDeleted" | "TeamMemberAdded" | "TeamMemberRemoved" => {
                Kind::Team
            }
            "SigningKeyAdded" | "SigningKeyRetired" => Kind::Key,
            _ => return None,
        })
    }

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the timeline. Serialized as camelCase JSON with every key present (`null` when
/// it does not apply), so its shape is the same for every row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// When it happened (the producer's clock); written in UTC with microseconds, always the
    /// same length, so that times sort as text too.
    #[serde(serialize_with = "micros")]
    pub time: DateTime<Utc>,
    pub kind: Kind,
    /// The event type, e.g. `RequestAudited`, `SignInFailed`.
    pub event: &'static str,
    /// Who did it: the signed-in user, the name typed at a failed sign-in, `system:<service>`.
    pub user: Option<String>,
    pub user_id: Option<u64>,
    /// Whom it was done to, when that is a user (created, revoked, added to a team…).
    pub target_user: Option<String>,
    pub target_user_id: Option<u64>,
    /// The environment role the request was decided with.
    pub role: Option<String>,
    pub environment_ids: Vec<u64>,
    /// Names of `environment_ids` (`#<id>` when unknown).
    pub environments: Vec<String>,
    pub namespace: Option<String>,
    pub verb: Option<String>,
    /// `resource[.group][/subresource]`, as RBAC names it (`pods/exec`, `deployments.apps`).
    pub resource: Option<String>,
    pub name: Option<String>,
    pub path: Option<String>,
    /// The HTTP status the client got.
    pub status: Option<u16>,
    pub decision: Option<Decision>,
    /// Why it was denied or failed, how a session ended, why tokens were revoked.
    pub reason: Option<String>,
    pub duration_us: Option<u64>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub client_address: Option<String>,
    /// The kubeconfig token used, issued or revoked (its `jti`).
    pub token_id: Option<String>,
    /// An exec/attach/port-forward session, or a sign-in's session token id.
    pub session_id: Option<String>,
    /// The id of the request that caused it: one kubectl action or REST call across services.
    pub correlation_id: String,
    /// One line a person reads.
    pub summary: String,
    /// The event's id.
    pub id: Uuid,
    /// The JetStream stream and sequence it is stored at, and its place in that message (a
    /// proxy packs several audit records into one).
    pub stream: Source,
    pub sequence: u64,
    pub index: u32,
    /// The producer's aggregate stream (`user-3`, `environments`, `proxy-<replica>-<boot>`) and
    /// its position in the producer's log.
    pub origin: String,
    pub position: u64,
}

/// A place in a stream: a message's sequence, and a record's index among those it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct At {
    pub sequence: u64,
    pub index: u32,
}

impl At {
    /// The first record of message `sequence`.
    pub fn message(sequence: u64) -> At {
        At { sequence, index: 0 }
    }
}

/// A time as `2025-06-01T08:00:00.000000Z`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

/// The columns of the CSV output, in order: the JSON keys.
pub const COLUMNS: [&str; 32] = [
    "time",
    "kind",
    "event",
    "user",
    "userId",
    "targetUser",
    "targetUserId",
    "role",
    "environmentIds",
    "environments",
    "namespace",
    "verb",
    "resource",
    "name",
    "path",
    "status",
    "decision",
    "reason",
    "durationUs",
    "bytesIn",
    "bytesOut",
    "clientAddress",
    "tokenId",
    "sessionId",
    "correlationId",
    "summary",
    "id",
    "stream",
    "sequence",
    "index",
    "origin",
    "position",
];

impl Row {
    fn new<E>(env: &Envelope<E>, source: Source, at: At, kind: Kind, event: &'static str) -> Row {
        let (user, user_id, client_address) = match &env.actor {
            Actor::User { id, name } => (Some(name.clone()), Some(*id), None),
            Actor::System { service } => (Some(format!("system:{service}")), None, None),
            Actor::Anonymous { address } => (None, None, address.clone()),
        };
        Row {
            time: env.occurred_at,
            kind,
            event,
            user,
            user_id,
            target_user: None,
            target_user_id: None,
            role: None,
            environment_ids: Vec::new(),
            environments: Vec::new(),
            namespace: None,
            verb: None,
            resource: None,
            name: None,
            path: None,
            status: None,
            decision: None,
            reason: None,
            duration_us: None,
            bytes_in: None,
            bytes_out: None,
            client_address,
            token_id: None,
            session_id: None,
            correlation_id: env.correlation_id.clone(),
            summary: String::new(),
            id: env.id,
            stream: source,
            sequence: at.sequence,
            index: at.index,
            origin: env.stream.clone(),
            position: env.position,
        }
    }

    /// The merge order: time, then stream, then place in the stream.
    pub fn key(&self) -> (DateTime<Utc>, Source, At) {
        (self.time, self.stream, self.at())
    }

    /// Where it is stored in its stream.
    pub fn at(&self) -> At {
        At { sequence: self.sequence, index: self.index }
    }

    fn target(&mut self, directory: &Directory, id: u64) {
        self.target_user_id = Some(id);
        self.target_user = Some(directory.user_label(id));
    }

    fn environments(&mut self, directory: &Directory, ids: &[u64]) {
        self.environment_ids = ids.to_vec();
        self.environments = ids.iter().map(|id| directory.environment_label(*id)).collect();
    }

    fn environment_list(&self) -> String {
        if self.environments.is_empty() { "no environment".to_string() } else { self.environments.join(", ") }
    }
}

fn expiry_text(at: Option<DateTime<Utc>>) -> String {
    match at {
        Some(t) => format!("expires {}", t.format("%Y-%m-%d %H:%M:%SZ")),
        None => "never expires".to_string(),
    }
}

/// An identity event as a row. Names it introduces are learned first.
pub fn identity_row(env: &Envelope<IdentityEvent>, at: At, directory: &Directory) -> Row {
    let kind = Kind::of_event(env.event.event_type()).unwrap_or(Kind::User);
    let mut row = Row::new(env, Source::Identity, at, kind, env.event.event_type());
    // A rename reads better with the old name: summarize before learning.
    let before_rename = match &env.event {
        IdentityEvent::TeamRenamed(e) => Some(directory.team_label(e.team_id)),
        _ => None,
    };
    directory.learn_identity(&env.event);
    let d = directory;
    row.summary = match &env.event {
        IdentityEvent::UserCreated(e) => {
            row.target_user_id = Some(e.user_id);
            row.target_user = Some(e.username.clone());
            format!("created user {} ({})", e.username, e.role.as_str())
        }
        IdentityEvent::UserRoleChanged(e) => {
            row.target(d, e.user_id);
            format!("changed the role of {} to {}", d.user_label(e.user_id), e.role.as_str())
        }
        IdentityEvent::UserPasswordChanged(e) => {
            row.target(d, e.user_id);
            format!("changed the password of {}", d.user_label(e.user_id))
        }
        IdentityEvent::UserDisabled(e) => {
            row.target(d, e.user_id);
            format!("disabled user {}", d.user_label(e.user_id))
        }
        IdentityEvent::UserEnabled(e) => {
            row.target(d, e.user_id);
            format!("enabled user {}", d.user_label(e.user_id))
        }
        IdentityEvent::UserDeleted(e) => {
            row.target_user_id = Some(e.user_id);
            row.target_user = Some(e.username.clone());
            format!("deleted user {}", e.username)
        }
        IdentityEvent::TeamCreated(e) => format!("created team {}", e.name),
        IdentityEvent::TeamRenamed(e) => {
            format!("renamed team {} to {}", before_rename.unwrap_or_default(), e.name)
        }
        IdentityEvent::TeamDeleted(e) => format!("deleted team {}", d.team_label(e.team_id)),
        IdentityEvent::TeamMemberAdded(e) => {
            row.target(d, e.user_id);
            format!("added {} to team {}", d.user_label(e.user_id), d.team_label(e.team_id))
        }
        IdentityEvent::TeamMemberRemoved(e) => {
            row.target(d, e.user_id);
            format!("removed {} from team {}", d.user_label(e.user_id), d.team_label(e.team_id))
        }
        IdentityEvent::KubeconfigExpiryChanged(e) => {
            format!("changed the kubeconfig expiry from {} to {}", e.previous.as_str(), e.expiry.as_str())
        }
        IdentityEvent::SigningKeyAdded(e) => format!("added signing key {}", e.kid),
        IdentityEvent::SigningKeyRetired(e) => format!("retired signing key {}", e.kid),
        IdentityEvent::KubeconfigTokenIssued(e) => {
            row.target_user_id = Some(e.user_id);
            row.target_user = Some(e.username.clone());
            row.token_id = Some(e.token_id.clone());
            row.environments(d, &e.environment_ids);
            format!(
                "issued kubeconfig token {} to {} for {}; {}",
                e.token_id,
                e.username,
                row.environment_list(),
                expiry_text(e.expires_at)
            )
        }
        IdentityEvent::KubeconfigTokenRevoked(e) => {
            row.target(d, e.user_id);
            row.token_id = Some(e.token_id.clone());
            format!("revoked kubeconfig token {} of {}", e.token_id, d.user_label(e.user_id))
        }
        IdentityEvent::UserTokensRevoked(e) => {
            row.target(d, e.user_id);
            let reason = serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let text = format!(
                "revoked every token of {} issued before {} ({reason})",
                d.user_label(e.user_id),
                e.valid_after.format("%Y-%m-%d %H:%M:%SZ")
            );
            row.reason = Some(reason);
            text
        }
        IdentityEvent::SignInSucceeded(e) => {
            row.user = Some(e.username.clone());
            row.user_id = Some(e.user_id);
            row.client_address = Some(e.client_address.clone());
            row.session_id = Some(e.session_id.clone());
            row.decision = Some(Decision::Allowed);
            format!("signed in from {}", e.client_address)
        }
        IdentityEvent::SignInFailed(e) => {
            row.user = Some(e.username.clone());
            row.client_address = Some(e.client_address.clone());
            row.decision = Some(Decision::Denied);
            let reason = serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let text = format!("sign-in as {} failed from {}: {reason}", e.username, e.client_address);
            row.reason = Some(reason);
            text
        }
    };
    row
}

/// A kubeconfig-service event as a row. Names it introduces are learned first.
pub fn environment_row(env: &Envelope<EnvironmentEvent>, at: At, directory: &Directory) -> Row {
    let kind = Kind::of_event(env.event.event_type()).unwrap_or(Kind::Environment);
    let mut row = Row::new(env, Source::Environments, at, kind, env.event.event_type());
    let before_rename = match &env.event {
        EnvironmentEvent::EnvironmentRenamed(e) => Some(directory.environment_label(e.environment_id)),
        _ => None,
    };
    directory.learn_environment(&env.event);
    let d = directory;
    row.summary = match &env.event {
        EnvironmentEvent::EnvironmentRegistered(e) => {
            row.environments(d, &[e.environment_id]);
            format!("registered environment {} at {}", e.name, e.url)
        }
        EnvironmentEvent::EnvironmentRenamed(e) => {
            row.environments(d, &[e.environment_id]);
            format!("renamed environment {} to {}", before_rename.unwrap_or_default(), e.name)
        }
        EnvironmentEvent::EnvironmentEndpointChanged(e) => {
            row.environments(d, &[e.environment_id]);
            format!("moved environment {} to {}", d.environment_label(e.environment_id), e.url)
        }
        EnvironmentEvent::EnvironmentCredentialRotated(e) => {
            row.environments(d, &[e.environment_id]);
            format!(
                "replaced the credential of environment {} ({})",
                d.environment_label(e.environment_id),
                e.credential_kind.as_str()
            )
        }
        EnvironmentEvent::EnvironmentRemoved(e) => {
            row.environments(d, &[e.environment_id]);
            format!("removed environment {}", d.environment_label(e.environment_id))
        }
        EnvironmentEvent::AccessPolicySet(e) => {
            row.environments(d, &[e.environment_id]);
            let entry = |label: String, p: &kubegate_events::environments::PolicyEntry| {
                if p.namespaces.is_empty() {
                    format!("{label}={}", p.role.as_str())
                } else {
                    format!("{label}={}[{}]", p.role.as_str(), p.namespaces.join(","))
                }
            };
            let users: Vec<String> = e.users.iter().map(|p| entry(d.user_label(p.id), p)).collect();
            let teams: Vec<String> = e.teams.iter().map(|p| entry(d.team_label(p.id), p)).collect();
            let mut text = format!("set the access policy of {}:", d.environment_label(e.environment_id));
            if users.is_empty() && teams.is_empty() {
                text.push_str(" nobody");
            }
            if !users.is_empty() {
                let _ = write!(text, " users {}", users.join(" "));
            }
            if !teams.is_empty() {
                let _ = write!(text, "{} teams {}", if users.is_empty() { "" } else { ";" }, teams.join(" "));
            }
            text
        }
        EnvironmentEvent::KubeconfigDownloaded(e) => {
            row.user = Some(e.username.clone());
            row.user_id = Some(e.user_id);
            row.token_id = Some(e.token_id.clone());
            row.client_address = Some(e.client_address.clone());
            row.environments(d, &e.environment_ids);
            format!(
                "downloaded a kubeconfig for {} (token {}; {})",
                row.environment_list(),
                e.token_id,
                expiry_text(e.expires_at)
            )
        }
    };
    row
}

/// What a session's start said, for its end (which carries only the session id).
#[derive(Debug, Clone)]
struct SessionContext {
    user: Option<String>,
    user_id: Option<u64>,
    role: Option<String>,
    environment_ids: Vec<u64>,
    environments: Vec<String>,
    namespace: Option<String>,
    resource: Option<String>,
    name: Option<String>,
    client_address: Option<String>,
    token_id: Option<String>,
}

/// Sessions started and not yet ended, so an end row says where and whose it was.
#[derive(Debug, Default)]
pub struct Sessions {
    open: HashMap<String, SessionContext>,
}

/// Most sessions remembered at once (a start whose end is never seen must not grow it forever).
const MAX_OPEN_SESSIONS: usize = 100_000;

fn resource_of(t: &AuditTarget) -> Option<String> {
    let resource = t.resource.as_ref()?;
    let mut s = String::with_capacity(resource.len() + 16);
    s.push_str(resource);
    if let Some(group) = &t.api_group {
        s.push('.');
        s.push_str(group);
    }
    if let Some(sub) = &t.subresource {
        s.push('/');
        s.push_str(sub);
    }
    Some(s)
}

fn session_kind(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Exec => "exec",
        SessionKind::Attach => "attach",
        SessionKind::PortForward => "port-forward",
    }
}

fn subject_into(row: &mut Row, s: &AuditSubject) {
    if s.username.is_some() {
        row.user = s.username.clone();
        row.user_id = s.user_id;
    }
    row.role = s.role.map(|r| r.as_str().to_string());
    row.client_address = Some(s.client_address.clone());
    row.token_id = s.token_id.clone();
}

fn target_into(row: &mut Row, t: &AuditTarget, directory: &Directory) {
    if let Some(id) = t.environment_id {
        row.environments(directory, &[id]);
    }
    row.namespace = t.namespace.clone();
    row.verb = Some(t.verb.clone());
    row.resource = resource_of(t);
    row.name = t.name.clone();
    row.path = Some(t.path.clone());
}

fn what(row: &Row) -> String {
    let mut s = String::with_capacity(64);
    match (&row.resource, &row.name) {
        (Some(r), Some(n)) => {
            let _ = write!(s, "{r} {n}");
        }
        (Some(r), None) => s.push_str(r),
        _ => s.push_str(row.path.as_deref().unwrap_or("")),
    }
    if let Some(ns) = &row.namespace {
        let _ = write!(s, " in {ns}");
    }
    s
}

fn duration_text(us: u64) -> String {
    if us >= 1_000_000 { format!("{:.1} s", us as f64 / 1e6) } else { format!("{} ms", us / 1000) }
}

impl Sessions {
    /// A proxy audit record as a row.
    pub fn audit_row(&mut self, env: &Envelope<AuditEvent>, at: At, directory: &Directory) -> Row {
        let kind = Kind::of_event(env.event.event_type()).unwrap_or(Kind::Request);
        let mut row = Row::new(env, Source::Audit, at, kind, env.event.event_type());
        match &env.event {
            AuditEvent::RequestAudited(e) => {
                subject_into(&mut row, &e.subject);
                target_into(&mut row, &e.target, directory);
                row.status = Some(e.status);
                row.decision = Some(e.decision);
                row.reason = e.reason.clone();
                row.duration_us = Some(e.duration_us);
                row.bytes_in = Some(e.bytes_in);
                row.bytes_out = Some(e.bytes_out);
                let mut text = format!("{} {} → {}", e.target.verb, what(&row), e.status);
                // Why it was refused or failed; how a request that succeeded ended stays in `reason`.
                if let Some(reason) = &e.reason
                    && (e.decision == Decision::Denied || e.status >= 400)
                {
                    let _ = write!(text, ": {reason}");
                }
                row.summary = text;
            }
            AuditEvent::SessionStarted(e) => {
                subject_into(&mut row, &e.subject);
                target_into(&mut row, &e.target, directory);
                row.decision = Some(Decision::Allowed);
                row.session_id = Some(e.session_id.clone());
                row.summary =
                    format!("{} session started on {} ({})", session_kind(e.kind), what(&row), e.protocol);
                if self.open.len() < MAX_OPEN_SESSIONS {
                    self.open.insert(
                        e.session_id.clone(),
                        SessionContext {
                            user: row.user.clone(),
                            user_id: row.user_id,
                            role: row.role.clone(),
                            environment_ids: row.environment_ids.clone(),
                            environments: row.environments.clone(),
                            namespace: row.namespace.clone(),
                            resource: row.resource.clone(),
                            name: row.name.clone(),
                            client_address: row.client_address.clone(),
                            token_id: row.token_id.clone(),
                        },
                    );
                }
            }
            AuditEvent::SessionEnded(e) => {
                if let Some(c) = self.open.remove(&e.session_id) {
                    row.user = c.user.or(row.user);
                    row.user_id = c.user_id.or(row.user_id);
                    row.role = c.role;
                    row.environment_ids = c.environment_ids;
                    row.environments = c.environments;
                    row.namespace = c.namespace;
                    row.resource = c.resource;
                    row.name = c.name;
                    row.client_address = c.client_address;
                    row.token_id = c.token_id;
                }
                row.session_id = Some(e.session_id.clone());
                row.reason = Some(e.end_reason.clone());
                row.duration_us = Some(e.duration_us);
                row.bytes_in = Some(e.bytes_in);
                row.bytes_out = Some(e.bytes_out);
                let on = if row.resource.is_some() { format!(" on {}", what(&row)) } else { String::new() };
                row.summary = format!(
                    "{} session ended{on} after {}: {} ({} B in, {} B out)",
                    session_kind(e.kind),
                    duration_text(e.duration_us),
                    e.end_reason,
                    e.bytes_in,
                    e.bytes_out
                );
            }
        }
        row
    }
}
