//! Decides a classified request from the user's role in the environment (the role table), before the cluster's own RBAC sees it.
//!
//! | role              | allowed |
//! |-------------------|---------|
//! | environment-admin | everything |
//! | operator          | all verbs on namespaced resources outside kube-system/kube-public/kube-node-lease; read cluster-scoped |
//! | helpdesk          | read everything except Secrets; pod logs; no exec/attach/port-forward |
//! | standard          | all verbs, exec and port-forward in its granted namespaces; read namespaces and nodes |
//! | read-only         | get/list/watch in its granted namespaces except Secrets; pod logs |
//!
//! How the table is read, precisely:
//!
//! * **Read** is `get`, `list` and `watch` on a resource or on one of the subresources that only
//!   show state: `status`, `scale`, `log`, `ephemeralcontainers` (a `get` returns the pod) and
//!   `resize`. Reading any other subresource (an aggregated API's `console`, say) needs a role
//!   that may write there, because kubegate cannot know what such a `GET` does.
//! * **Connect** subresources (`exec`, `attach`, `portforward`) are judged on their own whatever
//!   the verb: SPDY clients `POST` (RBAC `create`) but WebSocket clients (kubectl 1.30+) `GET`
//!   (RBAC `get`), and a read-only role must not gain a shell through the latter. Kubernetes 1.35
//!   closes the same gap with its `AuthorizePodWebsocketUpgradeCreatePermission` gate.
//! * **Proxy** (the `proxy` subresource of pods, services and nodes, and the legacy `proxy` verb)
//!   is allowed only to environment-admin, and to operator in non-system namespaces. The API server
//!   then opens the connection from its own network position: it bypasses NetworkPolicies, and a
//!   user who may edit a Service's endpoints can aim it at any address the control plane reaches.
//!   `nodes/proxy` reaches the kubelet API (exec into any pod on the node): environment-admin only.
//!   Standard users have `kubectl port-forward` for the same debugging need.
//! * **Secrets** means the resource `secrets` in any group: roles that may not read Secrets may
//!   not read a custom resource of that name either.
//! * **Operator** may read (except Secrets, connect and proxy) inside the system namespaces and
//!   across all namespaces: roles are ordered from most to least permissive, and helpdesk (below
//!   operator) reads everything but Secrets. It may not write there, and may not list Secrets or
//!   delete collections across all namespaces, since that includes the system namespaces.
//! * **Cluster-scoped** means the built-in cluster-scoped resources (see [`builtin_scope`]) and
//!   the namespace objects. Operator and helpdesk read all of them; standard reads only
//!   `namespaces` (its own; a list is filtered to them) and `nodes` (also `metrics.k8s.io` nodes
//!   for `kubectl top node`); read-only reads only its own namespaces. Namespace objects are never
//!   written by a namespace-scoped role: their labels carry the cluster's Pod Security policy.
//! * **No namespace** on a built-in namespaced resource means all namespaces; on an unknown
//!   resource (a custom resource) it is either a cluster-scoped object or an all-namespaces
//!   request, which kubegate cannot tell apart, so it is allowed only where both would be:
//!   reads for operator and helpdesk, never for standard and read-only.
//! * **A cluster-scoped resource through `/namespaces/<ns>/…`** (Kubernetes CVE-2019-11247:
//!   `namespaces/dev/nodes`, `namespaces/dev/clusterroles`, `namespaces/dev/namespaces/kube-system`)
//!   is denied to every role, environment-admin included: it must never count as access inside
//!   `<ns>`, and the API server has no such object.
//!   Custom resources of unknown scope reached that way are judged as namespaced; the API server
//!   (fixed since 1.13.9/1.14.5/1.15.2) answers 404 for a cluster-scoped one, and the cluster's RBAC
//!   sees the impersonated user as well.
//! * **Self reviews** (`selfsubjectaccessreviews`, `selfsubjectrulesreviews`,
//!   `selfsubjectreviews`: `kubectl auth can-i` and `auth whoami`) are allowed to everyone, as
//!   Kubernetes allows them to every authenticated user; they only describe the caller.
//! * **Non-resource paths** follow an explicit list, as Kubernetes' `system:discovery` and
//!   `system:public-info-viewer` roles do: `GET` of `/api`, `/api/*`, `/apis`, `/apis/*` (these
//!   reach here only as discovery: `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`),
//!   `/version`, `/version/`, `/openapi`, `/openapi/*`, `/healthz`, `/livez`, `/readyz`.
//!   Everything else (`/`, `/metrics`, `/logs`, `/debug/…`, sub-checks such as `/healthz/etcd`)
//!   is for environment-admin only.
//! * Query parameters never matter here: `dryRun=All` is checked like the real call.

