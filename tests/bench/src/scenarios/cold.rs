//! Items 4 and 7, on a nats-server of their own.
//!
//! Cold start: a synthetic history is published straight into `KUBEGATE_IDENTITY` (users, a
//! signing key, issued and revoked kubeconfig tokens) and `KUBEGATE_ENVIRONMENTS` (environments
//! with credentials sealed to a fleet key, their access policies, and one `KubeconfigDownloaded`
//! per issued token, since every token comes from a download the kubeconfig service records),
//! positions 1, 2, 3, … per stream as the services' relays publish them. The identity and
//! kubeconfig services then run against it, as in a deployment, and write their snapshots. Then
//! proxy replicas start, one at a time; measured: time from process start until `/readyz`
//! answers 200, and resident memory then (VmRSS) and at its peak (VmHWM). The same again with
//! snapshots turned off (both streams replayed whole), for comparison.
//!
//! Audit replay: `RequestAudited` records published to `KUBEGATE_AUDIT`, then replayed to JSON
//! lines by the `kubegate audit` command, as an operator runs it.

use std::time::{Duration, Instant};

use chrono::Utc;
use kubegate_bus::{Bus, Encoded, NatsConfig, Outgoing, StreamDef};
use kubegate_directory::environments::EnvironmentLog;
use kubegate_events::access::EnvironmentRole;
use kubegate_events::audit::{AuditEvent, AuditSubject, AuditTarget, Decision, RequestAudited};
use kubegate_events::environments::{
    AccessPolicySet, CredentialKind, EnvironmentEvent, EnvironmentRegistered, KubeconfigDownloaded,
    PolicyEntry, SealedCredential,
};
use kubegate_events::identity::{
    GlobalRole, IdentityEvent, KubeconfigTokenIssued, KubeconfigTokenRevoked, SigningKeyAdded, UserCreated,
};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope, SealedSecret};
use kubegate_testsupport::nats::NatsServer;
use kubegate_testsupport::process::{Service, workspace_bin};
use serde::Serialize;

use crate::stats::median;
use crate::{ColdPlan, Plan, ServiceName, env_for, say};

