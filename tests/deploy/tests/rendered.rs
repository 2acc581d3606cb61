//! The kustomize overlays: each renders with kubectl, validates against the Kubernetes schemas,
//! and keeps the invariants of a safe, working installation (probes, limits, non-root, replicas,
//! autoscalers, disruption budgets, spreading, selectors, ports, images).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use kubegate_deploy_tests::k8s::{
    self, Workload, container_env, find, id, listen_port, of_kind, selector_matches, service_selects,
    workloads,
};
use kubegate_deploy_tests::render::{Rendered, overlays};
use kubegate_deploy_tests::tools;
use serde_json::Value;

/// The admin listener of every kubegate service inside Kubernetes.
const ADMIN_PORT: u64 = 8080;

/// component → (binary, replicas, listen variable, port) of the services.
const SERVICES: &[(&str, &str, u64, &str, u64)] = &[
    ("identity", "kubegate-identity", 2, "KUBEGATE_IDENTITY_LISTEN", 9441),
    ("kubeconfig", "kubegate-kubeconfig", 2, "KUBEGATE_KUBECONFIG_LISTEN", 9442),
    ("proxy", "kubegate-proxy", 3, "KUBEGATE_PROXY_LISTEN", 9443),
];

fn each_overlay(check: impl Fn(&Rendered)) {
    for rendered in overlays().values() {
        check(rendered);
    }
}

/// The kubegate services' workloads (their containers run the kubegate image).
fn kubegate_workloads(objects: &[Value]) -> Vec<Workload<'_>> {
    workloads(objects)
        .into_iter()
        .filter(|w| SERVICES.iter().any(|(component, ..)| w.component() == *component))
        .collect()
}

fn port_number(workload: &Workload, port: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64(),
        Value::String(name) => {
            workload.named_ports().into_iter().find(|(n, ..)| n == name).map(|(_, p, _)| p)
        }
        _ => None,
    }
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    each_overlay(|r| {
        assert!(!r.objects.is_empty(), "{} renders nothing", r.overlay);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{}.yaml", r.overlay));
        std::fs::write(&file, &r.yaml).unwrap();
        for version in tools::KUBERNETES_VERSIONS {
            if let Err(report) = tools::validate_schemas(&[&file], version) {
                panic!("the {} overlay is not valid for Kubernetes {version}:\n{report}", r.overlay);
            }
        }
    });
}

#[test]
fn everything_lands_in_the_kubegate_namespace() {
    each_overlay(|r| {
        for obj in &r.objects {
            let namespaced = !matches!(k8s::kind(obj), "Namespace" | "ClusterRole" | "ClusterRoleBinding");
            if namespaced {
                assert_eq!(
                    obj["metadata"]["namespace"],
                    "kubegate",
                    "{}: {} is not in namespace kubegate",
                    r.overlay,
                    id(obj)
                );
            }
        }
        assert!(
            find(&r.objects, "Namespace", "kubegate").is_some(),
            "{}: the namespace is not created",
            r.overlay
        );
    });
}

#[test]
fn the_validator_rejects_what_the_api_server_would() {
    // A typo'd field and a wrong type: the schema check must catch both, or it proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  selectr: {a: b}\n  ports:\n    - port: \"https\"\n",
    )
    .unwrap();
    let report =
        tools::validate_schemas(&[&file], "1.33.0").expect_err("an invalid Service passes validation");
    assert!(report.contains("selectr") || report.contains("port"), "{report}");
}

