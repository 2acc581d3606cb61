//! Secrets: the repository holds placeholders only; secrets.example.yaml documents every Secret
//! and key the overlays read; deploy/scripts/create-secrets.sh makes exactly those, with
//! certificates that NATS and the services' names accept; register-cluster.sh builds a valid
//! request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use kubegate_deploy_tests::k8s::{kind, name, of_kind, workloads};
use kubegate_deploy_tests::render::{Rendered, documents_of, overlays};
use kubegate_deploy_tests::{deploy_dir, tools};
use serde_json::Value;

/// (Secret, key) pairs the overlay's pods read, by env or volume.
fn references(r: &Rendered) -> BTreeSet<(String, String)> {
    let mut refs = BTreeSet::new();
    for w in workloads(&r.objects) {
        for c in w.containers() {
            for e in c["env"].as_array().into_iter().flatten() {
                let s = &e["valueFrom"]["secretKeyRef"];
                if s.is_object() {
                    refs.insert((s["name"].as_str().unwrap().into(), s["key"].as_str().unwrap().into()));
                }
            }
            assert!(
                c["envFrom"].as_array().into_iter().flatten().all(|f| f["secretRef"].is_null()),
                "{}: read Secret keys one by one",
                w.name
            );
        }
        for v in w.pod_spec["volumes"].as_array().into_iter().flatten() {
            let s = &v["secret"];
            if s.is_object() {
                let secret = s["secretName"].as_str().unwrap();
                let items = s["items"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: volume {} must list its keys", w.name, v["name"]));
                for i in items {
                    refs.insert((secret.into(), i["key"].as_str().unwrap().into()));
                }
            }
        }
    }
    refs
}

/// Secret name → keys, from manifests.
fn secret_keys(objects: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    of_kind(objects, "Secret")
        .map(|s| {
            let keys = ["data", "stringData"]
                .iter()
                .flat_map(|f| s[*f].as_object().into_iter().flatten().map(|(k, _)| k.clone()))
                .collect();
            (name(s).to_string(), keys)
        })
        .collect()
}

#[test]
fn the_example_documents_every_secret_the_overlays_read() {
    let example = documents_of(&deploy_dir().join("kubernetes/secrets.example.yaml"));
    let documented = secret_keys(&example);
    let mut used = BTreeSet::new();
    for r in overlays().values() {
        assert!(
            of_kind(&r.objects, "Secret").next().is_none(),
            "{}: the overlays must not create Secrets",
            r.overlay
        );
        for (secret, key) in references(r) {
            assert!(
                documented.get(&secret).is_some_and(|k| k.contains(&key)),
                "{}: reads {secret}/{key}, which secrets.example.yaml does not document",
                r.overlay
            );
            used.insert((secret, key));
        }
    }
    for (secret, keys) in &documented {
        for key in keys {
            assert!(
                used.contains(&(secret.clone(), key.clone())),
                "secrets.example.yaml documents {secret}/{key}, which nothing reads"
            );
        }
    }
    let file = deploy_dir().join("kubernetes/secrets.example.yaml");
    for version in tools::KUBERNETES_VERSIONS {
        tools::validate_schemas(&[&file], version).unwrap_or_else(|e| panic!("secrets.example.yaml: {e}"));
    }
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_repository_holds_placeholders_never_secrets() {
    let mut files = Vec::new();
    files_under(&deploy_dir(), &mut files);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let at = f.strip_prefix(deploy_dir()).unwrap().display().to_string();
        for line in text.lines() {
            assert!(!(line.contains("-----BEGIN") && line.contains("PRIVATE KEY")), "{at}: a private key");
            if let Some(i) = line.find("AGE-SECRET-KEY-1") {
                let rest: String = line[i + 16..].chars().take_while(char::is_ascii_alphanumeric).collect();
                assert!(rest.len() < 20, "{at}: an age secret key");
            }
        }
        let is_yaml = f.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if !is_yaml {
            continue;
        }
        let Ok(docs) = kubegate_deploy_tests::render::documents(&text.replace("REPLACE_NAMESPACE", "x"))
        else {
            continue;
        };
        for s in docs.iter().filter(|d| kind(d) == "Secret") {
            for field in ["data", "stringData"] {
                for (k, v) in s[field].as_object().into_iter().flatten() {
                    let v = v.as_str().unwrap_or_default();
                    assert!(
                        v.starts_with("REPLACE_ME"),
                        "{at}: Secret {}/{k} holds a value, not a REPLACE_ME placeholder",
                        name(s)
                    );
                }
            }
        }
    }
}

fn kubectl_path() -> String {
    kubegate_testsupport::kubectl::kubectl(33).display().to_string()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn create_secrets_makes_what_the_dev_overlay_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("secrets");
    let fleet = dir.path().join("fleet.key");
    std::fs::write(
        &fleet,
        "# created: 2026-01-01T00:00:00Z\n# public key: age1fakefakefakefakefakefakefake\nAGE-SECRET-KEY-1FAKEFAKEFAKE\n",
    )
    .unwrap();
    let run = Command::new("bash")
        .arg(deploy_dir().join("scripts/create-secrets.sh"))
        .args(["--dev", "--public-host", "kubegate.test", "--fleet-key-file"])
        .arg(&fleet)
        .arg("--out")
        .arg(&out)
        .env("KUBECTL", kubectl_path())
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(run.status.success(), "create-secrets.sh failed:\n{}", String::from_utf8_lossy(&run.stderr));

    let mut objects = Vec::new();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        objects.extend(documents_of(&e.path()));
    }
    let made = secret_keys(&objects);
    for (secret, key) in references(&overlays()["dev"]) {
        assert!(
            made.get(&secret).is_some_and(|k| k.contains(&key)),
            "create-secrets.sh --dev does not make {secret}/{key}"
        );
    }
    let value = |secret: &str, key: &str| -> Vec<u8> {
        let s = objects.iter().find(|o| kind(o) == "Secret" && name(o) == secret).unwrap();
        assert_eq!(s["metadata"]["namespace"], "kubegate");
        let b64 = s["data"][key].as_str().unwrap();
        let out = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut out = out;
        out.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
        out.wait_with_output().unwrap().stdout
    };
    // The master key is base64 of 32 bytes; the URLs reach the in-cluster PostgreSQL.
    let master = String::from_utf8(value("kubegate-identity", "master-key")).unwrap();
    assert_eq!(master.len(), 44, "master key {master:?}: base64 of 32 bytes, no newline");
    let pg = String::from_utf8(value("kubegate-postgres", "password")).unwrap();
    let url = String::from_utf8(value("kubegate-identity", "database-url")).unwrap();
    assert_eq!(url, format!("postgres://postgres:{pg}@kubegate-postgres:5432/kubegate_identity"));
    assert_eq!(
        String::from_utf8(value("kubegate-fleet", "secret-key")).unwrap(),
        "AGE-SECRET-KEY-1FAKEFAKEFAKE"
    );
    assert_eq!(
        String::from_utf8(value("kubegate-fleet", "public-key")).unwrap(),
        "age1fakefakefakefakefakefakefake"
    );
    // nats-server takes the passwords as made, with the deployed users and permissions (a value
    // that starts with a digit is read as a number and the whole configuration refused).
    let nats = dir.path().join("nats");
    std::fs::create_dir_all(&nats).unwrap();
    std::fs::copy(deploy_dir().join("kubernetes/base/nats/auth.conf"), nats.join("auth.conf")).unwrap();
    std::fs::write(nats.join("nats.conf"), "listen: \"127.0.0.1:4222\"\ninclude ./auth.conf\n").unwrap();
    let mut check = Command::new("nats-server");
    check.args(["-t", "-c"]).arg(nats.join("nats.conf"));
    for user in ["identity", "kubeconfig", "proxy", "audit"] {
        let password = String::from_utf8(value("kubegate-nats-users", user)).unwrap();
        check.env(format!("NATS_{}_PASSWORD", user.to_uppercase()), password);
    }
    let checked = check.output().unwrap();
    assert!(
        checked.status.success(),
        "nats-server refuses the made passwords: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for s in ["kubegate-nats-tls", "kubegate-proxy-tls"] {
        let t = objects.iter().find(|o| name(o) == s).unwrap();
        assert_eq!(t["type"], "kubernetes.io/tls");
    }

    // The certificates chain to the CA and name what clients dial.
    let pem = dir.path().join("pem");
    std::fs::create_dir_all(&pem).unwrap();
    let write = |file: &str, secret: &str, key: &str| {
        let p = pem.join(file);
        std::fs::write(&p, value(secret, key)).unwrap();
        p.display().to_string()
    };
    let ca = write("ca.crt", "kubegate-internal-ca", "ca.crt");
    for (secret, hosts) in [
        (
            "kubegate-nats-tls",
            vec!["kubegate-nats", "kubegate-nats.kubegate.svc", "kubegate-nats-2.kubegate-nats-headless"],
        ),
        ("kubegate-identity-tls", vec!["kubegate-identity"]),
        ("kubegate-kubeconfig-tls", vec!["kubegate-kubeconfig"]),
        ("kubegate-proxy-tls", vec!["kubegate.test"]),
    ] {
        let cert = write(&format!("{secret}.crt"), secret, "tls.crt");
        for host in hosts {
            let (ok, log) = openssl(&[
                "verify",
                "-CAfile",
                &ca,
                "-verify_hostname",
                host,
                "-purpose",
                "sslserver",
                &cert,
            ]);
            assert!(ok, "{secret} is not valid for {host}: {log}");
        }
        let (ok, log) = openssl(&["verify", "-CAfile", &ca, "-purpose", "sslclient", &cert]);
        assert!(ok || secret != "kubegate-nats-tls", "NATS routes need client auth: {log}");
        let (ok, _) = openssl(&["verify", "-CAfile", &ca, "-verify_hostname", "evil.example", &cert]);
        assert!(!ok, "{secret} is valid for any name");
    }
}

