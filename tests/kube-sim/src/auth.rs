//! Authentication (bearer tokens, client certificates) and impersonation, following the API
//! server's authenticators and its `WithImpersonation` filter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use http::HeaderMap;
use serde::Serialize;

use crate::query::percent_decode;
use crate::rbac::{Attributes, Decision};
use crate::status::ApiError;

/// The user a request acts as (`user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";

impl UserInfo {
    /// A user with `system:authenticated` appended as the API server's group adder does.
    pub fn authenticated(name: &str, groups: &[String]) -> UserInfo {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo { name: name.to_string(), groups, ..UserInfo::default() }
    }

    pub fn anonymous() -> UserInfo {
        UserInfo { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()], ..UserInfo::default() }
    }

    /// The `userInfo` object of reviews.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("username".into(), self.name.clone().into());
        if !self.uid.is_empty() {
            m.insert("uid".into(), self.uid.clone().into());
        }
        if !self.groups.is_empty() {
            m.insert("groups".into(), self.groups.clone().into());
        }
        if !self.extra.is_empty() {
            m.insert("extra".into(), serde_json::to_value(&self.extra).unwrap_or_default());
        }
        serde_json::Value::Object(m)
    }
}

/// Bearer tokens: the configured ones plus any issued at run time (TokenRequest, tests).
#[derive(Debug, Default)]
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, Arc<UserInfo>>>,
}

impl TokenAuthenticator {
    pub fn new(entries: impl IntoIterator<Item = (String, UserInfo)>) -> TokenAuthenticator {
        TokenAuthenticator {
            tokens: RwLock::new(entries.into_iter().map(|(t, u)| (t, Arc::new(u))).collect()),
        }
    }

    pub fn lookup(&self, token: &str) -> Option<Arc<UserInfo>> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
    }

    pub fn insert(&self, token: String, user: UserInfo) {
        self.tokens.write().unwrap_or_else(|p| p.into_inner()).insert(token, Arc::new(user));
    }

    pub fn remove(&self, token: &str) {
        self.tokens.write().unwrap_or_else(|p| p.into_inner()).remove(token);
    }
}

/// What the `Authorization` header carries.
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    /// Present but not a usable bearer token.
    Other,
}

pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else { return Credential::None };
    let Ok(v) = v.to_str() else { return Credential::Other };
    let mut parts = v.trim().splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Credential::Bearer(token)
        }
        _ => Credential::Other,
    }
}

/// The user of a verified client certificate: CN is the name, each O a group.
pub fn cert_user(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(UserInfo::authenticated(&name, &groups))
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_EXTRA_PREFIX: &str = "impersonate-extra-";

/// True when the request carries any impersonation header.
pub fn wants_impersonation(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == IMPERSONATE_USER
            || k == IMPERSONATE_GROUP
            || k == IMPERSONATE_UID
            || k.starts_with(IMPERSONATE_EXTRA_PREFIX)
    })
}

enum Target {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::ServiceAccount { namespace, name } => format!("{{ServiceAccount {namespace} {name}  }}"),
            Target::User(n) => format!("{{User  {n}  }}"),
            Target::Group(n) => format!("{{Group  {n}  }}"),
            Target::Extra { key, value } => format!("{{UserExtra  {value} authentication.k8s.io/v1 {key}}}"),
            Target::Uid(u) => format!("{{UID  {u}  }}"),
        }
    }

    fn attributes(&self) -> Attributes<'_> {
        let (group, resource, sub, ns, name) = match self {
            Target::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", "", namespace.as_str(), name.as_str())
            }
            Target::User(n) => ("", "users", "", "", n.as_str()),
            Target::Group(n) => ("", "groups", "", "", n.as_str()),
            Target::Extra { key, value } => {
                ("authentication.k8s.io", "userextras", key.as_str(), "", value.as_str())
            }
            Target::Uid(u) => ("authentication.k8s.io", "uids", "", "", u.as_str()),
        };
        Attributes {
            resource_request: true,
            verb: "impersonate",
            namespace: ns,
            api_group: group,
            resource,
            subresource: sub,
            name,
            ..Attributes::default()
        }
    }
}