#[test]
fn every_container_is_probed_limited_and_unprivileged() {
    each_overlay(|r| {
        for w in workloads(&r.objects) {
            let pod = w.pod_spec;
            let at = format!("{} {} {}", r.overlay, w.kind, w.name);
            assert_eq!(pod["automountServiceAccountToken"], Value::Bool(false), "{at}: mounts an API token");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true), "{at}: pod runAsNonRoot");
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{at}: seccomp");
            assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null(), "{at}: host namespaces");
            for c in w.containers() {
                let at = format!("{at} container {}", c["name"].as_str().unwrap_or_default());
                for probe in ["livenessProbe", "readinessProbe"] {
                    assert!(c[probe].is_object(), "{at}: no {probe}");
                }
                for (kind, res) in
                    [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")]
                {
                    assert!(!c["resources"][kind][res].is_null(), "{at}: no resources.{kind}.{res}");
                }
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], Value::Bool(true), "{at}: runAsNonRoot");
                assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true), "{at}: readOnlyRootFilesystem");
                assert_eq!(
                    sc["allowPrivilegeEscalation"],
                    Value::Bool(false),
                    "{at}: allowPrivilegeEscalation"
                );
                assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{at}: capabilities.drop");
                assert!(sc["capabilities"]["add"].is_null(), "{at}: adds capabilities");
                assert!(sc["privileged"] != Value::Bool(true), "{at}: privileged");
                for p in c["ports"].as_array().into_iter().flatten() {
                    assert!(p["hostPort"].is_null(), "{at}: hostPort");
                }
            }
        }
    });
}

#[test]
fn kubegate_services_probe_their_admin_endpoints() {
    each_overlay(|r| {
        let services = kubegate_workloads(&r.objects);
        assert_eq!(services.len(), SERVICES.len(), "{}: expected the three services", r.overlay);
        for w in services {
            for c in w.containers() {
                let at = format!("{} {} container {}", r.overlay, w.name, c["name"]);
                let env = container_env(c, &r.objects);
                let admin = env.get("KUBEGATE_ADMIN_LISTEN").and_then(Value::as_str);
                assert_eq!(admin.and_then(listen_port), Some(ADMIN_PORT), "{at}: KUBEGATE_ADMIN_LISTEN");
                assert!(
                    admin.unwrap().starts_with("0.0.0.0:"),
                    "{at}: the admin listener must face the kubelet"
                );
                for (probe, path) in
                    [("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")]
                {
                    let get = &c[probe]["httpGet"];
                    if probe == "startupProbe" && c[probe].is_null() {
                        continue;
                    }
                    assert_eq!(get["path"], path, "{at}: {probe} path");
                    assert_eq!(port_number(&w, &get["port"]), Some(ADMIN_PORT), "{at}: {probe} port");
                    assert!(
                        get["scheme"].is_null() || get["scheme"] == "HTTP",
                        "{at}: the admin port is plain HTTP"
                    );
                }
            }
        }
    });
}