use kubegate_events::access::{EnvironmentRole, Grant};

use crate::request_info::{NonResourceRequest, NonResourceVerb, RequestInfo, ResourceRequest, Verb};

#[cfg(test)]
mod tests;

/// Namespaces where operator may only read.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Subresources whose `get`/`list`/`watch` only shows state.
pub const READABLE_SUBRESOURCES: [&str; 5] = ["status", "scale", "log", "ephemeralcontainers", "resize"];

/// The group every impersonated user carries, as the API server adds it for real users.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Prefix of the impersonation group naming the user's role in the environment.
pub const ROLE_GROUP_PREFIX: &str = "kubegate:role:";
/// Prefix of the impersonation groups naming the user's teams.
pub const TEAM_GROUP_PREFIX: &str = "kubegate:team:";

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'g> {
    Allow,
    /// A namespace-scoped user's list or watch of `namespaces`: forward it, then keep only these
    /// namespaces in the answer (list items, or watch events).
    AllowNamespacesFiltered {
        namespaces: &'g [String],
    },
    /// Answer 403 with this message; it says what is refused and, where it can, what to do instead.
    Deny {
        reason: String,
    },
}

impl Decision<'_> {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Deny { .. })
    }
}

/// Whether a built-in resource is namespaced or cluster-scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
    /// Not a built-in resource of that group: a custom resource or an aggregated API.
    Unknown,
}

/// The scope of the built-in resources of Kubernetes (up to 1.34) and of metrics-server.
pub fn builtin_scope(group: &str, resource: &str) -> Scope {
    use Scope::{Cluster, Namespaced, Unknown};
    match (group, resource) {
        (
            "",
            "pods"
            | "services"
            | "configmaps"
            | "secrets"
            | "serviceaccounts"
            | "endpoints"
            | "events"
            | "limitranges"
            | "resourcequotas"
            | "persistentvolumeclaims"
            | "replicationcontrollers"
            | "podtemplates"
            | "bindings",
        ) => Namespaced,
        ("", "nodes" | "namespaces" | "persistentvolumes" | "componentstatuses") => Cluster,
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets" | "controllerrevisions") => {
            Namespaced
        }
        ("batch", "jobs" | "cronjobs") => Namespaced,
        ("autoscaling", "horizontalpodautoscalers") => Namespaced,
        ("networking.k8s.io", "ingresses" | "networkpolicies") => Namespaced,
        ("networking.k8s.io", "ingressclasses" | "ipaddresses" | "servicecidrs") => Cluster,
        ("policy", "poddisruptionbudgets") => Namespaced,
        ("policy", "podsecuritypolicies") => Cluster,
        ("rbac.authorization.k8s.io", "roles" | "rolebindings") => Namespaced,
        ("rbac.authorization.k8s.io", "clusterroles" | "clusterrolebindings") => Cluster,
        ("coordination.k8s.io", "leases" | "leasecandidates") => Namespaced,
        ("discovery.k8s.io", "endpointslices") => Namespaced,
        ("events.k8s.io", "events") => Namespaced,
        ("storage.k8s.io", "csistoragecapacities") => Namespaced,
        (
            "storage.k8s.io",
            "storageclasses" | "csidrivers" | "csinodes" | "volumeattachments" | "volumeattributesclasses",
        ) => Cluster,
        ("authorization.k8s.io", "localsubjectaccessreviews") => Namespaced,
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews" | "subjectaccessreviews",
        ) => Cluster,
        ("authentication.k8s.io", "tokenreviews" | "selfsubjectreviews") => Cluster,
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations"
            | "validatingwebhookconfigurations"
            | "validatingadmissionpolicies"
            | "validatingadmissionpolicybindings"
            | "mutatingadmissionpolicies"
            | "mutatingadmissionpolicybindings",
        ) => Cluster,
        ("apiextensions.k8s.io", "customresourcedefinitions") => Cluster,
        ("apiregistration.k8s.io", "apiservices") => Cluster,
        ("certificates.k8s.io", "certificatesigningrequests" | "clustertrustbundles") => Cluster,
        ("flowcontrol.apiserver.k8s.io", "flowschemas" | "prioritylevelconfigurations") => Cluster,
        ("internal.apiserver.k8s.io", "storageversions") => Cluster,
        ("storagemigration.k8s.io", "storageversionmigrations") => Cluster,
        ("node.k8s.io", "runtimeclasses") => Cluster,
        ("scheduling.k8s.io", "priorityclasses") => Cluster,
        ("resource.k8s.io", "resourceclaims" | "resourceclaimtemplates") => Namespaced,
        ("resource.k8s.io", "deviceclasses" | "resourceslices" | "devicetaintrules") => Cluster,
        ("metrics.k8s.io", "pods") => Namespaced,
        ("metrics.k8s.io", "nodes") => Cluster,
        _ => Unknown,
    }
}