#[derive(Debug, Clone, Serialize)]
pub struct ColdResult {
    pub history: ColdPlan,
    pub identity_events: u64,
    pub environment_events: u64,
    pub stream_mib: f64,
    /// Seconds to publish the history (not part of the figure; for context).
    pub publish_s: f64,
    /// Seconds from the start of identity and kubeconfig until both their snapshots were written.
    pub snapshot_written_s: f64,
    /// Size of both snapshots (MiB in `KUBEGATE_SNAPSHOTS`).
    pub snapshot_mib: f64,
    /// Medians of the starts from the snapshot.
    pub ready_s: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    pub runs: Vec<ColdRun>,
    /// Starts with snapshots turned off (`KUBEGATE_CACHE_SNAPSHOTS=false`): the whole stream.
    pub full_replay_ready_s: f64,
    pub full_replay_runs: Vec<ColdRun>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ColdRun {
    pub ready_s: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditResult {
    pub records: u64,
    /// Records a message, as a proxy packs them.
    pub per_message: usize,
    pub stream_mib: f64,
    pub publish_s: f64,
    /// Median replay time (s) and rate.
    pub replay_s: f64,
    pub records_per_second: f64,
    pub json_mib: f64,
    pub runs_s: Vec<f64>,
    /// How the records were replayed: the library engine, or the `kubegate audit` command.
    pub engine: String,
}

const CHUNK: usize = 8192;
/// Audit records a message, as a busy proxy packs them (up to 256, what arrives within 5 ms).
const AUDIT_PER_MESSAGE: usize = 64;

/// Publishes envelopes made by `make(position)` for positions 1..=n, in order, chunk by chunk,
/// each chunk with all its acknowledgements in flight.
/// Publishes `n` events made by `make`, `per_message` to a message (the proxies pack their
/// audit records; every other producer writes one event a message).
async fn publish_all(
    bus: &Bus,
    n: u64,
    per_message: usize,
    make: impl Fn(u64) -> (&'static str, RawEnvelope),
) -> Result<(), String> {
    let mut position = 1;
    while position <= n {
        let end = (position + CHUNK as u64 - 1).min(n);
        let batch: Vec<(&'static str, RawEnvelope)> = (position..=end).map(&make).collect();
        let items: Vec<Encoded<'_>> =
            batch.iter().map(|(subject, e)| Encoded { subject, id: e.id, json: e.to_vec() }).collect();
        let messages: Vec<Outgoing<'_>> =
            Outgoing::pack_runs(&items, per_message, usize::MAX).into_iter().map(|(m, _)| m).collect();
        bus.publish_messages(&messages).await.map_err(|e| e.to_string())?;
        position = end + 1;
    }
    Ok(())
}

fn raw<E: DomainEvent>(
    stream: String,
    sequence: u64,
    position: u64,
    actor: &Actor,
    event: E,
) -> (&'static str, RawEnvelope) {
    let subject = event.subject();
    let mut env = Envelope::new(stream, actor.clone(), "kubegate-bench", event);
    env.sequence = sequence;
    env.position = position;
    (subject, env.to_raw().expect("an event serializes"))
}

struct History {
    plan: ColdPlan,
    signing_public_key: String,
    sealed: String,
    ca_pem: String,
}

impl History {
    fn identity_len(&self) -> u64 {
        (1 + self.plan.users + self.plan.tokens + self.plan.revocations) as u64
    }

    /// Position p of the identity log: the signing key, the users, the tokens, the revocations.
    fn identity(&self, p: u64) -> (&'static str, RawEnvelope) {
        let actor = Actor::system("identity");
        let users = self.plan.users as u64;
        let tokens = self.plan.tokens as u64;
        let now = Utc::now();
        let expires = Some(now + chrono::Duration::days(30));
        let user_of = |i: u64| 1 + i % users;
        if p == 1 {
            return raw(
                "signing-keys".into(),
                1,
                p,
                &actor,
                IdentityEvent::SigningKeyAdded(SigningKeyAdded {
                    kid: "bench-k1".into(),
                    public_key: self.signing_public_key.clone(),
                    private_key: SealedSecret("sealed".into()),
                }),
            );
        }
        let i = p - 2;
        if i < users {
            let id = i + 1;
            return raw(
                format!("user-{id}"),
                1,
                p,
                &actor,
                IdentityEvent::UserCreated(UserCreated {
                    user_id: id,
                    username: format!("user-{id:05}"),
                    role: if id == 1 { GlobalRole::Admin } else { GlobalRole::User },
                    password: SealedSecret(
                        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
                    ),
                }),
            );
        }
        let i = i - users;
        if i < tokens {
            let user = user_of(i);
            return raw(
                format!("token-{i}"),
                1,
                p,
                &Actor::User { id: user, name: format!("user-{user:05}") },
                IdentityEvent::KubeconfigTokenIssued(KubeconfigTokenIssued {
                    token_id: token_id(i),
                    user_id: user,
                    username: format!("user-{user:05}"),
                    environment_ids: vec![1 + i % self.plan.environments.max(1) as u64],
                    issued_at: now,
                    expires_at: expires,
                }),
            );
        }
        // Revocations of every tenth token, so they spread over the log.
        let r = i - tokens;
        let token = (r * 10) % tokens.max(1);
        raw(
            format!("token-{token}"),
            2,
            p,
            &actor,
            IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
                token_id: token_id(token),
                user_id: user_of(token),
                expires_at: expires,
            }),
        )
    }

    fn environments_len(&self) -> u64 {
        2 * self.plan.environments as u64 + self.plan.tokens as u64
    }

    /// Position p of the environments log: each environment, then its policy; then a
    /// `KubeconfigDownloaded` for every issued token, as the kubeconfig service records one with
    /// each download that made a token.
    fn environment(&self, p: u64) -> (&'static str, RawEnvelope) {
        let setup = 2 * self.plan.environments as u64;
        if p > setup {
            return self.download(p, p - setup - 1);
        }
        let actor = Actor::User { id: 1, name: "user-00001".into() };
        let id = (p - 1) / 2 + 1;
        let users = self.plan.users as u64;
        if p % 2 == 1 {
            raw(
                format!("environment-{id}"),
                1,
                p,
                &actor,
                EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
                    environment_id: id,
                    name: format!("cluster-{id:03}"),
                    url: format!("https://10.0.{}.{}:6443", id / 250, id % 250 + 1),
                    ca_pem: Some(self.ca_pem.clone()),
                    insecure_skip_tls_verify: false,
                    credential: SealedCredential(self.sealed.clone()),
                    credential_kind: CredentialKind::Token,
                }),
            )
        } else {
            // A hundred users per environment, standard in two namespaces.
            let entries = (0..100u64.min(users))
                .map(|k| PolicyEntry {
                    id: 1 + (id * 100 + k) % users,
                    role: EnvironmentRole::Standard,
                    namespaces: vec!["dev".into(), format!("team-{}", k % 10)],
                })
                .collect();
            raw(
                format!("environment-{id}"),
                2,
                p,
                &actor,
                EnvironmentEvent::AccessPolicySet(AccessPolicySet {
                    environment_id: id,
                    users: entries,
                    teams: vec![],
                }),
            )
        }
    }

