//! Which rows to show. One struct holds the filters as typed — flags of `kubegate audit` and query
//! parameters of `GET /api/audit` alike — and resolves them (times, names) into a [`Filter`]
//! that rows are matched against. Every error names the filter at fault.

use chrono::{DateTime, Utc};
use kubegate_events::audit::Decision;

use crate::directory::Directory;
use crate::row::{Kind, Row, Source};

/// The filters as given (flags or query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct FilterSpec {
    /// Only records at or after this time: how long ago (`30m`, `1h`, `7d`) or an RFC 3339 time
    /// (`2025-06-01T08:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only records at or before this time (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only records by or about this user (name, any letter case): what they did, and what was
    /// done to them (created, revoked, added to a team, a failed sign-in under their name).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only records of this environment (id or name).
    #[arg(long = "env", value_name = "ID|NAME")]
    pub env: Option<String>,
    /// Only requests and sessions in this namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only these kinds, comma-separated: request, session, signin, token, settings, access,
    /// environment, kubeconfig, user, team, key.
    #[arg(long, value_name = "KIND[,KIND...]")]
    pub kind: Option<String>,
    /// Only allowed or only denied: requests, sessions (allowed) and sign-ins (a failed one is
    /// denied).
    #[arg(long, value_name = "allowed|denied")]
    pub decision: Option<String>,
    /// Only what one request caused, across services: a kubectl call's or a REST call's
    /// `x-kubegate-request-id`.
    #[arg(long, value_name = "ID")]
    pub correlation: Option<String>,
}

/// A filter value that cannot be used; `param` is its name (`since`, `env`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct FilterError {
    pub param: &'static str,
    pub message: String,
}

fn bad(param: &'static str, message: impl Into<String>) -> FilterError {
    FilterError { param, message: message.into() }
}

/// The query parameter names [`FilterSpec::set`] takes.
pub const PARAMETERS: [&str; 8] =
    ["since", "until", "user", "env", "namespace", "kind", "decision", "correlation"];

impl FilterSpec {
    /// Sets one filter by its query parameter name; `Ok(false)` when `key` names no filter.
    pub fn set(&mut self, key: &str, value: String) -> Result<bool, FilterError> {
        let slot = match key {
            "since" => &mut self.since,
            "until" => &mut self.until,
            "user" => &mut self.user,
            "env" => &mut self.env,
            "namespace" => &mut self.namespace,
            "kind" => &mut self.kind,
            "decision" => &mut self.decision,
            "correlation" => &mut self.correlation,
            _ => return Ok(false),
        };
        if slot.is_some() {
            return Err(FilterError {
                param: PARAMETERS.into_iter().find(|p| *p == key).unwrap_or("filter"),
                message: "given more than once".into(),
            });
        }
        *slot = Some(value);
        Ok(true)
    }

    /// The filter, with times taken relative to `now` and names looked up in `directory`.
    pub fn resolve(&self, now: DateTime<Utc>, directory: &Directory) -> Result<Filter, FilterError> {
        let since = self.since.as_deref().map(|s| parse_time("since", s, now)).transpose()?;
        let until = self.until.as_deref().map(|s| parse_time("until", s, now)).transpose()?;
        if let (Some(s), Some(u)) = (since, until)
            && u < s
        {
            return Err(bad("until", "is before since"));
        }
        let user = match self.user.as_deref().map(str::trim) {
            None => None,
            Some("") => return Err(bad("user", "is empty")),
            Some(name) => Some(UserMatch { name: name.to_string(), ids: directory.users_named(name) }),
        };
        let environment_id = match self.env.as_deref().map(str::trim) {
            None => None,
            Some("") => return Err(bad("env", "is empty")),
            Some(e) => match directory.environment_named(e) {
                Some(id) => Some(id),
                None => match e.parse::<u64>() {
                    Ok(id) if id > 0 => Some(id),
                    _ => return Err(bad("env", format!("no environment is named {e:?}"))),
                },
            },
        };
        let namespace = match self.namespace.as_deref().map(str::trim) {
            Some("") => return Err(bad("namespace", "is empty")),
            other => other.map(str::to_string),
        };
        let kinds = match self.kind.as_deref() {
            None => None,
            Some(list) => {
                let mut set = KindSet::default();
                for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let kind = Kind::parse(part).ok_or_else(|| {
                        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                        bad("kind", format!("{part:?} is not a kind; use one of {}", all.join(", ")))
                    })?;
                    set.insert(kind);
                }
                if set.is_empty() {
                    return Err(bad("kind", "is empty"));
                }
                Some(set)
            }
        };
        let decision = match self.decision.as_deref().map(str::trim) {
            None => None,
            Some("allowed") => Some(Decision::Allowed),
            Some("denied") => Some(Decision::Denied),
            Some(other) => return Err(bad("decision", format!("{other:?} is neither allowed nor denied"))),
        };
        let correlation = match self.correlation.as_deref().map(str::trim) {
            Some("") => return Err(bad("correlation", "is empty")),
            other => other.map(str::to_string),
        };
        Ok(Filter { since, until, user, environment_id, namespace, kinds, decision, correlation })
    }
}