/// The impersonation groups of a user: `kubegate:role:<role>`, `kubegate:team:<team>` for each
/// team, and `system:authenticated` (which the API server adds to real users, and which
/// impersonation does not add once any group is given).
pub fn groups_for(role: EnvironmentRole, teams: &[String]) -> Vec<String> {
    let mut groups = Vec::with_capacity(teams.len() + 2);
    groups.push([ROLE_GROUP_PREFIX, role.as_str()].concat());
    groups.extend(teams.iter().map(|team| [TEAM_GROUP_PREFIX, team.as_str()].concat()));
    groups.push(AUTHENTICATED_GROUP.to_string());
    groups
}

/// Decide a classified request for a user holding `grant` in the environment. The global
/// `admin` role arrives here as an environment-admin grant.
pub fn authorize<'g>(info: &RequestInfo<'_>, grant: &'g Grant) -> Decision<'g> {
    match info {
        RequestInfo::NonResource(_) if grant.role == EnvironmentRole::EnvironmentAdmin => Decision::Allow,
        RequestInfo::NonResource(request) => authorize_non_resource(request, grant.role),
        RequestInfo::Resource(request) => authorize_resource(request, grant),
    }
}

/// Decide a request for a user who may hold no grant at all in `environment` (a token used at
/// another environment's route): no grant is a 403 naming the environment.
pub fn authorize_in_environment<'g>(
    info: &RequestInfo<'_>,
    grant: Option<&'g Grant>,
    environment: impl std::fmt::Display,
) -> Decision<'g> {
    match grant {
        Some(grant) => authorize(info, grant),
        None => deny(format!("no access to environment {environment}")),
    }
}

/// The non-resource paths every authenticated user may `GET`.
pub fn is_public_non_resource_path(path: &str) -> bool {
    matches!(
        path,
        "/api" | "/apis" | "/version" | "/version/" | "/openapi" | "/healthz" | "/livez" | "/readyz"
    ) || path.starts_with("/api/")
        || path.starts_with("/apis/")
        || path.starts_with("/openapi/")
}

fn authorize_non_resource<'g>(request: &NonResourceRequest<'_>, role: EnvironmentRole) -> Decision<'g> {
    let path = request.path.as_ref();
    if !is_public_non_resource_path(path) {
        return deny(format!(
            "path \"{path}\" is not available to role {role}; only discovery (/api, /apis), /version, /openapi and the /healthz, /livez, /readyz checks are"
        ));
    }
    if request.verb != NonResourceVerb::Get {
        return deny(format!("only GET is allowed on \"{path}\" for role {role}"));
    }
    Decision::Allow
}