    /// Position p of the environments log: the download that made token `i`.
    fn download(&self, p: u64, i: u64) -> (&'static str, RawEnvelope) {
        let user = 1 + i % self.plan.users.max(1) as u64;
        let name = format!("user-{user:05}");
        raw(
            "downloads".into(),
            i + 1,
            p,
            &Actor::User { id: user, name: name.clone() },
            EnvironmentEvent::KubeconfigDownloaded(KubeconfigDownloaded {
                user_id: user,
                username: name,
                environment_ids: vec![1 + i % self.plan.environments.max(1) as u64],
                token_id: token_id(i),
                expires_at: Some(Utc::now() + chrono::Duration::days(30)),
                client_address: format!("10.2.{}.{}", i % 250, user % 250 + 1),
            }),
        )
    }
}

fn token_id(i: u64) -> String {
    format!("0190a5c3-0000-7000-8000-{i:012x}")
}

fn audit_record(p: u64) -> (&'static str, RawEnvelope) {
    let user = 1 + p % 1000;
    let name = format!("user-{user:05}");
    raw(
        "proxy-bench-replica".into(),
        p,
        p,
        &Actor::User { id: user, name: name.clone() },
        AuditEvent::RequestAudited(RequestAudited {
            request_id: format!("{:032x}", p),
            subject: AuditSubject {
                user_id: Some(user),
                username: Some(name.clone()),
                token_id: Some(token_id(p % 100_000)),
                role: Some(EnvironmentRole::Standard),
                impersonated_user: Some(format!("kubegate:{name}")),
                impersonated_groups: vec!["kubegate:role:standard".into(), "system:authenticated".into()],
                client_address: format!("10.1.{}.{}:{}", p % 250, user % 250, 30000 + p % 30000),
            },
            target: AuditTarget {
                environment_id: Some(1 + p % 100),
                verb: "list".into(),
                api_group: None,
                namespace: Some("dev".into()),
                resource: Some("pods".into()),
                subresource: None,
                name: None,
                path: format!("/api/endpoints/{}/kubernetes/api/v1/namespaces/dev/pods", 1 + p % 100),
            },
            decision: Decision::Allowed,
            reason: None,
            status: 200,
            duration_us: 800 + p % 5000,
            bytes_in: 0,
            bytes_out: 2048,
            user_agent: Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0".into()),
        }),
    )
}

async fn stream_mib(bus: &Bus, stream: &str) -> f64 {
    match bus.jetstream().get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.bytes as f64 / 1048576.0).unwrap_or(0.0),
        Err(_) => 0.0,
    }
}