#[test]
fn replicas_autoscalers_budgets_and_spreading() {
    each_overlay(|r| {
        let all = workloads(&r.objects);
        for (component, _, replicas, ..) in SERVICES {
            let w = all.iter().find(|w| w.component() == *component).unwrap();
            assert_eq!(w.kind, "Deployment", "{}: {component}", r.overlay);
            assert_eq!(w.replicas, Some(*replicas), "{}: {component} replicas", r.overlay);
        }
        let nats = all.iter().find(|w| w.component() == "nats").expect("NATS is deployed");
        let nats_replicas = if r.overlay == "production" { 3 } else { 1 };
        assert_eq!(nats.replicas, Some(nats_replicas), "{}: NATS servers", r.overlay);

        // Every autoscaler scales an existing Deployment, starting from its replicas.
        let hpas: Vec<&Value> = of_kind(&r.objects, "HorizontalPodAutoscaler").collect();
        assert!(!hpas.is_empty(), "{}: no HorizontalPodAutoscaler", r.overlay);
        for hpa in &hpas {
            let target = &hpa["spec"]["scaleTargetRef"];
            let w = all.iter().find(|w| w.kind == target["kind"] && w.name == target["name"]).unwrap_or_else(
                || panic!("{}: {} scales {target}, which does not exist", r.overlay, id(hpa)),
            );
            assert_eq!(target["apiVersion"], w.obj["apiVersion"], "{}: {}", r.overlay, id(hpa));
            assert_eq!(
                hpa["spec"]["minReplicas"].as_u64(),
                w.replicas,
                "{}: {} minReplicas",
                r.overlay,
                id(hpa)
            );
            assert!(
                hpa["spec"]["maxReplicas"].as_u64() > w.replicas,
                "{}: {} cannot grow",
                r.overlay,
                id(hpa)
            );
            // Utilization targets need requests.
            for c in w.containers() {
                assert!(!c["resources"]["requests"]["cpu"].is_null());
            }
        }
        let proxy_scaled = hpas.iter().any(|h| h["spec"]["scaleTargetRef"]["name"] == "kubegate-proxy");
        assert!(proxy_scaled, "{}: the proxy has no autoscaler", r.overlay);

        // Every budget covers exactly one workload; every multi-replica workload has one.
        let pdbs: Vec<&Value> = of_kind(&r.objects, "PodDisruptionBudget").collect();
        for pdb in &pdbs {
            let covered: Vec<&str> = all
                .iter()
                .filter(|w| selector_matches(&pdb["spec"]["selector"], &w.pod_labels))
                .map(|w| w.name)
                .collect();
            assert_eq!(covered.len(), 1, "{}: {} selects {covered:?}", r.overlay, id(pdb));
        }
        for w in all.iter().filter(|w| w.replicas.unwrap_or(1) > 1) {
            let has = pdbs.iter().any(|p| selector_matches(&p["spec"]["selector"], &w.pod_labels));
            assert!(has, "{}: {} has replicas but no PodDisruptionBudget", r.overlay, w.name);
            let spread = w.pod_spec["topologySpreadConstraints"].as_array().cloned().unwrap_or_default();
            let keys: BTreeSet<&str> = spread.iter().filter_map(|c| c["topologyKey"].as_str()).collect();
            assert!(
                keys.contains("kubernetes.io/hostname") && keys.contains("topology.kubernetes.io/zone"),
                "{}: {} must spread over nodes and zones",
                r.overlay,
                w.name
            );
            for c in &spread {
                assert!(
                    selector_matches(&c["labelSelector"], &w.pod_labels),
                    "{}: {} spreads other pods",
                    r.overlay,
                    w.name
                );
            }
        }
        // Workload selectors select their own pods.
        for w in &all {
            assert!(selector_matches(w.selector, &w.pod_labels), "{}: {} selector", r.overlay, w.name);
        }
    });
}