#[test]
fn register_cluster_builds_the_endpoint_request() {
    let dir = tempfile::tempdir().unwrap();
    // A kubectl stand-in that answers what a cluster with deploy/cluster applied would.
    let fake = dir.path().join("kubectl");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$*\" in\n\
         *'config view'*) printf 'https://10.0.0.1:6443' ;;\n\
         *'.data.token'*) printf 'dG9rZW4tYWJj' ;;\n\
         *'.data.ca\\.crt'*) printf '%s' \"$(printf -- '-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n' | base64 -w0)\" ;;\n\
         *) echo \"unexpected: $*\" >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let run = Command::new("bash")
        .arg(deploy_dir().join("scripts/register-cluster.sh"))
        .args(["--context", "prod", "--name", "prod \"eu\"", "--print"])
        .env("KUBECTL", &fake)
        .output()
        .unwrap();
    assert!(run.status.success(), "register-cluster.sh failed:\n{}", String::from_utf8_lossy(&run.stderr));
    let body: Value = serde_json::from_slice(&run.stdout).expect("the request body is JSON");
    assert_eq!(body["name"], "prod \"eu\"");
    assert_eq!(body["url"], "https://10.0.0.1:6443");
    assert_eq!(body["token"], "token-abc");
    assert_eq!(body["caCert"], "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----");
}
