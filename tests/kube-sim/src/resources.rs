//! The resource types kube-sim serves: one static table that discovery, routing, storage,
//! field selectors and tables all read.

/// Index of a resource in [`RESOURCES`].
pub type ResId = usize;

/// A subresource as discovery lists it.
#[derive(Debug)]
pub struct SubresourceDef {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// A resource type.
#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [SubresourceDef],
    /// Objects are kept in the store (false for review-style resources that are only created).
    pub stored: bool,
    /// Field selector labels besides `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static SubresourceDef> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

const ALL_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const NS_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
const CREATE_ONLY: &[&str] = &["create"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

const fn sub(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> SubresourceDef {
    SubresourceDef { name, group, version, kind, verbs }
}

/// Every served resource. Order is the order discovery lists them in.
pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &[],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: NS_VERBS,
        subresources: &[
            sub("finalize", "", "v1", "Namespace", &["update"]),
            sub("status", "", "v1", "Namespace", GET_PATCH_UPDATE),
        ],
        stored: true,
        field_labels: &["status.phase"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[
            sub("proxy", "", "v1", "NodeProxyOptions", &["create", "delete", "get", "patch", "update"]),
            sub("status", "", "v1", "Node", GET_PATCH_UPDATE),
        ],
        stored: true,
        field_labels: &["spec.unschedulable"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub("attach", "", "v1", "PodAttachOptions", &["create", "get"]),
            sub("binding", "", "v1", "Binding", CREATE_ONLY),
            sub("ephemeralcontainers", "", "v1", "Pod", GET_PATCH_UPDATE),
            sub("eviction", "policy", "v1", "Eviction", CREATE_ONLY),
            sub("exec", "", "v1", "PodExecOptions", &["create", "get"]),
            sub("log", "", "v1", "Pod", &["get"]),
            sub("portforward", "", "v1", "PodPortForwardOptions", &["create", "get"]),
            sub("proxy", "", "v1", "PodProxyOptions", &["create", "delete", "get", "patch", "update"]),
            sub("status", "", "v1", "Pod", GET_PATCH_UPDATE),
        ],
        stored: true,
        field_labels: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &["type"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[sub("token", "authentication.k8s.io", "v1", "TokenRequest", CREATE_ONLY)],
        stored: true,
        field_labels: &[],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub("proxy", "", "v1", "ServiceProxyOptions", &["create", "delete", "get", "patch", "update"]),
            sub("status", "", "v1", "Service", GET_PATCH_UPDATE),
        ],
        stored: true,
        field_labels: &["spec.clusterIP", "spec.type"],
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub("scale", "autoscaling", "v1", "Scale", GET_PATCH_UPDATE),
            sub("status", "apps", "v1", "Deployment", GET_PATCH_UPDATE),
        ],
        stored: true,
        field_labels: &[],
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "tokenreviews",
        singular: "tokenreview",
        kind: "TokenReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1beta1",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "localsubjectaccessreviews",
        singular: "localsubjectaccessreview",
        kind: "LocalSubjectAccessReview",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        kind: "SelfSubjectRulesReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        kind: "SubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        stored: false,
        field_labels: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        field_labels: &[],
    },
];

/// A served group, its versions in preference order.
pub struct GroupDef {
    pub name: &'static str,
    pub versions: &'static [&'static str],
}

/// Groups under `/apis` in discovery order (the core group lives under `/api`).
pub static GROUPS: &[GroupDef] = &[
    GroupDef { name: "apps", versions: &["v1"] },
    GroupDef { name: "authentication.k8s.io", versions: &["v1", "v1beta1"] },
    GroupDef { name: "authorization.k8s.io", versions: &["v1"] },
    GroupDef { name: "rbac.authorization.k8s.io", versions: &["v1"] },
];

/// The resource `plural` in `group` (any served version).
pub fn find(group: &str, plural: &str) -> Option<(ResId, &'static ResourceDef)> {
    RESOURCES.iter().enumerate().find(|(_, d)| d.group == group && d.plural == plural)
}

/// The resource `plural` in `group`/`version`.
pub fn find_gv(group: &str, version: &str, plural: &str) -> Option<(ResId, &'static ResourceDef)> {
    RESOURCES.iter().enumerate().find(|(_, d)| d.group == group && d.version == version && d.plural == plural)
}

/// The stored resource of `apiVersion` + `kind` (used when loading objects from files).
pub fn by_kind(api_version: &str, kind: &str) -> Option<(ResId, &'static ResourceDef)> {
    RESOURCES.iter().enumerate().find(|(_, d)| d.stored && d.kind == kind && d.api_version() == api_version)
}

pub fn def(id: ResId) -> &'static ResourceDef {
    &RESOURCES[id]
}

/// Ids of well-known resources, looked up once.
pub mod ids {
    use super::{ResId, find};
    use std::sync::OnceLock;

    fn lookup(cell: &OnceLock<ResId>, group: &str, plural: &str) -> ResId {
        *cell.get_or_init(|| find(group, plural).map(|(i, _)| i).unwrap_or(usize::MAX))
    }

    macro_rules! id_fn {
        ($name:ident, $group:expr, $plural:expr) => {
            pub fn $name() -> ResId {
                static CELL: OnceLock<ResId> = OnceLock::new();
                lookup(&CELL, $group, $plural)
            }
        };
    }

    id_fn!(namespaces, "", "namespaces");
    id_fn!(pods, "", "pods");
    id_fn!(services, "", "services");
    id_fn!(serviceaccounts, "", "serviceaccounts");
    id_fn!(configmaps, "", "configmaps");
    id_fn!(secrets, "", "secrets");
    id_fn!(nodes, "", "nodes");
    id_fn!(deployments, "apps", "deployments");
    id_fn!(roles, "rbac.authorization.k8s.io", "roles");
    id_fn!(clusterroles, "rbac.authorization.k8s.io", "clusterroles");
    id_fn!(rolebindings, "rbac.authorization.k8s.io", "rolebindings");
    id_fn!(clusterrolebindings, "rbac.authorization.k8s.io", "clusterrolebindings");
}

/// True for the four RBAC kinds (their writes rebuild the authorizer's index).
pub fn is_rbac(id: ResId) -> bool {
    def(id).group == "rbac.authorization.k8s.io"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let Some((_, pods)) = find("", "pods") else { panic!("pods") };
        assert_eq!(pods.api_version(), "v1");
        assert!(pods.subresource("exec").is_some());
        let Some((_, d)) = find("apps", "deployments") else { panic!("deployments") };
        assert_eq!(d.api_version(), "apps/v1");
        assert!(by_kind("rbac.authorization.k8s.io/v1", "ClusterRole").is_some());
        assert!(by_kind("v1", "SelfSubjectReview").is_none());
        assert!(find_gv("authentication.k8s.io", "v1beta1", "selfsubjectreviews").is_some());
        assert_ne!(ids::pods(), usize::MAX);
        assert!(is_rbac(ids::roles()));
    }
}
