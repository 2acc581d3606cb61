//! A NetworkPolicy evaluator (networking.k8s.io/v1 semantics) over rendered policies, so that
//! the tests can state who reaches whom as a matrix.
//!
//! Traffic from A to B on a port passes when A's egress allows it and B's ingress allows it. A
//! pod is isolated in a direction when some policy of its namespace selects it with that policy
//! type; then only the rules of those policies let traffic through. Pod and namespace selectors
//! match pods; `ipBlock` matches addresses outside the cluster (how a plugin treats pod
//! addresses under an ipBlock varies, so it is not counted on).

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::k8s::selector_matches;

/// One end of a connection.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub label: String,
    pub kind: EndpointKind,
}

#[derive(Debug, Clone)]
pub enum EndpointKind {
    Pod {
        namespace: String,
        namespace_labels: Map<String, Value>,
        labels: Map<String, Value>,
        /// Named container ports: (name, port, protocol).
        ports: Vec<(String, u64, String)>,
    },
    /// An address outside the cluster.
    Outside(Ipv4Addr),
}

impl Endpoint {
    pub fn pod(
        label: &str,
        namespace: &str,
        extra_namespace_labels: Value,
        labels: Map<String, Value>,
        ports: Vec<(String, u64, String)>,
    ) -> Endpoint {
        let mut namespace_labels = extra_namespace_labels.as_object().cloned().unwrap_or_default();
        namespace_labels.insert("kubernetes.io/metadata.name".into(), json!(namespace));
        Endpoint {
            label: label.to_string(),
            kind: EndpointKind::Pod { namespace: namespace.to_string(), namespace_labels, labels, ports },
        }
    }

    pub fn outside(label: &str, addr: Ipv4Addr) -> Endpoint {
        Endpoint { label: label.to_string(), kind: EndpointKind::Outside(addr) }
    }
}

/// Whether `from` may open a connection to `to` on `port`/`protocol` under `policies` (all the
/// NetworkPolicies of every namespace involved).
pub fn allowed(policies: &[Value], from: &Endpoint, to: &Endpoint, port: u64, protocol: &str) -> bool {
    direction_allows(policies, from, "Egress", "egress", "to", to, port, protocol)
        && direction_allows(policies, to, "Ingress", "ingress", "from", from, port, protocol)
}

#[allow(clippy::too_many_arguments)]
fn direction_allows(
    policies: &[Value],
    subject: &Endpoint,
    policy_type: &str,
    rules_key: &str,
    peers_key: &str,
    other: &Endpoint,
    port: u64,
    protocol: &str,
) -> bool {
    let EndpointKind::Pod { namespace, labels, .. } = &subject.kind else {
        return true; // nothing outside the cluster is governed by a NetworkPolicy
    };
    let applying: Vec<&Value> = policies
        .iter()
        .filter(|p| p["metadata"]["namespace"].as_str().unwrap_or("default") == namespace)
        .filter(|p| has_type(p, policy_type))
        .filter(|p| selector_matches(&p["spec"]["podSelector"], labels))
        .collect();
    if applying.is_empty() {
        return true;
    }
    // For egress, a named port is the destination's; for ingress, the subject's own.
    let port_owner = if policy_type == "Egress" { other } else { subject };
    applying.iter().any(|p| {
        p["spec"][rules_key].as_array().into_iter().flatten().any(|rule| {
            ports_match(&rule["ports"], port_owner, port, protocol)
                && peers_match(&rule[peers_key], namespace, other)
        })
    })
}

fn has_type(policy: &Value, policy_type: &str) -> bool {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types.iter().any(|t| t == policy_type),
        None => policy_type == "Ingress" || !policy["spec"]["egress"].is_null(),
    }
}

fn ports_match(ports: &Value, owner: &Endpoint, port: u64, protocol: &str) -> bool {
    let Some(ports) = ports.as_array().filter(|p| !p.is_empty()) else {
        return true;
    };
    ports.iter().any(|p| {
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if proto != protocol {
            return false;
        }
        match &p["port"] {
            Value::Null => true,
            Value::Number(n) => {
                let start = n.as_u64().unwrap_or_default();
                let end = p["endPort"].as_u64().unwrap_or(start);
                (start..=end).contains(&port)
            }
            Value::String(named) => match &owner.kind {
                EndpointKind::Pod { ports, .. } => {
                    ports.iter().any(|(n, number, proto)| n == named && *number == port && proto == protocol)
                }
                EndpointKind::Outside(_) => false,
            },
            other => panic!("unexpected port {other}"),
        }
    })
}

fn peers_match(peers: &Value, policy_namespace: &str, other: &Endpoint) -> bool {
    let Some(peers) = peers.as_array().filter(|p| !p.is_empty()) else {
        return true; // no peers: everyone
    };
    peers.iter().any(|peer| match &other.kind {
        EndpointKind::Outside(addr) => {
            let block = &peer["ipBlock"];
            !block.is_null() && ip_block_contains(block, *addr)
        }
        EndpointKind::Pod { namespace, namespace_labels, labels, .. } => {
            if !peer["ipBlock"].is_null() {
                return false;
            }
            let namespace_ok = match peer.get("namespaceSelector") {
                Some(sel) => selector_matches(sel, namespace_labels),
                None => namespace == policy_namespace,
            };
            let pod_ok = match peer.get("podSelector") {
                Some(sel) => selector_matches(sel, labels),
                None => true,
            };
            namespace_ok && pod_ok
        }
    })
}

fn ip_block_contains(block: &Value, addr: Ipv4Addr) -> bool {
    let in_cidr = |cidr: &str| -> bool {
        let Some((net, bits)) = cidr.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
            return false; // IPv6 blocks never hold an IPv4 address
        };
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        u32::from(net) & mask == u32::from(addr) & mask
    };
    in_cidr(block["cidr"].as_str().unwrap_or_default())
        && !block["except"].as_array().into_iter().flatten().filter_map(Value::as_str).any(in_cidr)
}