#[test]
fn services_select_pods_and_ports_match_the_configuration() {
    each_overlay(|r| {
        let all = workloads(&r.objects);
        // Every Service selects pods and targets one of their ports.
        for svc in of_kind(&r.objects, "Service") {
            let selected: Vec<&Workload> =
                all.iter().filter(|w| service_selects(&svc["spec"]["selector"], &w.pod_labels)).collect();
            assert!(!selected.is_empty(), "{}: {} selects no pods", r.overlay, id(svc));
            for p in svc["spec"]["ports"].as_array().unwrap() {
                let target = if p["targetPort"].is_null() { &p["port"] } else { &p["targetPort"] };
                for w in &selected {
                    assert!(
                        port_number(w, target).is_some(),
                        "{}: {} targetPort {target} not on {}",
                        r.overlay,
                        id(svc),
                        w.name
                    );
                }
            }
            let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP");
            if k8s::name(svc) == "kubegate-proxy" {
                assert_eq!(kind, "LoadBalancer", "{}: the proxy is published by a LoadBalancer", r.overlay);
            } else {
                assert_eq!(
                    kind,
                    "ClusterIP",
                    "{}: only the proxy is reachable from outside ({})",
                    r.overlay,
                    id(svc)
                );
            }
        }
        assert!(of_kind(&r.objects, "Ingress").next().is_none(), "{}: no Ingress", r.overlay);

        let proxy = all.iter().find(|w| w.component() == "proxy").unwrap();
        let proxy_env = container_env(proxy.containers().next().unwrap(), &r.objects);
        for (component, _, _, listen_var, port) in SERVICES {
            let w = all.iter().find(|w| w.component() == *component).unwrap();
            let c = w.containers().next().unwrap();
            let env = container_env(c, &r.objects);
            let listen = env
                .get(*listen_var)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{component}: no {listen_var}"));
            assert_eq!(listen_port(listen), Some(*port), "{}: {listen_var}={listen}", r.overlay);
            assert!(
                listen.starts_with("0.0.0.0:"),
                "{}: {listen_var} must listen on every address in a pod",
                r.overlay
            );
            assert_eq!(
                port_number(w, &Value::String("https".into())),
                Some(*port),
                "{}: {component} https port",
                r.overlay
            );
            let svc = find(&r.objects, "Service", &format!("kubegate-{component}")).unwrap();
            let sp = &svc["spec"]["ports"][0];
            assert_eq!(
                port_number(w, &sp["targetPort"]),
                Some(*port),
                "{}: Service kubegate-{component}",
                r.overlay
            );
            let public = if *component == "proxy" { 443 } else { *port };
            assert_eq!(sp["port"].as_u64(), Some(public), "{}: Service kubegate-{component} port", r.overlay);
        }
        // The proxy reaches the services where their Services are.
        for (var, component) in
            [("KUBEGATE_IDENTITY_URL", "identity"), ("KUBEGATE_KUBECONFIG_URL", "kubeconfig")]
        {
            let url = proxy_env.get(var).and_then(Value::as_str).unwrap();
            let port = SERVICES.iter().find(|s| s.0 == component).unwrap().4;
            assert_eq!(url, format!("https://kubegate-{component}:{port}"), "{}: {var}", r.overlay);
        }
        // kubeconfig writes the public URL into every kubeconfig: HTTPS, on the default port
        // the LoadBalancer serves.
        let kc = all.iter().find(|w| w.component() == "kubeconfig").unwrap();
        let kc_env = container_env(kc.containers().next().unwrap(), &r.objects);
        let public = kc_env.get("KUBEGATE_PUBLIC_URL").and_then(Value::as_str).unwrap_or_default();
        assert!(
            public.starts_with("https://") && !public.trim_start_matches("https://").contains(':'),
            "{}: KUBEGATE_PUBLIC_URL={public:?} must be https:// on port 443",
            r.overlay
        );
        // Everyone reaches NATS through its Service on the client port.
        let nats_svc = find(&r.objects, "Service", "kubegate-nats").unwrap();
        let nats = all.iter().find(|w| w.component() == "nats").unwrap();
        assert_eq!(nats_svc["spec"]["ports"][0]["port"].as_u64(), Some(4222));
        let ports: BTreeMap<String, u64> = nats.named_ports().into_iter().map(|(n, p, _)| (n, p)).collect();
        assert_eq!(ports.get("client"), Some(&4222));
        assert_eq!(ports.get("cluster"), Some(&6222));
        assert_eq!(ports.get("monitor"), Some(&8222));
        for w in kubegate_workloads(&r.objects) {
            let env = container_env(w.containers().next().unwrap(), &r.objects);
            assert_eq!(
                env.get("KUBEGATE_NATS_URL").and_then(Value::as_str),
                Some("tls://kubegate-nats:4222")
            );
            assert!(
                env.get("KUBEGATE_NATS_CA").is_some_and(Value::is_string),
                "{}: NATS without TLS",
                w.name
            );
        }
        if r.overlay == "dev" {
            let pg = all.iter().find(|w| w.component() == "postgres").expect("dev runs PostgreSQL");
            assert_eq!(port_number(pg, &Value::String("postgres".into())), Some(5432));
            let svc = find(&r.objects, "Service", "kubegate-postgres").unwrap();
            assert_eq!(svc["spec"]["ports"][0]["port"].as_u64(), Some(5432));
        } else {
            assert!(all.iter().all(|w| w.component() != "postgres"), "production expects PostgreSQL outside");
        }
    });
}