/// `1h` (that long before `now`) or an RFC 3339 time.
pub fn parse_time(param: &'static str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FilterError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    match humantime::parse_duration(s) {
        Ok(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| bad(param, format!("{s:?} is too long ago"))),
        Err(_) => Err(bad(
            param,
            format!(
                "{s:?} is neither a duration (like 30m, 1h, 7d) nor an RFC 3339 time (like 2025-06-01T08:00:00Z)"
            ),
        )),
    }
}

/// A set of kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u16);

impl KindSet {
    pub fn insert(&mut self, kind: Kind) {
        self.0 |= kind.bit();
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// A user to match: by name as recorded, or by any id that had the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMatch {
    pub name: String,
    pub ids: Vec<u64>,
}

impl UserMatch {
    fn matches(&self, row: &Row) -> bool {
        let named = |n: &Option<String>| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&self.name));
        let id = |i: Option<u64>| i.is_some_and(|i| self.ids.contains(&i));
        named(&row.user) || named(&row.target_user) || id(row.user_id) || id(row.target_user_id)
    }
}

/// The resolved filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub user: Option<UserMatch>,
    pub environment_id: Option<u64>,
    pub namespace: Option<String>,
    pub kinds: Option<KindSet>,
    pub decision: Option<Decision>,
    pub correlation: Option<String>,
}

impl Filter {
    /// Whether rows of `kind` may pass (checked before a row is built).
    pub fn wants_kind(&self, kind: Kind) -> bool {
        self.kinds.is_none_or(|k| k.contains(kind))
    }

    /// Whether a row at `time` may pass.
    pub fn wants_time(&self, time: DateTime<Utc>) -> bool {
        self.since.is_none_or(|s| time >= s) && self.until.is_none_or(|u| time <= u)
    }

    /// Whether any row of `source` may pass.
    pub fn wants_source(&self, source: Source) -> bool {
        self.kinds.is_none_or(|k| k.iter().any(|kind| kind.source() == source))
    }

    /// Whether rows with this correlation id may pass (checked before a row is built).
    pub fn wants_correlation(&self, correlation: &str) -> bool {
        self.correlation.as_deref().is_none_or(|c| c == correlation)
    }

    /// The narrowest subject filter that reads what may pass from `source`.
    pub fn subject(&self, source: Source) -> String {
        let Some(kinds) = self.kinds else { return source.all_subjects() };
        let mut of_source = kinds.iter().filter(|k| k.source() == source);
        match (of_source.next(), of_source.next()) {
            (Some(only), None) => only.subject().map(str::to_string).unwrap_or_else(|| source.all_subjects()),
            _ => source.all_subjects(),
        }
    }

    pub fn matches(&self, row: &Row) -> bool {
        self.wants_kind(row.kind)
            && self.wants_time(row.time)
            && self.wants_correlation(&row.correlation_id)
            && self.decision.is_none_or(|d| row.decision == Some(d))
            && self.environment_id.is_none_or(|e| row.environment_ids.contains(&e))
            && self.namespace.as_deref().is_none_or(|ns| row.namespace.as_deref() == Some(ns))
            && self.user.as_ref().is_none_or(|u| u.matches(row))
    }
}