/// Applies impersonation headers: checks the `impersonate` verb for the requesting user on
/// each requested user, group, extra and uid (in that order) and returns the new user, or
/// `None` when the request does not impersonate.
pub fn impersonate<'r>(
    requestor: &UserInfo,
    headers: &HeaderMap,
    authorize: impl Fn(&UserInfo, &Attributes<'_>) -> Decision<'r>,
) -> Result<Option<UserInfo>, ApiError> {
    let mut targets = Vec::new();
    let user = headers.get(IMPERSONATE_USER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let has_user = !user.is_empty();
    if has_user {
        let sa = user.strip_prefix("system:serviceaccount:").and_then(|rest| {
            let (ns, name) = rest.split_once(':')?;
            (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
                .then(|| (ns.to_string(), name.to_string()))
        });
        targets.push(match sa {
            Some((namespace, name)) => Target::ServiceAccount { namespace, name },
            None => Target::User(user.to_string()),
        });
    }
    let groups_specified = headers.contains_key(IMPERSONATE_GROUP);
    for g in headers.get_all(IMPERSONATE_GROUP) {
        targets.push(Target::Group(String::from_utf8_lossy(g.as_bytes()).into_owned()));
    }
    let mut has_extra = false;
    for name in headers.keys() {
        let Some(raw_key) = name.as_str().strip_prefix(IMPERSONATE_EXTRA_PREFIX) else { continue };
        has_extra = true;
        let key = percent_decode(&raw_key.to_ascii_lowercase(), false);
        for v in headers.get_all(name) {
            targets.push(Target::Extra {
                key: key.clone(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            });
        }
    }
    let uid = headers.get(IMPERSONATE_UID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let has_uid = !uid.is_empty();
    if has_uid {
        targets.push(Target::Uid(uid.to_string()));
    }
    if (groups_specified || has_extra || has_uid) && !has_user {
        let list = targets.iter().map(Target::describe).collect::<Vec<_>>().join(" ");
        return Err(ApiError::internal(format!("requested [{list}] without impersonating a user")));
    }
    if targets.is_empty() {
        return Ok(None);
    }

    let mut out = UserInfo::default();
    for t in &targets {
        let attrs = t.attributes();
        let decision = authorize(requestor, &attrs);
        if !decision.allowed {
            return Err(decision.refusal(&attrs, &requestor.name));
        }
        match t {
            Target::ServiceAccount { namespace, name } => {
                out.name = format!("system:serviceaccount:{namespace}:{name}");
                if !groups_specified {
                    out.groups =
                        vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")];
                }
            }
            Target::User(n) => out.name = n.clone(),
            Target::Group(g) => out.groups.push(g.clone()),
            Target::Extra { key, value } => out.extra.entry(key.clone()).or_default().push(value.clone()),
            Target::Uid(u) => out.uid = u.clone(),
        }
    }
    if out.name != ANONYMOUS {
        if !out.groups.iter().any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED) {
            out.groups.push(AUTHENTICATED.into());
        }
    } else if !out.groups.iter().any(|g| g == UNAUTHENTICATED) {
        out.groups.push(UNAUTHENTICATED.into());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            let Ok(v) = HeaderValue::from_str(v) else { panic!("header") };
            h.append(*k, v);
        }
        h
    }

    fn allow_all(_: &UserInfo, _: &Attributes<'_>) -> Decision<'static> {
        Decision::allow()
    }

    fn kubegate() -> UserInfo {
        UserInfo::authenticated("kubegate", &[])
    }

    #[test]
    fn bearer_parsing() {
        assert!(matches!(
            credential(&headers(&[("authorization", "Bearer abc")])),
            Credential::Bearer("abc")
        ));
        assert!(matches!(
            credential(&headers(&[("authorization", "bearer abc")])),
            Credential::Bearer("abc")
        ));
        assert!(matches!(credential(&headers(&[("authorization", "Basic abc")])), Credential::Other));
        assert!(matches!(credential(&headers(&[])), Credential::None));
    }

    #[test]
    fn impersonates_user_groups_uid_extra() {
        let h = headers(&[
            ("impersonate-user", "alice"),
            ("impersonate-group", "devs"),
            ("impersonate-group", "ops"),
            ("impersonate-uid", "u-9"),
            ("impersonate-extra-scopes", "view"),
            ("impersonate-extra-scopes", "edit"),
            ("impersonate-extra-example.com%2fteam", "blue"),
        ]);
        let Ok(Some(u)) = impersonate(&kubegate(), &h, allow_all) else { panic!("impersonation") };
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, vec!["devs", "ops", AUTHENTICATED]);
        assert_eq!(u.uid, "u-9");
        assert_eq!(u.extra.get("scopes"), Some(&vec!["view".to_string(), "edit".to_string()]));
        assert_eq!(u.extra.get("example.com/team"), Some(&vec!["blue".to_string()]));
    }

    #[test]
    fn no_headers_no_change() {
        assert_eq!(impersonate(&kubegate(), &headers(&[]), allow_all), Ok(None));
    }

    #[test]
    fn user_only_gets_authenticated_group() {
        let Ok(Some(u)) = impersonate(&kubegate(), &headers(&[("impersonate-user", "bob")]), allow_all)
        else {
            panic!()
        };
        assert_eq!(u.groups, vec![AUTHENTICATED]);
        let h = headers(&[("impersonate-user", "bob"), ("impersonate-group", "system:unauthenticated")]);
        let Ok(Some(u)) = impersonate(&kubegate(), &h, allow_all) else { panic!() };
        assert_eq!(u.groups, vec![UNAUTHENTICATED]);
    }

    #[test]
    fn service_accounts() {
        let h = headers(&[("impersonate-user", "system:serviceaccount:dev:ci")]);
        let seen = std::cell::RefCell::new(Vec::new());
        let Ok(Some(u)) = impersonate(&kubegate(), &h, |_, a| {
            seen.borrow_mut().push((a.resource.to_string(), a.namespace.to_string(), a.name.to_string()));
            Decision::allow()
        }) else {
            panic!()
        };
        assert_eq!(u.name, "system:serviceaccount:dev:ci");
        assert_eq!(u.groups, vec!["system:serviceaccounts", "system:serviceaccounts:dev", AUTHENTICATED]);
        let seen = seen.borrow();
        assert_eq!(seen[0], ("serviceaccounts".to_string(), "dev".to_string(), "ci".to_string()));
    }

    #[test]
    fn groups_without_user_is_an_error() {
        let Err(e) = impersonate(&kubegate(), &headers(&[("impersonate-group", "devs")]), allow_all) else {
            panic!()
        };
        assert_eq!(e.code, 500);
        assert!(e.message.contains("without impersonating a user"), "{}", e.message);
    }

    #[test]
    fn each_target_is_checked() {
        let h = headers(&[("impersonate-user", "alice"), ("impersonate-group", "admins")]);
        let only_users = |_: &UserInfo, a: &Attributes<'_>| {
            if a.resource == "users" { Decision::allow() } else { Decision::deny() }
        };
        let Err(e) = impersonate(&kubegate(), &h, only_users) else { panic!() };
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "groups \"admins\" is forbidden: User \"kubegate\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
        );
        let deny = |_: &UserInfo, _: &Attributes<'_>| Decision::deny();
        let Err(e) = impersonate(&kubegate(), &headers(&[("impersonate-user", "x")]), deny) else { panic!() };
        assert_eq!(
            e.message,
            "users \"x\" is forbidden: User \"kubegate\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        let h = headers(&[("impersonate-user", "alice"), ("impersonate-uid", "u1")]);
        let Err(e) = impersonate(&kubegate(), &h, only_users) else { panic!() };
        assert_eq!(
            e.message,
            "uids.authentication.k8s.io \"u1\" is forbidden: User \"kubegate\" cannot impersonate resource \"uids\" in API group \"authentication.k8s.io\" at the cluster scope"
        );
    }
}
