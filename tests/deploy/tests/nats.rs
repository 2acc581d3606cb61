//! The NATS configuration of each overlay: it passes nats-server's own check, every variable it
//! reads is given to the NATS container, each service's user and password line up, and — on a
//! real nats-server with the dev configuration and TLS — the bus rules hold: each service may
//! do exactly its part (publish its events, keep its stream, read the streams it needs,
//! request or answer tokens) and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubegate_bus::{Bus, Feed, FeedItem, NatsConfig, StreamDef};
use kubegate_deploy_tests::k8s::{container_env, find, workloads};
use kubegate_deploy_tests::render::{Rendered, overlays};
use kubegate_deploy_tests::tools::nats_server;
use kubegate_events::identity::{IdentityEvent, UserDisabled};
use kubegate_events::{Actor, Envelope, RawEnvelope};
use serde_json::{Value, json};

const TOKEN_SUBJECT: &str = "kubegate.rpc.identity.kubeconfig-token.issue";

/// nats.conf and auth.conf from the rendered ConfigMap the NATS pods mount.
fn nats_files(r: &Rendered) -> (String, String) {
    let nats = workloads(&r.objects).into_iter().find(|w| w.component() == "nats").unwrap();
    let volume = nats.pod_spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "config").unwrap();
    let cm = find(&r.objects, "ConfigMap", volume["configMap"]["name"].as_str().unwrap())
        .expect("the NATS config volume names a rendered ConfigMap");
    let file = |k: &str| {
        cm["data"][k].as_str().unwrap_or_else(|| panic!("{}: ConfigMap lacks {k}", r.overlay)).to_string()
    };
    let conf = file("nats.conf");
    let args = nats.containers().next().unwrap()["args"].clone();
    assert_eq!(
        args,
        json!(["--config", "/etc/nats/config/nats.conf"]),
        "{}: NATS reads the mounted nats.conf",
        r.overlay
    );
    assert!(conf.contains("include ./auth.conf"), "{}: nats.conf must include auth.conf", r.overlay);
    (conf, file("auth.conf"))
}

/// The `$VARIABLE` references of a NATS config (outside quotes and comments).
fn variables(conf: &str) -> Vec<String> {
    let mut vars = Vec::new();
    for line in conf.lines() {
        let mut quoted = false;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '"' => quoted = !quoted,
                '#' if !quoted => break,
                '$' if !quoted => {
                    let name: String = chars[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                        .collect();
                    i += name.len();
                    vars.push(name);
                }
                _ => {}
            }
            i += 1;
        }
    }
    vars
}

/// user → password variable, from auth.conf.
fn users(auth: &str) -> BTreeMap<String, String> {
    let mut users = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in auth.lines().map(|l| l.trim().trim_start_matches('{').trim()) {
        if let Some(u) = line.strip_prefix("user:") {
            current = Some(u.trim().trim_matches('"').to_string());
        } else if let Some(p) = line.strip_prefix("password:") {
            let var = p
                .trim()
                .trim_end_matches('}')
                .trim()
                .strip_prefix('$')
                .expect("passwords come from variables, never literals");
            users.insert(current.take().expect("password after user"), var.to_string());
        }
    }
    users
}