#[test]
fn one_kubegate_image_each_service_runs_its_own_binary() {
    let metadata = tools::cargo_metadata();
    let version = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "kubegate-identity")
        .and_then(|p| p["version"].as_str())
        .unwrap()
        .to_string();
    each_overlay(|r| {
        let mut images = BTreeSet::new();
        for w in kubegate_workloads(&r.objects) {
            let binary = SERVICES.iter().find(|s| s.0 == w.component()).unwrap().1;
            for c in w.containers() {
                images.insert(c["image"].as_str().unwrap().to_string());
                assert_eq!(
                    c["command"],
                    serde_json::json!([format!("/usr/local/bin/{binary}")]),
                    "{}: {} runs the wrong binary",
                    r.overlay,
                    w.name
                );
            }
        }
        assert_eq!(
            images.len(),
            1,
            "{}: the kubegate containers must share one image: {images:?}",
            r.overlay
        );
        let image = images.into_iter().next().unwrap();
        assert!(
            image.ends_with(&format!(":{version}")),
            "{}: image {image} is not tagged with the workspace version {version}",
            r.overlay
        );
        // Other images are pinned too.
        for w in workloads(&r.objects) {
            for c in w.containers() {
                let image = c["image"].as_str().unwrap();
                let (_, tag, digest) = kubegate_deploy_tests::dockerfile::image_parts(image);
                assert!(
                    digest.is_some() || tag.is_some_and(|t| t != "latest"),
                    "{}: {} uses an unpinned image {image}",
                    r.overlay,
                    w.name
                );
            }
        }
    });
}

#[test]
fn files_the_services_read_are_mounted_and_writable_paths_are_volumes() {
    each_overlay(|r| {
        for w in kubegate_workloads(&r.objects) {
            let volumes: BTreeMap<&str, &Value> = w.pod_spec["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| (v["name"].as_str().unwrap(), v))
                .collect();
            for c in w.containers() {
                let env = container_env(c, &r.objects);
                let mounts: Vec<&Value> = c["volumeMounts"].as_array().into_iter().flatten().collect();
                for (var, value) in &env {
                    let Some(path) = value.as_str().filter(|v| v.starts_with('/')) else { continue };
                    let mount = mounts
                        .iter()
                        .find(|m| {
                            path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap()))
                                || path == m["mountPath"]
                        })
                        .unwrap_or_else(|| panic!("{}: {} {var}={path} is on no volume", r.overlay, w.name));
                    let volume = volumes[mount["name"].as_str().unwrap()];
                    let rel =
                        path.trim_start_matches(mount["mountPath"].as_str().unwrap()).trim_start_matches('/');
                    if var.ends_with("_DIR") {
                        assert!(
                            volume["emptyDir"].is_object(),
                            "{}: {var} must be a writable emptyDir",
                            r.overlay
                        );
                        assert!(
                            mount["readOnly"] != Value::Bool(true),
                            "{}: {var} is mounted read-only",
                            r.overlay
                        );
                        continue;
                    }
                    let items =
                        volume["secret"]["items"].as_array().or(volume["configMap"]["items"].as_array());
                    if let Some(items) = items {
                        assert!(
                            items.iter().any(|i| i["path"] == rel),
                            "{}: {} {var}={path}: volume {} does not hold {rel}",
                            r.overlay,
                            w.name,
                            mount["name"]
                        );
                    }
                }
            }
        }
        // The proxy's replica id is its pod's name; its spool is a local writable volume.
        let proxy = workloads(&r.objects).into_iter().find(|w| w.component() == "proxy").unwrap();
        let c = proxy.containers().next().unwrap();
        let replica =
            c["env"].as_array().unwrap().iter().find(|e| e["name"] == "KUBEGATE_REPLICA_ID").unwrap();
        assert_eq!(replica["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
        let env = container_env(c, &r.objects);
        assert!(env.contains_key("KUBEGATE_AUDIT_SPOOL_DIR"));
    });
}