/// Runs the cold-start and/or audit-replay scenarios.
pub async fn run(
    plan: &Plan,
    cold: bool,
    audit: bool,
    start: Instant,
) -> Result<(Option<ColdResult>, Option<AuditResult>), String> {
    let nats = NatsServer::start_new();
    let bus =
        Bus::connect(&NatsConfig::new(nats.url(), "kubegate-bench")).await.map_err(|e| e.to_string())?;
    if !bus.wait_connected(Duration::from_secs(10)).await {
        return Err("cannot connect to the bench nats-server".into());
    }
    for def in [
        StreamDef::identity(),
        StreamDef::environments(),
        StreamDef::audit(Duration::from_secs(90 * 86400), -1),
    ] {
        bus.ensure_stream(&def).await.map_err(|e| e.to_string())?;
    }
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = kubegate_tls::DevPki::ensure(work.path()).map_err(|e| e.to_string())?;
    let ca_pem = std::fs::read_to_string(&pki.ca_cert).map_err(|e| e.to_string())?;
    let (fleet_public, fleet_secret) = kubegate_seal::generate_fleet_key();
    let signing = kubegate_token::SigningKey::generate("bench-k1").map_err(|e| e.to_string())?;
    let credential = kubegate_seal::UpstreamCredential::token("bench-upstream-token-0123456789")
        .map_err(|e| e.to_string())?;
    let sealed = kubegate_seal::seal(&fleet_public, &credential).map_err(|e| e.to_string())?.into_string();
    let history = std::sync::Arc::new(History {
        plan: plan.cold.clone(),
        signing_public_key: signing.public_key(),
        sealed,
        ca_pem,
    });

    // Publish what is needed: the identity and environment logs and the audit records, the
    // three streams at once (each in its own order).
    let published = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    if cold {
        say(
            start,
            format!(
                "cold start: publishing {} users, {} tokens, {} revocations, {} environments",
                plan.cold.users, plan.cold.tokens, plan.cold.revocations, plan.cold.environments
            ),
        );
        let (b, h) = (bus.clone(), history.clone());
        tasks.spawn(async move {
            let n = h.identity_len();
            publish_all(&b, n, 1, |p| h.identity(p)).await.map(|_| ("identity", Instant::now()))
        });
        let (b, h) = (bus.clone(), history.clone());
        tasks.spawn(async move {
            let n = h.environments_len();
            publish_all(&b, n, 1, |p| h.environment(p)).await.map(|_| ("environments", Instant::now()))
        });
    }
    if audit {
        say(start, format!("audit replay: publishing {} records", plan.audit_records));
        let b = bus.clone();
        let n = plan.audit_records as u64;
        tasks.spawn(async move {
            publish_all(&b, n, AUDIT_PER_MESSAGE, audit_record).await.map(|_| ("audit", Instant::now()))
        });
    }
    let mut cold_published = Duration::ZERO;
    let mut audit_published = Duration::ZERO;
    while let Some(r) = tasks.join_next().await {
        let (what, at) = r.map_err(|e| e.to_string())??;
        let took = at - published;
        match what {
            "audit" => audit_published = took,
            _ => cold_published = cold_published.max(took),
        }
    }
    say(start, format!("published in {:.1}s", published.elapsed().as_secs_f64()));

    let cold_result = if cold {
        // The identity and kubeconfig services write the snapshots replicas start from: run
        // them against the history, as a deployment does, until each snapshot stands at its
        // stream's end.
        let identity_db = kubegate_testsupport::postgres::TestDb::create().await;
        let kubeconfig_db = kubegate_testsupport::postgres::TestDb::create().await;
        // Every 10,000 events, as deployed; a shorter history (the smoke run) at its end.
        let common = |listen: &'static str, db: &'static str, url: String, events: u64| {
            vec![
                (listen, format!("127.0.0.1:{}", kubegate_testsupport::net::free_port())),
                (db, url),
                ("KUBEGATE_SNAPSHOT_EVERY", events.min(10_000).to_string()),
                ("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()),
                ("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()),
                ("KUBEGATE_NATS_URL", nats.url()),
            ]
        };
        let mut identity_env = common(
            "KUBEGATE_IDENTITY_LISTEN",
            "KUBEGATE_IDENTITY_DATABASE_URL",
            identity_db.url(),
            history.identity_len(),
        );
        identity_env.extend([
            ("KUBEGATE_MASTER_KEY", "3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w0=".to_string()),
            ("KUBEGATE_ADMIN_PASSWORD", "bench-admin-password-0123".to_string()),
        ]);
        let mut kubeconfig_env = common(
            "KUBEGATE_KUBECONFIG_LISTEN",
            "KUBEGATE_KUBECONFIG_DATABASE_URL",
            kubeconfig_db.url(),
            history.environments_len(),
        );
        kubeconfig_env.extend([
            ("KUBEGATE_FLEET_PUBLIC_KEY", fleet_public.to_string()),
            ("KUBEGATE_PUBLIC_CA_FILE", pki.ca_cert.display().to_string()),
        ]);
        let mut identity = Service::new("cold-identity", workspace_bin("kubegate-identity"), &identity_env);
        let mut kubeconfig =
            Service::new("cold-kubeconfig", workspace_bin("kubegate-kubeconfig"), &kubeconfig_env);
        identity.add_settings(&env_for(&plan.service_env, ServiceName::Identity));
        kubeconfig.add_settings(&env_for(&plan.service_env, ServiceName::Kubeconfig));
        say(start, "cold start: identity and kubeconfig write their snapshots");
        let t0 = Instant::now();
        identity.start();
        kubeconfig.start();
        let last_identity = bus.last_sequence("KUBEGATE_IDENTITY").await.map_err(|e| e.to_string())?;
        let last_environments =
            bus.last_sequence("KUBEGATE_ENVIRONMENTS").await.map_err(|e| e.to_string())?;
        let at_end = |mark: Option<kubegate_directory::snapshot::Mark>, last: u64| {
            mark.is_some_and(|m| m.stream_sequence == last)
        };
        loop {
            use kubegate_directory::snapshot::{latest_mark, latest_mark_of};
            let identity_mark = latest_mark(&bus).await.ok().flatten();
            let environments_mark = latest_mark_of::<EnvironmentLog>(&bus).await.ok().flatten();
            if at_end(identity_mark, last_identity) && at_end(environments_mark, last_environments) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(300) {
                return Err(format!("no snapshots after 300 s:\n{}\n{}", identity.logs(), kubeconfig.logs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let snapshot_written_s = t0.elapsed().as_secs_f64();
        say(start, format!("  snapshots written {snapshot_written_s:.1}s after the services started"));
        identity.terminate(Duration::from_secs(10));
        kubeconfig.terminate(Duration::from_secs(10));

        let mut runs = Vec::new();
        let mut full_replay_runs = Vec::new();
        for i in 0..2 * plan.cold.starts {
            let from_snapshot = i < plan.cold.starts;
            let spool = work.path().join(format!("spool-{i}"));
            let env = vec![
                ("KUBEGATE_PROXY_LISTEN", format!("127.0.0.1:{}", kubegate_testsupport::net::free_port())),
                ("KUBEGATE_FLEET_KEY", fleet_secret.to_secret_string().expose_secret().to_string()),
                ("KUBEGATE_IDENTITY_URL", "https://127.0.0.1:9".to_string()),
                ("KUBEGATE_KUBECONFIG_URL", "https://127.0.0.1:9".to_string()),
                ("KUBEGATE_SERVICES_CA_FILE", pki.ca_cert.display().to_string()),
                ("KUBEGATE_REPLICA_ID", format!("bench-cold-{i}")),
                ("KUBEGATE_AUDIT_SPOOL_DIR", spool.display().to_string()),
                ("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()),
                ("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()),
                ("KUBEGATE_NATS_URL", nats.url()),
                ("KUBEGATE_CACHE_SNAPSHOTS", from_snapshot.to_string()),
            ];
            let mut proxy = Service::new(&format!("cold-proxy-{i}"), workspace_bin("kubegate-proxy"), &env);
            proxy.add_settings(&env_for(&plan.service_env, ServiceName::Proxy));
            let t0 = Instant::now();
            proxy.start();
            let deadline = t0 + Duration::from_secs(120);
            while !proxy.is_ready() {
                if Instant::now() > deadline {
                    return Err(format!("the cold replica was not ready after 120 s:\n{}", proxy.logs()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let ready = t0.elapsed().as_secs_f64();
            let pid = proxy.pid().ok_or("the cold replica exited")?;
            let (rss, peak) = crate::stack::rss_kib(pid).ok_or("cannot read the cold replica's memory")?;
            let logs = proxy.logs();
            if from_snapshot
                && !(logs.contains("directory restored from a snapshot")
                    && logs.contains("environments restored from a snapshot"))
            {
                return Err(format!("the cold replica did not start from the snapshots:\n{logs}"));
            }
            proxy.kill();
            let run =
                ColdRun { ready_s: ready, rss_mib: rss as f64 / 1024.0, peak_rss_mib: peak as f64 / 1024.0 };
            say(
                start,
                format!(
                    "  cold start {} ({}): ready in {:.2}s, RSS {:.0} MiB (peak {:.0} MiB)",
                    i + 1,
                    if from_snapshot { "from the snapshot" } else { "whole stream" },
                    run.ready_s,
                    run.rss_mib,
                    run.peak_rss_mib
                ),
            );
            if from_snapshot { runs.push(run) } else { full_replay_runs.push(run) }
        }
        let m = |runs: &[ColdRun], f: fn(&ColdRun) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        Some(ColdResult {
            history: plan.cold.clone(),
            identity_events: history.identity_len(),
            environment_events: history.environments_len(),
            stream_mib: stream_mib(&bus, "KUBEGATE_IDENTITY").await
                + stream_mib(&bus, "KUBEGATE_ENVIRONMENTS").await,
            publish_s: cold_published.as_secs_f64(),
            snapshot_written_s,
            snapshot_mib: stream_mib(&bus, kubegate_directory::snapshot::STREAM).await,
            ready_s: m(&runs, |r| r.ready_s),
            rss_mib: m(&runs, |r| r.rss_mib),
            peak_rss_mib: m(&runs, |r| r.peak_rss_mib),
            full_replay_ready_s: m(&full_replay_runs, |r| r.ready_s),
            runs,
            full_replay_runs,
        })
    } else {
        None
    };

    let audit_result = if audit {
        let mut runs = Vec::new();
        let mut json_bytes = 0;
        for _ in 0..plan.audit_runs {
            let out = work.path().join("audit.jsonl");
            let (n, bytes, took) = replay_audit(&nats.url(), &out).await?;
            if n != plan.audit_records as u64 {
                return Err(format!("replayed {n} audit records, expected {}", plan.audit_records));
            }
            say(start, format!("  audit replay: {n} records in {took:.2}s ({:.0}/s)", n as f64 / took));
            json_bytes = bytes;
            runs.push(took);
            let _ = std::fs::remove_file(&out);
        }
        let replay_s = median(&runs).unwrap_or(0.0);
        Some(AuditResult {
            records: plan.audit_records as u64,
            per_message: AUDIT_PER_MESSAGE,
            stream_mib: stream_mib(&bus, "KUBEGATE_AUDIT").await,
            publish_s: audit_published.as_secs_f64(),
            replay_s,
            records_per_second: plan.audit_records as f64 / replay_s.max(1e-9),
            json_mib: json_bytes as f64 / 1048576.0,
            runs_s: runs,
            engine: format!("the command line: `{REPLAY_COMMAND}`"),
        })
    } else {
        None
    };
    drop(bus);
    drop(nats);
    Ok((cold_result, audit_result))
}

/// The command an operator runs, timed: `kubegate audit --format json --kind request` over the
/// whole range, its output written to `out`.
const REPLAY_COMMAND: &str = "kubegate audit --format json --kind request --since 3650d";

/// Runs [`REPLAY_COMMAND`] against `nats_url` with its output in `out`; returns (records, bytes,
/// seconds the command took). Counting the lines afterwards is not part of the time.
async fn replay_audit(nats_url: &str, out: &std::path::Path) -> Result<(u64, u64, f64), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let args: Vec<&str> = REPLAY_COMMAND.split(' ').skip(1).collect();
    let t0 = Instant::now();
    let child = tokio::process::Command::new(workspace_bin("kubegate"))
        .args(&args)
        .env("KUBEGATE_NATS_URL", nats_url)
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting kubegate audit: {e}"))?;
    let done = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .map_err(|_| "kubegate audit did not finish within 300 s".to_string())?
        .map_err(|e| format!("kubegate audit: {e}"))?;
    let took = t0.elapsed().as_secs_f64();
    if !done.status.success() {
        return Err(format!("kubegate audit failed: {}", String::from_utf8_lossy(&done.stderr)));
    }
    let text = std::fs::File::open(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut n = 0u64;
    let mut bytes = 0u64;
    for line in std::io::BufRead::split(std::io::BufReader::with_capacity(1 << 20, text), b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        bytes += line.len() as u64 + 1;
        n += u64::from(!line.is_empty());
    }
    Ok((n, bytes, took))
}