/// The NATS container's variables that come from Secrets: variable → (secret, key).
fn nats_secret_env(r: &Rendered) -> BTreeMap<String, (String, String)> {
    let nats = workloads(&r.objects).into_iter().find(|w| w.component() == "nats").unwrap();
    let c = nats.containers().next().unwrap();
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["valueFrom"]["secretKeyRef"].is_object())
        .map(|e| {
            let r = &e["valueFrom"]["secretKeyRef"];
            (
                e["name"].as_str().unwrap().to_string(),
                (r["name"].as_str().unwrap().to_string(), r["key"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// A directory with the config (paths and ports moved into it), TLS files for 127.0.0.1 and a
/// JetStream store: what the NATS pod has, on this machine.
struct LocalConfig {
    dir: tempfile::TempDir,
    conf: PathBuf,
    ca: PathBuf,
    port: u16,
    env: BTreeMap<String, String>,
}

fn local_config(r: &Rendered) -> LocalConfig {
    let (conf, auth) = nats_files(r);
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    kubegate_tls::install_crypto_provider();
    let ca = kubegate_tls::DevCa::generate("kubegate deploy test CA").unwrap();
    let (cert, key) = ca.issue_server(&["127.0.0.1", "localhost", "kubegate-nats"]).unwrap();
    std::fs::write(tls.join("tls.crt"), cert).unwrap();
    std::fs::write(tls.join("tls.key"), key).unwrap();
    std::fs::write(tls.join("ca.crt"), ca.cert_pem()).unwrap();
    let port = kubegate_testsupport::net::free_port();
    let monitor = kubegate_testsupport::net::free_port();
    let mut local = conf.clone();
    for (from, to) in [
        ("/etc/nats/tls/", format!("{}/", tls.display())),
        ("/data/jetstream", dir.path().join("jetstream").display().to_string()),
        ("0.0.0.0:4222", format!("127.0.0.1:{port}")),
        ("0.0.0.0:8222", format!("127.0.0.1:{monitor}")),
        ("0.0.0.0:6222", format!("127.0.0.1:{}", kubegate_testsupport::net::free_port())),
    ] {
        if from == "0.0.0.0:6222" && !local.contains(from) {
            continue; // single server: no cluster block
        }
        assert!(local.contains(from), "{}: nats.conf no longer mentions {from}; update this test", r.overlay);
        local = local.replace(from, &to);
    }
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, local).unwrap();
    std::fs::write(dir.path().join("auth.conf"), auth).unwrap();
    let mut env: BTreeMap<String, String> = nats_secret_env(r)
        .into_keys()
        .map(|var| (var.clone(), format!("pw-{}", var.to_lowercase())))
        .collect();
    env.insert("POD_NAME".into(), "kubegate-nats-0".into());
    LocalConfig { conf: path, ca: tls.join("ca.crt"), port, env, dir }
}

/// `max_file_store` of a NATS config in bytes, its units read as powers of 1000 (the smaller
/// reading: nats-server takes them as powers of 1024).
fn max_file_store(conf: &str) -> u64 {
    let value = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("max_file_store:"))
        .expect("nats.conf sets max_file_store")
        .trim();
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    let unit = match value[digits.len()..].trim().to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        other => panic!("max_file_store unit {other:?}: teach this test"),
    };
    digits.parse::<u64>().unwrap() * unit
}

#[test]
fn the_audit_stream_leaves_the_domain_logs_room_in_the_store() {
    for r in overlays().values() {
        let (conf, _) = nats_files(r);
        let store = max_file_store(&conf);
        let proxy = workloads(&r.objects).into_iter().find(|w| w.component() == "proxy").unwrap();
        let env = container_env(proxy.containers().next().unwrap(), &r.objects);
        let limit: u64 = env
            .get("KUBEGATE_AUDIT_MAX_BYTES")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: the proxy has no KUBEGATE_AUDIT_MAX_BYTES", r.overlay))
            .parse()
            .unwrap_or_else(|e| panic!("{}: KUBEGATE_AUDIT_MAX_BYTES: {e}", r.overlay));
        // With the audit records filling the store, identity and kubeconfig could append no
        // event (no sign-in, no download) until it had room again.
        assert!(
            limit > 0 && limit <= store / 4 * 3,
            "{}: the audit stream may take {limit} bytes of a {store}-byte store; keep it within 3/4",
            r.overlay
        );
    }
}

#[test]
fn max_file_store_reads_nats_units() {
    assert_eq!(max_file_store("jetstream {\n  max_file_store: 1GB\n}"), 1_000_000_000);
    assert_eq!(max_file_store("  max_file_store: 512mb"), 512_000_000);
    assert_eq!(max_file_store("max_file_store: 4096"), 4096);
}

#[test]
fn each_overlays_nats_config_passes_the_servers_check() {
    for r in overlays().values() {
        let (conf, auth) = nats_files(r);
        let nats = workloads(&r.objects).into_iter().find(|w| w.component() == "nats").unwrap();
        let given: Vec<String> = nats.containers().next().unwrap()["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        for var in variables(&conf).into_iter().chain(variables(&auth)) {
            assert!(
                given.contains(&var),
                "{}: the NATS config reads ${var}, which the NATS container lacks",
                r.overlay
            );
        }
        let local = local_config(r);
        let out = Command::new(nats_server())
            .arg("-t")
            .arg("-c")
            .arg(&local.conf)
            .envs(&local.env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: nats-server -t rejects the configuration:\n{}{}",
            r.overlay,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if r.overlay == "production" {
            for want in [
                "cluster {",
                "routes: [",
                "kubegate-nats-2.kubegate-nats-headless:6222",
                "verify: true",
                "no_advertise: true",
            ] {
                assert!(conf.contains(want), "production nats.conf lacks {want}");
            }
        }
        assert!(
            conf.contains("jetstream {") && conf.contains("store_dir"),
            "{}: JetStream on file storage",
            r.overlay
        );
    }
}

#[test]
fn each_service_connects_as_its_own_user_with_the_matching_password() {
    for r in overlays().values() {
        let (_, auth) = nats_files(r);
        let users = users(&auth);
        let nats_env = nats_secret_env(r);
        let mut seen = Vec::new();
        for w in workloads(&r.objects) {
            let Some(c) = w.containers().next() else { continue };
            let env = kubegate_deploy_tests::k8s::container_env(c, &r.objects);
            let Some(user) = env.get("KUBEGATE_NATS_USER").and_then(Value::as_str) else { continue };
            let password_var = users
                .get(user)
                .unwrap_or_else(|| panic!("{}: {} connects as {user}, unknown to NATS", r.overlay, w.name));
            let service_ref = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "KUBEGATE_NATS_PASSWORD")
                .map(|e| &e["valueFrom"]["secretKeyRef"])
                .unwrap_or_else(|| panic!("{}: {} has no KUBEGATE_NATS_PASSWORD", r.overlay, w.name));
            let nats_ref = &nats_env[password_var];
            assert_eq!(
                (service_ref["name"].as_str().unwrap(), service_ref["key"].as_str().unwrap()),
                (nats_ref.0.as_str(), nats_ref.1.as_str()),
                "{}: {}'s password and NATS's ${password_var} come from different Secret keys",
                r.overlay,
                w.name
            );
            seen.push(user.to_string());
        }
        seen.sort();
        assert_eq!(
            seen,
            ["kubegate-identity", "kubegate-kubeconfig", "kubegate-proxy"],
            "{}: one user per service",
            r.overlay
        );
    }
}

/// nats-server running a [`LocalConfig`]; killed on drop.
struct Server {
    child: Child,
    config: LocalConfig,
}

impl Server {
    fn start(config: LocalConfig) -> Server {
        let log = std::fs::File::create(config.dir.path().join("nats.log")).unwrap();
        let child = Command::new(nats_server())
            .arg("-c")
            .arg(&config.conf)
            .envs(&config.env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Server { child, config };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", server.config.port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("nats-server exited ({status}):\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "nats-server did not listen:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.config.dir.path().join("nats.log")).unwrap_or_default()
    }

    async fn connect(&self, user: &str, password_var: &str) -> Bus {
        let config = NatsConfig {
            url: format!("tls://127.0.0.1:{}", self.config.port),
            name: user.to_string(),
            user: Some(user.to_string()),
            password: Some(self.config.env[password_var].clone()),
            tls_ca: Some(self.config.ca.clone()),
            ..NatsConfig::default()
        }
        .with_service_inbox(user.trim_start_matches("kubegate-"));
        let bus = Bus::connect(&config).await.unwrap();
        assert!(bus.wait_connected(Duration::from_secs(10)).await, "{user} cannot connect:\n{}", self.log());
        bus
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JetStream call that must be refused: resolves to whether it went through.
type Attempt = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

fn event(n: u64) -> RawEnvelope {
    let mut e = Envelope::new(
        "user-1",
        Actor::system("test"),
        "c",
        IdentityEvent::UserDisabled(UserDisabled { user_id: n }),
    );
    e.id = uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + u128::from(n));
    e.sequence = n;
    e.position = n;
    e.to_raw().unwrap()
}

async fn publish(bus: &Bus, subject: &str, n: u64) -> Result<(), String> {
    let e = event(n);
    bus.publish_events(&[(subject, &e)]).await.map_err(|e| e.to_string())
}

/// Subscribes `bus` to `subject` and returns once the server holds the subscription: a flush
/// only writes the SUB out, and another connection's message may be routed before the server
/// reads it. A JetStream request on the same connection is answered only after the server has
/// read everything sent before it.
async fn subscribed(bus: &Bus, subject: &str) -> async_nats::Subscriber {
    let sub = bus.client().subscribe(subject.to_string()).await.unwrap();
    bus.last_sequence("KUBEGATE_ENVIRONMENTS").await.unwrap();
    sub
}

/// Whether a feed of `stream` delivers its `count` messages and catches up within a few seconds.
async fn reads(bus: &Bus, stream: &str, filter: &str, count: usize) -> bool {
    let mut feed = Feed::follow(bus.clone(), stream, filter, 1);
    let mut events = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Some(FeedItem::Event { .. } | FeedItem::Undecodable { .. })) => events += 1,
            Ok(Some(FeedItem::CaughtUp { .. })) => return events == count,
            Ok(Some(FeedItem::Reset(_)) | None) | Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bus_rules_hold_on_a_real_server() {
    let r = &overlays()["dev"];
    let (_, auth) = nats_files(r);
    let users = users(&auth);
    let server = Server::start(local_config(r));
    let identity = server.connect("kubegate-identity", &users["kubegate-identity"]).await;
    let kubeconfig = server.connect("kubegate-kubeconfig", &users["kubegate-kubeconfig"]).await;
    let proxy = server.connect("kubegate-proxy", &users["kubegate-proxy"]).await;
    let audit = server.connect("kubegate-audit", &users["kubegate-audit"]).await;

    // Wrong password: refused.
    let config = NatsConfig {
        url: format!("tls://127.0.0.1:{}", server.config.port),
        name: "intruder".into(),
        user: Some("kubegate-proxy".into()),
        password: Some("guess".into()),
        tls_ca: Some(server.config.ca.clone()),
        ..NatsConfig::default()
    };
    let intruder = Bus::connect(&config).await.unwrap();
    assert!(!intruder.wait_connected(Duration::from_secs(1)).await, "a wrong password connects");

    // Each producer keeps its own stream (create, then update when its limits change).
    identity.ensure_stream(&StreamDef::identity()).await.expect("identity keeps KUBEGATE_IDENTITY");
    kubeconfig
        .ensure_stream(&StreamDef::environments())
        .await
        .expect("kubeconfig keeps KUBEGATE_ENVIRONMENTS");
    proxy
        .ensure_stream(&StreamDef::audit(Duration::from_secs(3600), 1 << 30))
        .await
        .expect("proxy keeps KUBEGATE_AUDIT");
    proxy
        .ensure_stream(&StreamDef::audit(Duration::from_secs(7200), 1 << 30))
        .await
        .expect("proxy updates KUBEGATE_AUDIT");

    // ... and publishes its events.
    publish(&identity, "kubegate.identity.user.disabled", 1)
        .await
        .expect("identity publishes identity events");
    publish(&kubeconfig, "kubegate.environments.environment.registered", 2)
        .await
        .expect("kubeconfig publishes environment events");
    publish(&proxy, "kubegate.audit.request", 3).await.expect("the proxy publishes audit records");

    // Token requests: kubeconfig asks, identity answers.
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let identity = identity.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            identity
                .serve(TOKEN_SUBJECT, "kubegate-identity", stop, |req: Value, _| async move {
                    Ok(json!({"token": "t", "for": req}))
                })
                .await
        });
    }
    let ask = |bus: Bus| async move {
        bus.request::<Value, Value>(TOKEN_SUBJECT, &json!({"user": 1}), "c", Duration::from_secs(2)).await
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match ask(kubeconfig.clone()).await {
            Ok(a) => break a,
            Err(e) => assert!(Instant::now() < deadline, "kubeconfig gets no token: {e}\n{}", server.log()),
        }
    };
    assert_eq!(answer["token"], "t");

    // Readers: kubeconfig reads all three (identity for its view, all for the audit page); the
    // proxy reads identity and environments; audit all three.
    let allowed_reads = [
        ("kubeconfig", &kubeconfig, "KUBEGATE_IDENTITY", "kubegate.identity.>"),
        ("kubeconfig", &kubeconfig, "KUBEGATE_ENVIRONMENTS", "kubegate.environments.>"),
        ("kubeconfig", &kubeconfig, "KUBEGATE_AUDIT", "kubegate.audit.>"),
        ("proxy", &proxy, "KUBEGATE_IDENTITY", "kubegate.identity.>"),
        ("proxy", &proxy, "KUBEGATE_ENVIRONMENTS", "kubegate.environments.>"),
        ("audit", &audit, "KUBEGATE_IDENTITY", "kubegate.identity.>"),
        ("audit", &audit, "KUBEGATE_ENVIRONMENTS", "kubegate.environments.>"),
        ("audit", &audit, "KUBEGATE_AUDIT", "kubegate.audit.>"),
    ];
    let results =
        futures::future::join_all(allowed_reads.iter().map(|(_, bus, s, f)| reads(bus, s, f, 1))).await;
    for ((who, _, stream, _), ok) in allowed_reads.iter().zip(results) {
        assert!(ok, "{who} cannot read {stream}:\n{}", server.log());
    }

    // Everything else is refused.
    let denied_reads = [
        ("identity", &identity, "KUBEGATE_ENVIRONMENTS", "kubegate.environments.>"),
        ("identity", &identity, "KUBEGATE_AUDIT", "kubegate.audit.>"),
    ];
    let results =
        futures::future::join_all(denied_reads.iter().map(|(_, bus, s, f)| reads(bus, s, f, 1))).await;
    for ((who, _, stream, _), ok) in denied_reads.iter().zip(results) {
        assert!(!ok, "{who} can read {stream}");
    }
    let forged = [
        ("proxy", &proxy, "kubegate.identity.user.disabled"),
        ("proxy", &proxy, "kubegate.environments.environment.registered"),
        ("kubeconfig", &kubeconfig, "kubegate.identity.user.disabled"),
        ("kubeconfig", &kubeconfig, "kubegate.audit.request"),
        ("identity", &identity, "kubegate.environments.environment.registered"),
        ("identity", &identity, "kubegate.audit.request"),
        ("audit", &audit, "kubegate.audit.request"),
    ];
    let results = futures::future::join_all(
        forged.iter().enumerate().map(|(i, (_, bus, s))| publish(bus, s, 100 + i as u64)),
    )
    .await;
    for ((who, _, subject), result) in forged.iter().zip(results) {
        assert!(result.is_err(), "{who} may publish on {subject}");
    }
    // Not even a plain publish lands in another service's stream.
    proxy.client().publish("kubegate.identity.user.disabled", event(200).to_vec().into()).await.unwrap();
    proxy.client().flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        identity.last_sequence("KUBEGATE_IDENTITY").await.unwrap(),
        1,
        "a forged identity event was stored"
    );

    // Only kubeconfig may ask for tokens, and nobody but identity may take the requests.
    let askers = [("proxy", &proxy), ("audit", &audit), ("identity", &identity)];
    let answers = futures::future::join_all(askers.iter().map(|(_, bus)| ask((*bus).clone()))).await;
    for ((who, _), answer) in askers.iter().zip(answers) {
        assert!(answer.is_err(), "{who} obtained a token");
    }
    let mut thief = proxy.client().subscribe(TOKEN_SUBJECT).await.unwrap();
    assert!(ask(kubeconfig.clone()).await.is_ok());
    let stolen = tokio::time::timeout(Duration::from_millis(500), futures::StreamExt::next(&mut thief)).await;
    assert!(stolen.is_err(), "the proxy received a token request");
    // Nor may it read the answers: each service has its own reply inbox, and may subscribe only
    // to that one.
    let mut snoops = Vec::new();
    for subject in ["_INBOX_kubegate_kubeconfig.>", "kubegate.rpc.replies.kubeconfig.>", "_INBOX.>", ">"] {
        snoops.push((subject, proxy.client().subscribe(subject).await.unwrap()));
    }
    assert_eq!(ask(kubeconfig.clone()).await.unwrap()["token"], "t");
    for (subject, mut sub) in snoops {
        let read = tokio::time::timeout(Duration::from_millis(300), futures::StreamExt::next(&mut sub)).await;
        assert!(read.is_err(), "the proxy read {subject}: a token answer meant for kubeconfig");
    }
    // Identity answers on kubeconfig's reply subjects only: it cannot reach kubeconfig's inbox
    // (where kubeconfig's JetStream reads arrive), and nobody else can forge an answer there.
    let forged_answers = [
        ("identity", &identity, "_INBOX_kubegate_kubeconfig.forged"),
        ("proxy", &proxy, "kubegate.rpc.replies.kubeconfig.forged"),
        ("audit", &audit, "kubegate.rpc.replies.kubeconfig.forged"),
    ];
    for (who, bus, subject) in forged_answers {
        let mut listening = subscribed(&kubeconfig, subject).await;
        bus.client().publish(subject, "forged".into()).await.unwrap();
        bus.client().flush().await.unwrap();
        let read =
            tokio::time::timeout(Duration::from_millis(300), futures::StreamExt::next(&mut listening)).await;
        assert!(read.is_err(), "{who} published on {subject}");
    }
    // The check above can fail: identity's own answer subject does reach kubeconfig.
    let mut listening = subscribed(&kubeconfig, "kubegate.rpc.replies.kubeconfig.probe").await;
    identity.client().publish("kubegate.rpc.replies.kubeconfig.probe", "answer".into()).await.unwrap();
    identity.client().flush().await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut listening)).await;
    assert!(matches!(read, Ok(Some(_))), "identity's answers do not reach kubeconfig:\n{}", server.log());

    // Nobody deletes, purges or re-shapes a stream, not even its producer; nobody makes new ones.
    let js_denied: Vec<(&str, Attempt)> = vec![
        (
            "identity deletes its stream",
            Box::pin({
                let js = identity.jetstream().clone();
                async move { js.delete_stream("KUBEGATE_IDENTITY").await.is_ok() }
            }),
        ),
        (
            "proxy deletes KUBEGATE_IDENTITY",
            Box::pin({
                let js = proxy.jetstream().clone();
                async move { js.delete_stream("KUBEGATE_IDENTITY").await.is_ok() }
            }),
        ),
        (
            "kubeconfig re-shapes KUBEGATE_IDENTITY",
            Box::pin({
                let js = kubeconfig.jetstream().clone();
                let config = async_nats::jetstream::stream::Config {
                    name: "KUBEGATE_IDENTITY".into(),
                    subjects: vec!["kubegate.identity.>".into(), "kubegate.environments.>".into()],
                    ..Default::default()
                };
                async move { js.update_stream(config).await.is_ok() }
            }),
        ),
        (
            "proxy creates a stream",
            Box::pin({
                let js = proxy.jetstream().clone();
                let config = async_nats::jetstream::stream::Config {
                    name: "SNOOP".into(),
                    subjects: vec!["kubegate.rpc.>".into()],
                    ..Default::default()
                };
                async move { js.create_stream(config).await.is_ok() }
            }),
        ),
        (
            "identity purges its stream",
            Box::pin({
                let js = identity.jetstream().clone();
                async move {
                    match js.get_stream("KUBEGATE_IDENTITY").await {
                        Ok(s) => s.purge().await.is_ok(),
                        Err(_) => false,
                    }
                }
            }),
        ),
    ];
    let (names, futures): (Vec<_>, Vec<_>) = js_denied.into_iter().unzip();
    for (name, done) in names.into_iter().zip(futures::future::join_all(futures).await) {
        assert!(!done, "{name}: allowed");
    }
    assert_eq!(identity.last_sequence("KUBEGATE_IDENTITY").await.unwrap(), 1);
    stop.cancel();
}

#[test]
fn the_variable_and_user_readers_read_what_they_should() {
    let conf = "a: $X # $Y\nb: \"$Z\"\nc: $W_1\n";
    assert_eq!(variables(conf), vec!["X", "W_1"]);
    let auth = "users: [\n { user: \"u1\"\n password: $P1 }\n { user: u2\n password: $P2\n }\n]";
    assert_eq!(users(auth), BTreeMap::from([("u1".into(), "P1".into()), ("u2".into(), "P2".into())]));
}
