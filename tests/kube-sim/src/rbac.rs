//! The RBAC authorizer: roles, cluster roles and their bindings (rbac.authorization.k8s.io/v1)
//! evaluated the way Kubernetes' RBAC authorizer does, plus the `system:masters` short cut.
//! Pure: the index is built from stored objects and queried without I/O.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::auth::UserInfo;
use crate::selectors::LabelSelector;
use crate::status::ApiError;

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

impl PolicyRule {
    pub fn from_value(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }

    /// `resource` or `resource/subresource`, compared in place; `*/subresource` matches that
    /// subresource of any resource.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == "*"
                || if subresource.is_empty() {
                    r == resource
                } else {
                    r.strip_prefix(resource).and_then(|rest| rest.strip_prefix('/')) == Some(subresource)
                        || r.strip_prefix("*/") == Some(subresource)
                }
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls
            .iter()
            .any(|u| u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*'))))
    }

    /// Whether this rule allows the request described by `a`.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        if a.resource_request {
            self.verb_matches(a.verb)
                && self.group_matches(a.api_group)
                && self.resource_matches(a.resource, a.subresource)
                && self.name_matches(a.name)
        } else {
            self.verb_matches(a.verb) && self.url_matches(a.path)
        }
    }
}

/// What is being asked (`authorizer.Attributes` less the user), borrowed from the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub resource_request: bool,
    pub verb: &'a str,
    pub namespace: &'a str,
    pub api_group: &'a str,
    pub api_version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub path: &'a str,
}