/// Where a resource request lands, as far as the role table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'r> {
    /// A namespaced resource inside this namespace.
    Namespaced(&'r str),
    /// A built-in namespaced resource without a namespace: all namespaces.
    AllNamespaces,
    /// A built-in cluster-scoped resource other than namespaces.
    Cluster,
    /// An unknown resource without a namespace: cluster-scoped or all namespaces.
    Unknown,
    /// The namespace object with this name (and its status/finalize subresources).
    NamespaceObject(&'r str),
    /// The namespaces collection.
    NamespaceCollection,
    /// A cluster-scoped resource addressed through `/namespaces/<ns>/…`.
    EscapesNamespace(&'r str),
}

fn target<'r>(request: &'r ResourceRequest<'_>) -> Target<'r> {
    let is_namespaces = request.is_core_group() && request.resource == "namespaces";
    // A list's name may come from a field selector; only a name in the path addresses one object.
    let path_name = if request.parts.len() >= 2 { request.name.as_deref() } else { None };
    match request.namespace.as_deref() {
        Some(namespace) => {
            if is_namespaces {
                // `namespaces/<ns>` reports `<ns>` as both namespace and name; anything else
                // (`namespaces/dev/namespaces/kube-system`) names another namespace from inside one.
                if path_name == Some(namespace) {
                    Target::NamespaceObject(namespace)
                } else {
                    Target::EscapesNamespace(namespace)
                }
            } else if builtin_scope(&request.group, &request.resource) == Scope::Cluster {
                Target::EscapesNamespace(namespace)
            } else {
                Target::Namespaced(namespace)
            }
        }
        None if is_namespaces => match path_name {
            Some(name) => Target::NamespaceObject(name),
            None => Target::NamespaceCollection,
        },
        None => match builtin_scope(&request.group, &request.resource) {
            Scope::Namespaced => Target::AllNamespaces,
            Scope::Cluster => Target::Cluster,
            Scope::Unknown => Target::Unknown,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    Exec,
    Attach,
    PortForward,
}

impl Connect {
    fn phrase(self) -> &'static str {
        match self {
            Connect::Exec => "exec into",
            Connect::Attach => "attach to",
            Connect::PortForward => "port-forward to",
        }
    }
}

/// What a request does, as far as the role table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'r> {
    /// get/list/watch of a resource or a readable subresource.
    Read,
    /// get/list/watch of a subresource that is not known to only show state.
    ReadOther(&'r str),
    Write,
    Connect(Connect),
    Proxy,
}

fn op<'r>(request: &'r ResourceRequest<'_>) -> Op<'r> {
    let subresource = request.subresource.as_deref();
    if request.verb == Verb::Proxy || subresource == Some("proxy") {
        return Op::Proxy;
    }
    match subresource {
        Some("exec") => return Op::Connect(Connect::Exec),
        Some("attach") => return Op::Connect(Connect::Attach),
        Some("portforward") => return Op::Connect(Connect::PortForward),
        _ => {}
    }
    if !request.verb.is_read() {
        return Op::Write;
    }
    match subresource {
        Some(sub) if !READABLE_SUBRESOURCES.contains(&sub) => Op::ReadOther(sub),
        _ => Op::Read,
    }
}

fn is_self_review(request: &ResourceRequest<'_>) -> bool {
    request.verb == Verb::Create
        && request.namespace.is_none()
        && request.name.is_none()
        && request.subresource.is_none()
        && matches!(
            (request.group.as_ref(), request.resource.as_ref()),
            ("authorization.k8s.io", "selfsubjectaccessreviews" | "selfsubjectrulesreviews")
                | ("authentication.k8s.io", "selfsubjectreviews")
        )
}

fn is_secret(request: &ResourceRequest<'_>) -> bool {
    request.resource == "secrets"
}

fn is_node(request: &ResourceRequest<'_>) -> bool {
    request.resource == "nodes" && matches!(request.group.as_ref(), "" | "metrics.k8s.io")
}

fn authorize_resource<'g>(request: &ResourceRequest<'_>, grant: &'g Grant) -> Decision<'g> {
    if is_self_review(request) {
        return Decision::Allow;
    }
    let target = target(request);
    if let Target::EscapesNamespace(namespace) = target {
        return deny(format!(
            "{} is cluster-scoped and cannot be requested inside namespace \"{namespace}\"; use its cluster-scoped path",
            label(request)
        ));
    }
    let op = op(request);
    match grant.role {
        EnvironmentRole::EnvironmentAdmin => Decision::Allow,
        EnvironmentRole::Operator => operator(request, target, op),
        EnvironmentRole::Helpdesk => read_rules(EnvironmentRole::Helpdesk, request, op, Place::Anywhere),
        EnvironmentRole::Standard => standard(request, target, op, grant),
        EnvironmentRole::ReadOnly => read_only(request, target, op, grant),
    }
}

fn operator<'g>(request: &ResourceRequest<'_>, target: Target<'_>, op: Op<'_>) -> Decision<'g> {
    let role = EnvironmentRole::Operator;
    match target {
        Target::Namespaced(namespace) if SYSTEM_NAMESPACES.contains(&namespace) => {
            read_rules(role, request, op, Place::SystemNamespace(namespace))
        }
        Target::Namespaced(_) => Decision::Allow,
        Target::AllNamespaces => read_rules(role, request, op, Place::AllNamespaces),
        Target::Unknown => read_rules(role, request, op, Place::Unscoped),
        Target::Cluster | Target::NamespaceObject(_) | Target::NamespaceCollection => {
            read_rules(role, request, op, Place::ClusterScoped)
        }
        Target::EscapesNamespace(_) => unreachable_escape(),
    }
}

fn standard<'g>(
    request: &ResourceRequest<'_>,
    target: Target<'_>,
    op: Op<'_>,
    grant: &'g Grant,
) -> Decision<'g> {
    let role = EnvironmentRole::Standard;
    match target {
        Target::Namespaced(namespace) => {
            if !is_granted(grant, namespace) {
                return deny_namespace(namespace, grant);
            }
            match op {
                Op::Proxy => deny_proxy(role, request, Where(Place::Anywhere)),
                _ => Decision::Allow,
            }
        }
        Target::NamespaceObject(name) => match op {
            Op::Read if is_granted(grant, name) => Decision::Allow,
            Op::Read => deny_namespace(name, grant),
            Op::Write => deny_namespace_write(role, request),
            _ => read_rules(role, request, op, Place::Anywhere),
        },
        Target::NamespaceCollection => match op {
            Op::Read => Decision::AllowNamespacesFiltered { namespaces: &grant.namespaces },
            _ => deny_namespace_write(role, request),
        },
        Target::Cluster => match op {
            Op::Read if is_node(request) => Decision::Allow,
            Op::Proxy => deny_proxy(role, request, Where(Place::ClusterScoped)),
            Op::Read | Op::ReadOther(_) => deny(format!(
                "role standard may read only namespaces and nodes among cluster-scoped resources; {} {} is not allowed",
                gerund(request.verb),
                label(request)
            )),
            Op::Write | Op::Connect(_) => deny(format!(
                "role standard may not change cluster-scoped resources; {} {} is not allowed",
                gerund(request.verb),
                label(request)
            )),
        },
        Target::AllNamespaces => deny_all_namespaces(role, request),
        Target::Unknown => deny_unscoped(role, request),
        Target::EscapesNamespace(_) => unreachable_escape(),
    }
}

