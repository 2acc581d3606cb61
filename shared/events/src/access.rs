//! Environment roles and access grants: the vocabulary shared by the kubeconfig service (which
//! records policies) and the proxy (which enforces them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A user's role inside one environment. Ordered from most to least permissive, so that
/// "the most permissive wins" is `min()` over the candidate roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EnvironmentRole {
    /// Everything, cluster-wide.
    EnvironmentAdmin,
    /// All verbs on namespaced resources outside the system namespaces; read cluster-scoped.
    Operator,
    /// Read everything except Secrets; pod logs; no exec/attach/port-forward.
    Helpdesk,
    /// All verbs (exec and port-forward too) in the granted namespaces; read namespaces and nodes.
    Standard,
    /// get/list/watch in the granted namespaces except Secrets; pod logs.
    ReadOnly,
}

impl EnvironmentRole {
    pub const ALL: [EnvironmentRole; 5] = [
        EnvironmentRole::EnvironmentAdmin,
        EnvironmentRole::Operator,
        EnvironmentRole::Helpdesk,
        EnvironmentRole::Standard,
        EnvironmentRole::ReadOnly,
    ];

    /// The kebab-case name used on the wire and in `kubegate:role:<name>` groups.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvironmentRole::EnvironmentAdmin => "environment-admin",
            EnvironmentRole::Operator => "operator",
            EnvironmentRole::Helpdesk => "helpdesk",
            EnvironmentRole::Standard => "standard",
            EnvironmentRole::ReadOnly => "read-only",
        }
    }

    /// Roles whose reach is limited to a list of granted namespaces.
    pub fn is_namespace_scoped(self) -> bool {
        matches!(self, EnvironmentRole::Standard | EnvironmentRole::ReadOnly)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for EnvironmentRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one user holds in one environment after policies (direct and through teams) are merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Grant {
    pub role: EnvironmentRole,
    /// Granted namespaces; meaningful only for namespace-scoped roles, sorted and de-duplicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

impl Grant {
    /// Merge several grants of one user in one environment: the most permissive role wins; when
    /// the winner is namespace-scoped, the namespaces of every grant with that same role are united.
    pub fn merge<'a>(grants: impl IntoIterator<Item = &'a Grant>) -> Option<Grant> {
        let grants: Vec<&Grant> = grants.into_iter().collect();
        let role = grants.iter().map(|g| g.role).min()?;
        let mut namespaces: Vec<String> = if role.is_namespace_scoped() {
            grants.iter().filter(|g| g.role == role).flat_map(|g| g.namespaces.iter().cloned()).collect()
        } else {
            Vec::new()
        };
        namespaces.sort();
        namespaces.dedup();
        Some(Grant { role, namespaces })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_permissive_role_wins_and_namespaces_unite() {
        let a = Grant { role: EnvironmentRole::ReadOnly, namespaces: vec!["qa".into()] };
        let b = Grant { role: EnvironmentRole::Standard, namespaces: vec!["dev".into()] };
        let c = Grant { role: EnvironmentRole::Standard, namespaces: vec!["web".into(), "dev".into()] };
        let merged = Grant::merge([&a, &b, &c]).unwrap();
        assert_eq!(merged.role, EnvironmentRole::Standard);
        assert_eq!(merged.namespaces, vec!["dev".to_string(), "web".to_string()]);
        let admin = Grant { role: EnvironmentRole::Operator, namespaces: vec![] };
        assert_eq!(Grant::merge([&a, &admin]).unwrap().role, EnvironmentRole::Operator);
        assert!(Grant::merge([]).is_none());
    }

    #[test]
    fn role_names_round_trip() {
        for r in EnvironmentRole::ALL {
            assert_eq!(EnvironmentRole::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
    }
}