impl Attributes<'_> {
    /// `User "alice" cannot list resource "pods" in API group "" in the namespace "dev"`.
    pub fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!("User \"{user}\" cannot {} path \"{}\"", self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        if self.namespace.is_empty() {
            format!(
                "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" in the namespace \"{}\"",
                self.verb, self.api_group, self.namespace
            )
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    fn applies_to(&self, user: &UserInfo, binding_ns: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.iter().any(|g| g == &self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() { binding_ns } else { &self.namespace };
                !ns.is_empty()
                    && user
                        .name
                        .strip_prefix("system:serviceaccount:")
                        .and_then(|rest| rest.strip_prefix(ns))
                        .and_then(|rest| rest.strip_prefix(':'))
                        == Some(self.name.as_str())
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => format!("ServiceAccount \"{}/{}\"", self.name, self.namespace),
            k => format!("{k} \"{}\"", self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    name: String,
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_value(v: &Value) -> Binding {
        let role_ref = v.get("roleRef");
        Binding {
            name: v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            namespace: v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            role_kind: role_ref
                .and_then(|r| r.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            role_name: role_ref
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subjects: v
                .get("subjects")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|s| Subject {
                            kind: s.get("kind").and_then(Value::as_str).unwrap_or_default().to_string(),
                            name: s.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                            namespace: s
                                .get("namespace")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The outcome of an authorization check. Why it was allowed is put into words only when
/// asked ([`Decision::reason`]): most checks pass and nobody reads their reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub allowed: bool,
    why: Why<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Why<'a> {
    Unstated,
    /// Allowed by this binding (a ClusterRoleBinding when `cluster`) to this subject.
    Bound {
        binding: &'a Binding,
        subject: &'a Subject,
        cluster: bool,
    },
    /// Refused, and these role references (at least one) were missing.
    Missing(Vec<String>),
}

impl Decision<'_> {
    /// Allowed, with no reason to give.
    pub fn allow() -> Decision<'static> {
        Decision { allowed: true, why: Why::Unstated }
    }

    /// Refused, with no reason to give.
    pub fn deny() -> Decision<'static> {
        Decision { allowed: false, why: Why::Unstated }
    }

    /// The authorizer's reason, as the API server words it; empty when there is none.
    pub fn reason(&self) -> String {
        match &self.why {
            Why::Unstated => String::new(),
            Why::Bound { binding: b, subject, cluster: true } => format!(
                "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to {}",
                b.name,
                b.role_name,
                subject.describe()
            ),
            Why::Bound { binding: b, subject, cluster: false } => format!(
                "RBAC: allowed by RoleBinding \"{}/{}\" of {} \"{}\" to {}",
                b.name,
                b.namespace,
                b.role_kind,
                b.role_name,
                subject.describe()
            ),
            Why::Missing(errors) => format!("RBAC: [{}]", errors.join(", ")),
        }
    }

    /// The 403 the API server answers when this decision refused `user` the request `attrs`:
    /// the forbidden message, then the reason when there is one.
    pub fn refusal(&self, attrs: &Attributes<'_>, user: &str) -> ApiError {
        let mut msg = attrs.forbidden_message(user);
        let reason = self.reason();
        if !reason.is_empty() {
            msg = format!("{msg}: {reason}");
        }
        if attrs.resource_request {
            ApiError::forbidden(attrs.api_group, attrs.resource, attrs.name, msg)
        } else {
            ApiError::forbidden("", "", "", msg)
        }
    }
}

/// The parsed RBAC objects.
#[derive(Debug, Default, Clone)]
pub struct RbacIndex {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
}

/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

impl RbacIndex {
    /// Builds the index from stored objects: `(kind, object)` pairs of Role, ClusterRole,
    /// RoleBinding and ClusterRoleBinding. ClusterRoles with an `aggregationRule` get the rules of
    /// every ClusterRole their selectors match, as the aggregation controller would.
    pub fn build<'a>(objects: impl IntoIterator<Item = (&'a str, &'a Value)>) -> RbacIndex {
        let mut idx = RbacIndex::default();
        let mut aggregated: Vec<(String, Vec<LabelSelector>)> = Vec::new();
        let mut cluster_role_objs: Vec<&Value> = Vec::new();
        for (kind, obj) in objects {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let ns =
                obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
            let rules = || -> Vec<PolicyRule> {
                obj.get("rules")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(PolicyRule::from_value).collect())
                    .unwrap_or_default()
            };
            match kind {
                "ClusterRole" => {
                    if let Some(sels) =
                        obj.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array)
                    {
                        let sels =
                            sels.iter().filter_map(|s| LabelSelector::from_object(Some(s)).ok()).collect();
                        aggregated.push((name.clone(), sels));
                    }
                    cluster_role_objs.push(obj);
                    idx.cluster_roles.insert(name, rules());
                }
                "Role" => {
                    idx.roles.insert((ns, name), rules());
                }
                "ClusterRoleBinding" => idx.cluster_bindings.push(Binding::from_value(obj)),
                "RoleBinding" => idx.bindings.entry(ns).or_default().push(Binding::from_value(obj)),
                _ => {}
            }
        }
        for (name, sels) in aggregated {
            let mut rules: Vec<PolicyRule> = Vec::new();
            for other in &cluster_role_objs {
                let other_name = other.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                if other_name == name {
                    continue;
                }
                if sels.iter().any(|s| s.matches_object(other)) {
                    for r in idx.cluster_roles.get(other_name).cloned().unwrap_or_default() {
                        if !rules.contains(&r) {
                            rules.push(r);
                        }
                    }
                }
            }
            if let Some(existing) = idx.cluster_roles.get_mut(&name) {
                for r in rules {
                    if !existing.contains(&r) {
                        existing.push(r);
                    }
                }
            }
        }
        idx
    }

    fn role_rules(&self, kind: &str, name: &str, binding_ns: &str) -> Result<&[PolicyRule], String> {
        match kind {
            "ClusterRole" => self
                .cluster_roles
                .get(name)
                .map(Vec::as_slice)
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io \"{name}\" not found")),
            "Role" => self
                .roles
                .get(&(binding_ns.to_string(), name.to_string()))
                .map(Vec::as_slice)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io \"{name}\" not found")),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Decides whether `user` may do `attrs`.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision<'_> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision::allow();
        }
        let mut errors: Vec<String> = Vec::new();
        let cluster =
            self.cluster_bindings.iter().filter(|b| b.role_kind == "ClusterRole").map(|b| (b, true));
        let namespaced = (!attrs.namespace.is_empty())
            .then(|| self.bindings.get(attrs.namespace))
            .flatten()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|b| (b, false));
        for (b, is_cluster) in cluster.chain(namespaced) {
            let ns = if is_cluster { "" } else { b.namespace.as_str() };
            let Some(subject) = b.subjects.iter().find(|s| s.applies_to(user, ns)) else { continue };
            match self.role_rules(&b.role_kind, &b.role_name, ns) {
                Ok(rules) if rules.iter().any(|r| r.allows(attrs)) => {
                    return Decision {
                        allowed: true,
                        why: Why::Bound { binding: b, subject, cluster: is_cluster },
                    };
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        Decision { allowed: false, why: if errors.is_empty() { Why::Unstated } else { Why::Missing(errors) } }
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide rules included), for
    /// SelfSubjectRulesReview. Returns the rules and whether some role reference was missing.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, bool) {
        let mut out: Vec<PolicyRule> = Vec::new();
        let mut incomplete = false;
        let mut push = |rules: &[PolicyRule]| {
            for r in rules {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        };
        for b in &self.cluster_bindings {
            if b.subjects.iter().any(|s| s.applies_to(user, "")) {
                match self.role_rules(&b.role_kind, &b.role_name, "") {
                    Ok(r) => push(r),
                    Err(_) => incomplete = true,
                }
            }
        }
        if !namespace.is_empty() {
            for b in self.bindings.get(namespace).map(Vec::as_slice).unwrap_or_default() {
                if b.subjects.iter().any(|s| s.applies_to(user, &b.namespace)) {
                    match self.role_rules(&b.role_kind, &b.role_name, &b.namespace) {
                        Ok(r) => push(r),
                        Err(_) => incomplete = true,
                    }
                }
            }
        }
        (out, incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    fn res<'a>(
        verb: &'a str,
        ns: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            resource_request: true,
            verb,
            namespace: ns,
            api_group: group,
            resource,
            subresource: sub,
            name,
            ..Attributes::default()
        }
    }

    fn index() -> RbacIndex {
        let objs = vec![
            (
                "ClusterRole",
                json!({"metadata": {"name": "pod-reader"}, "rules": [
                    {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]}),
            ),
            (
                "ClusterRole",
                json!({"metadata": {"name": "discovery"}, "rules": [
                    {"nonResourceURLs": ["/api", "/api/*", "/version"], "verbs": ["get"]}]}),
            ),
            (
                "Role",
                json!({"metadata": {"name": "exec", "namespace": "dev"}, "rules": [
                    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
                    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"], "verbs": ["*"]},
                    {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]}]}),
            ),
            (
                "ClusterRole",
                json!({"metadata": {"name": "impersonator"}, "rules": [
                    {"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]}),
            ),
            (
                "ClusterRole",
                json!({"metadata": {"name": "agg", "labels": {}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}, "rules": []}),
            ),
            (
                "ClusterRole",
                json!({"metadata": {"name": "agg-part", "labels": {"agg": "true"}}, "rules": [
                    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]}),
            ),
            (
                "ClusterRoleBinding",
                json!({"metadata": {"name": "readers"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
                       "subjects": [{"kind": "Group", "name": "readers"}]}),
            ),
            (
                "ClusterRoleBinding",
                json!({"metadata": {"name": "discovery"}, "roleRef": {"kind": "ClusterRole", "name": "discovery"},
                       "subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
            ),
            (
                "ClusterRoleBinding",
                json!({"metadata": {"name": "imp"}, "roleRef": {"kind": "ClusterRole", "name": "impersonator"},
                       "subjects": [{"kind": "User", "name": "kubegate"}]}),
            ),
            (
                "ClusterRoleBinding",
                json!({"metadata": {"name": "agg"}, "roleRef": {"kind": "ClusterRole", "name": "agg"},
                       "subjects": [{"kind": "User", "name": "aggy"}]}),
            ),
            (
                "RoleBinding",
                json!({"metadata": {"name": "alice-exec", "namespace": "dev"}, "roleRef": {"kind": "Role", "name": "exec"},
                       "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ci"}]}),
            ),
            (
                "RoleBinding",
                json!({"metadata": {"name": "alice-read", "namespace": "dev"}, "roleRef": {"kind": "ClusterRole", "name": "pod-reader"},
                       "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
            (
                "RoleBinding",
                json!({"metadata": {"name": "broken", "namespace": "qa"}, "roleRef": {"kind": "Role", "name": "missing"},
                       "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
        ];
        RbacIndex::build(objs.iter().map(|(k, v)| (*k, v)))
    }

    #[test]
    fn masters_can_do_anything() {
        let idx = RbacIndex::default();
        let d = idx.authorize(&user("root", &[MASTERS]), &res("delete", "kube-system", "", "pods", "", "x"));
        assert!(d.allowed);
    }

    #[test]
    fn cluster_bindings_by_group() {
        let idx = index();
        let bob = user("bob", &["readers", "system:authenticated"]);
        assert!(idx.authorize(&bob, &res("list", "kube-system", "", "pods", "", "")).allowed);
        assert!(idx.authorize(&bob, &res("get", "", "", "pods", "log", "x")).allowed);
        assert!(!idx.authorize(&bob, &res("delete", "default", "", "pods", "", "x")).allowed);
        assert!(!idx.authorize(&bob, &res("get", "default", "", "pods", "exec", "x")).allowed);
        assert!(!idx.authorize(&bob, &res("get", "default", "apps", "pods", "", "x")).allowed);
        let d = idx.authorize(&bob, &res("list", "dev", "", "pods", "", ""));
        assert_eq!(
            d.reason(),
            "RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"pod-reader\" to Group \"readers\""
        );
    }

    #[test]
    fn role_bindings_are_namespaced() {
        let idx = index();
        let alice = user("alice", &["system:authenticated"]);
        assert!(idx.authorize(&alice, &res("create", "dev", "", "pods", "exec", "api")).allowed);
        assert!(!idx.authorize(&alice, &res("create", "default", "", "pods", "exec", "api")).allowed);
        assert!(idx.authorize(&alice, &res("list", "dev", "", "pods", "", "")).allowed);
        assert!(!idx.authorize(&alice, &res("list", "", "", "pods", "", "")).allowed);
        // resourceNames
        assert!(idx.authorize(&alice, &res("update", "dev", "", "configmaps", "", "app")).allowed);
        assert!(!idx.authorize(&alice, &res("update", "dev", "", "configmaps", "", "other")).allowed);
        assert!(!idx.authorize(&alice, &res("list", "dev", "", "configmaps", "", "")).allowed);
        // */subresource
        assert!(idx.authorize(&alice, &res("get", "dev", "apps", "deployments", "status", "web")).allowed);
        assert!(!idx.authorize(&alice, &res("get", "dev", "apps", "deployments", "", "web")).allowed);
        // service account subject defaults to the binding's namespace
        let sa = user("system:serviceaccount:dev:ci", &[]);
        assert!(idx.authorize(&sa, &res("get", "dev", "", "pods", "exec", "x")).allowed);
        for other in [
            "system:serviceaccount:default:ci",
            "system:serviceaccount:devx:ci",
            "system:serviceaccount:dev:ci:x",
        ] {
            assert!(
                !idx.authorize(&user(other, &[]), &res("get", "dev", "", "pods", "exec", "x")).allowed,
                "{other}"
            );
        }
        let d = idx.authorize(&alice, &res("create", "dev", "", "pods", "exec", "api"));
        assert_eq!(
            d.reason(),
            "RBAC: allowed by RoleBinding \"alice-exec/dev\" of Role \"exec\" to User \"alice\""
        );
    }

    #[test]
    fn missing_roles_give_a_reason() {
        let idx = index();
        let alice = user("alice", &[]);
        let d = idx.authorize(&alice, &res("get", "qa", "", "pods", "", "x"));
        assert!(!d.allowed);
        assert_eq!(d.reason(), "RBAC: [role.rbac.authorization.k8s.io \"missing\" not found]");
    }

    #[test]
    fn non_resource_urls() {
        let idx = index();
        let u = user("x", &["system:authenticated"]);
        let path = |p: &'static str| Attributes { verb: "get", path: p, ..Attributes::default() };
        assert!(idx.authorize(&u, &path("/api")).allowed);
        assert!(idx.authorize(&u, &path("/api/v1")).allowed);
        assert!(idx.authorize(&u, &path("/version")).allowed);
        assert!(!idx.authorize(&u, &path("/apis")).allowed);
        assert!(!idx.authorize(&user("y", &[]), &path("/api")).allowed);
    }

    #[test]
    fn impersonate_verb_and_aggregation() {
        let idx = index();
        let kg = user("kubegate", &["system:authenticated"]);
        assert!(idx.authorize(&kg, &res("impersonate", "", "", "users", "", "alice")).allowed);
        assert!(idx.authorize(&kg, &res("impersonate", "", "", "groups", "", "devs")).allowed);
        assert!(
            !idx.authorize(&kg, &res("impersonate", "", "authentication.k8s.io", "uids", "", "u")).allowed
        );
        assert!(!idx.authorize(&kg, &res("list", "default", "", "pods", "", "")).allowed);
        let aggy = user("aggy", &[]);
        assert!(idx.authorize(&aggy, &res("list", "x", "apps", "deployments", "", "")).allowed);
    }

    #[test]
    fn messages() {
        let a = res("list", "kube-system", "", "pods", "", "");
        assert_eq!(
            a.forbidden_message("alice"),
            "User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
        );
        let a = res("impersonate", "", "", "users", "", "x");
        assert_eq!(
            a.forbidden_message("y"),
            "User \"y\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        let a = res("create", "dev", "", "pods", "exec", "x");
        assert_eq!(
            a.forbidden_message("z"),
            "User \"z\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"dev\""
        );
    }

    #[test]
    fn rules_review() {
        let idx = index();
        let (rules, incomplete) = idx.rules_for(&user("alice", &["system:authenticated"]), "dev");
        assert!(!incomplete);
        assert!(rules.iter().any(|r| r.resources.contains(&"pods/exec".to_string())));
        assert!(rules.iter().any(|r| r.non_resource_urls.contains(&"/api".to_string())));
        let (_, incomplete) = idx.rules_for(&user("alice", &[]), "qa");
        assert!(incomplete);
    }
}