fn read_only<'g>(
    request: &ResourceRequest<'_>,
    target: Target<'_>,
    op: Op<'_>,
    grant: &'g Grant,
) -> Decision<'g> {
    let role = EnvironmentRole::ReadOnly;
    match target {
        Target::Namespaced(namespace) => {
            if !is_granted(grant, namespace) {
                return deny_namespace(namespace, grant);
            }
            read_rules(role, request, op, Place::Anywhere)
        }
        Target::NamespaceObject(name) => match op {
            Op::Read if is_granted(grant, name) => Decision::Allow,
            Op::Read => deny_namespace(name, grant),
            Op::Write => deny_namespace_write(role, request),
            _ => read_rules(role, request, op, Place::Anywhere),
        },
        Target::NamespaceCollection => match op {
            Op::Read => Decision::AllowNamespacesFiltered { namespaces: &grant.namespaces },
            _ => deny_namespace_write(role, request),
        },
        Target::Cluster => deny(format!(
            "role read-only may not access cluster-scoped resources; {} {} is not allowed",
            gerund(request.verb),
            label(request)
        )),
        Target::AllNamespaces => deny_all_namespaces(role, request),
        Target::Unknown => deny_unscoped(role, request),
        Target::EscapesNamespace(_) => unreachable_escape(),
    }
}

/// Where a read-limited rule applies; it shapes the denial message.
#[derive(Debug, Clone, Copy)]
enum Place<'r> {
    Anywhere,
    SystemNamespace(&'r str),
    AllNamespaces,
    ClusterScoped,
    Unscoped,
}

/// Renders " in system namespace \"<ns>\"" where that place matters to a message, without
/// allocating on the allow path.
#[derive(Debug, Clone, Copy)]
struct Where<'r>(Place<'r>);

impl std::fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Place::SystemNamespace(namespace) => write!(f, " in system namespace \"{namespace}\""),
            _ => Ok(()),
        }
    }
}

/// The rules of a context where the role may only read, and not Secrets.
fn read_rules<'g>(
    role: EnvironmentRole,
    request: &ResourceRequest<'_>,
    op: Op<'_>,
    place: Place<'_>,
) -> Decision<'g> {
    let where_ = Where(place);
    match op {
        Op::Connect(connect) => {
            deny(format!("role {role} may not {} {}{where_}", connect.phrase(), request.resource))
        }
        Op::Proxy => deny_proxy(role, request, where_),
        Op::Write => match place {
            Place::Anywhere => deny(format!(
                "role {role} may only read (get, list, watch); {} {} is not allowed",
                gerund(request.verb),
                label(request)
            )),
            Place::SystemNamespace(namespace) => deny(format!(
                "role {role} may only read in system namespace \"{namespace}\"; {} {} there is not allowed",
                gerund(request.verb),
                label(request)
            )),
            Place::AllNamespaces => deny_all_namespaces(role, request),
            Place::ClusterScoped => deny(format!(
                "role {role} may only read cluster-scoped resources; {} {} is not allowed",
                gerund(request.verb),
                label(request)
            )),
            Place::Unscoped => deny_unscoped(role, request),
        },
        Op::ReadOther(subresource) => deny(format!(
            "role {role} may not read the \"{subresource}\" subresource of {}{where_}; it may read only {}",
            request.resource,
            READABLE_SUBRESOURCES.join(", ")
        )),
        Op::Read if is_secret(request) => match place {
            Place::AllNamespaces => deny(format!(
                "{} secrets across all namespaces is not allowed for role {role} (that includes the system namespaces); use -n <namespace>",
                gerund(request.verb)
            )),
            _ => deny(format!("role {role} may not read secrets{where_}")),
        },
        Op::Read => Decision::Allow,
    }
}

fn is_granted(grant: &Grant, namespace: &str) -> bool {
    grant.namespaces.iter().any(|granted| granted == namespace)
}

fn deny<'g>(reason: String) -> Decision<'g> {
    Decision::Deny { reason }
}

fn deny_namespace<'g>(namespace: &str, grant: &Grant) -> Decision<'g> {
    let granted =
        if grant.namespaces.is_empty() { "no namespaces".to_string() } else { grant.namespaces.join(", ") };
    deny(format!(
        "namespace \"{namespace}\" is not granted to you in this environment (role {}: {granted})",
        grant.role
    ))
}

fn deny_namespace_write<'g>(role: EnvironmentRole, request: &ResourceRequest<'_>) -> Decision<'g> {
    deny(format!(
        "role {role} may not create, change or delete namespaces (they are cluster-scoped and carry the cluster's security policy); {} {} is not allowed, ask an environment admin",
        gerund(request.verb),
        label(request)
    ))
}

fn deny_all_namespaces<'g>(role: EnvironmentRole, request: &ResourceRequest<'_>) -> Decision<'g> {
    deny(format!(
        "{} {} across all namespaces is not allowed for role {role}; use -n <namespace>",
        gerund(request.verb),
        label(request)
    ))
}

fn deny_unscoped<'g>(role: EnvironmentRole, request: &ResourceRequest<'_>) -> Decision<'g> {
    deny(format!(
        "role {role} may not {} {} without a namespace (it is cluster-scoped or spans all namespaces); use -n <namespace>",
        request.verb,
        label(request)
    ))
}

fn deny_proxy<'g>(role: EnvironmentRole, request: &ResourceRequest<'_>, where_: Where<'_>) -> Decision<'g> {
    deny(format!(
        "role {role} may not use the proxy subresource of {}{where_} (it connects from the API server's network position); use kubectl port-forward",
        request.resource
    ))
}

/// `authorize_resource` answers these before any role rule runs.
fn unreachable_escape<'g>() -> Decision<'g> {
    deny("a cluster-scoped resource cannot be requested inside a namespace".to_string())
}

fn gerund(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "getting",
        Verb::List => "listing",
        Verb::Watch => "watching",
        Verb::Create => "creating",
        Verb::Update => "updating",
        Verb::Patch => "patching",
        Verb::Delete | Verb::DeleteCollection => "deleting",
        Verb::Proxy => "proxying to",
    }
}

/// `resource[.group][/subresource]`, the way RBAC rules and kubectl name resources.
fn label(request: &ResourceRequest<'_>) -> String {
    let mut label = request.resource.to_string();
    if !request.group.is_empty() {
        label.push('.');
        label.push_str(&request.group);
    }
    if let Some(subresource) = &request.subresource {
        label.push('/');
        label.push_str(subresource);
    }
    label
}
