//! `kubegate replay verify`: rebuild every projection from the logs alone and compare it with what
//! the running services hold. The logs are the streams `KUBEGATE_IDENTITY` and
//! `KUBEGATE_ENVIRONMENTS`, which carry every event of identity's and kubeconfig's logs with
//! gap-free positions; the rebuild uses the services' own code (`IdentityState::apply`,
//! `EnvironmentsState::apply`, the proxy's `Cache`) and their own summaries, which the services
//! serve on their admin listeners (`GET /state`). Events still on their way settle within
//! `--settle`; what differs after that is reported, field by field.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kubegate_audit::source::{Start, read_sequenced};
use kubegate_bus::Bus;
use kubegate_config::{NatsArgs, parse_duration};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, Envelope, RawEnvelope};
use kubegate_identity::domain::IdentityState;
use kubegate_kubeconfig::domain::EnvironmentsState;
use serde_json::Value;

use crate::CliError;

#[derive(Subcommand, Debug)]
pub enum ReplayCommand {
    /// Rebuild identity's and kubeconfig's read models and the proxies' caches from the event
    /// logs alone, and compare them with what the running services hold (their admin listeners'
    /// `/state`). Prints the differences, or "consistent". Exit status 0 when consistent, 1 when not.
    #[command(
        after_help = "Example:\n  kubegate replay verify --identity-admin http://127.0.0.1:9541 \\\n    --kubeconfig-admin http://127.0.0.1:9542 --proxy-admin http://127.0.0.1:9543,http://127.0.0.1:9544"
    )]
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// identity's admin listener (plain HTTP, KUBEGATE_ADMIN_LISTEN of identity).
    #[arg(long = "identity-admin", env = "KUBEGATE_IDENTITY_ADMIN_URL", value_name = "URL")]
    pub identity: Option<String>,
    /// kubeconfig's admin listener.
    #[arg(long = "kubeconfig-admin", env = "KUBEGATE_KUBECONFIG_ADMIN_URL", value_name = "URL")]
    pub kubeconfig: Option<String>,
    /// A proxy replica's admin listener; repeat (or separate with commas) for every replica.
    #[arg(
        long = "proxy-admin",
        env = "KUBEGATE_PROXY_ADMIN_URLS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub proxies: Vec<String>,
    /// How long differences may take to go away (events on their way) before they are reported.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// One stream read back as its producer's log: events in position order, each once, and what is
/// wrong with the stream (missing positions, two events claiming one position, unreadable ones).
struct Log {
    events: Vec<RawEnvelope>,
    problems: Vec<String>,
}

async fn read_log(bus: &Bus, stream: &str, subject: &str) -> Result<Log, CliError> {
    let mut records: Vec<(u64, Result<RawEnvelope, String>)> = Vec::new();
    read_sequenced(bus, stream, subject, Start::Beginning, |seq, raw| records.push((seq, raw)))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(sequence(stream, records))
}

/// Orders a stream's messages by position the way every reader does: the next position is
/// applied, a repeated one skipped, anything after a missing one held back.
fn sequence(stream: &str, records: Vec<(u64, Result<RawEnvelope, String>)>) -> Log {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    let mut ids: HashMap<u64, uuid::Uuid> = HashMap::new();
    let mut held: BTreeMap<u64, RawEnvelope> = BTreeMap::new();
    let mut next = 1u64;
    for (seq, raw) in records {
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{stream} message {seq} is not an event ({e}); every reader skips it"));
                continue;
            }
        };
        let position = raw.position;
        if let Some(id) = ids.get(&position).or_else(|| held.get(&position).map(|h| &h.id)) {
            if *id != raw.id {
                problems.push(format!(
                    "{stream}: two different events claim position {position} ({id} and {}); every reader keeps the first and ignores the other",
                    raw.id
                ));
            }
            continue;
        }
        if position < next {
            continue;
        }
        held.insert(position, raw);
        while let Some(e) = held.remove(&next) {
            ids.insert(next, e.id);
            events.push(e);
            next += 1;
        }
    }
    if let Some((first, _)) = held.first_key_value() {
        problems.push(format!(
            "{stream} is incomplete: positions {next} to {} are missing; the {} events after them are held back by every reader",
            first - 1,
            held.len()
        ));
    }
    Log { events, problems }
}

fn decode<E: DomainEvent>(log: &Log, stream: &str, problems: &mut Vec<String>) -> Vec<Envelope<E>> {
    log.events
        .iter()
        .filter_map(|raw| match raw.decode::<E>() {
            Ok(e) => Some(e),
            Err(e) => {
                problems.push(format!("{stream} position {}: {e}", raw.position));
                None
            }
        })
        .collect()
}

/// Short JSON for a difference line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 90 {
        format!("{}… ({} characters)", s.chars().take(60).collect::<String>(), s.len())
    } else {
        s
    }
}

fn key_of(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let id = o.get("id").or_else(|| o.get("kid"))?;
    let name = o.get("username").or_else(|| o.get("name")).and_then(|n| n.as_str());
    Some(match name {
        Some(n) => format!("{} {n}", id.as_str().map(str::to_string).unwrap_or_else(|| id.to_string())),
        None => id.as_str().map(str::to_string).unwrap_or_else(|| id.to_string()),
    })
}

fn id_of(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    o.get("id").or_else(|| o.get("kid")).map(|id| id.to_string())
}

/// Field-by-field differences between what the log gives (`log`) and what `who` reports.
fn diff(path: &str, log: &Value, service: &Value, who: &str, out: &mut Vec<String>) {
    match (log, service) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                diff(&p, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), who, out);
            }
        }
        (Value::Array(a), Value::Array(b))
            if !a.is_empty() | !b.is_empty() && a.iter().chain(b).all(|v| id_of(v).is_some()) =>
        {
            let index = |list: &Vec<Value>| -> BTreeMap<String, Value> {
                list.iter().filter_map(|v| Some((id_of(v)?, v.clone()))).collect()
            };
            let (ia, ib) = (index(a), index(b));
            let mut ids: Vec<&String> = ia.keys().chain(ib.keys()).collect();
            ids.sort();
            ids.dedup();
            for id in ids {
                match (ia.get(id), ib.get(id)) {
                    (Some(x), Some(y)) => {
                        let label = key_of(x).unwrap_or_else(|| id.clone());
                        diff(&format!("{path}[{label}]"), x, y, who, out);
                    }
                    (Some(x), None) => out.push(format!(
                        "{path}[{}]: in the log, missing from {who}: {}",
                        key_of(x).unwrap_or_default(),
                        short(x)
                    )),
                    (None, Some(y)) => out.push(format!(
                        "{path}[{}]: {who} has it, the log does not: {}",
                        key_of(y).unwrap_or_default(),
                        short(y)
                    )),
                    (None, None) => {}
                }
            }
        }
        _ if log == service => {}
        _ => out.push(format!("{path}: the log gives {}, {who} reports {}", short(log), short(service))),
    }
}

/// Compares one service's summary with the log's, explaining a position difference.
fn compare(name: &str, stream: &str, log: &Value, service: &Value, out: &mut Vec<String>) {
    let mut found = Vec::new();
    diff("", log, service, name, &mut found);
    let (lp, sp) = (log["position"].as_u64().unwrap_or(0), service["position"].as_u64().unwrap_or(0));
    if lp > sp {
        found.push(format!(
            "{stream} holds events {name}'s own log does not have (positions {} to {lp}): published by \
             someone else, or lost from {name}'s database",
            sp + 1
        ));
    } else if lp < sp {
        found.push(format!(
            "{name}'s log holds events {stream} does not (positions {} to {sp}): not published yet?",
            lp + 1
        ));
    }
    out.extend(found.into_iter().map(|d| format!("{name}: {d}")));
}

fn admin_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.contains("://") { format!("{base}/state") } else { format!("http://{base}/state") }
}

async fn fetch(http: &reqwest::Client, base: &str) -> Result<Value, String> {
    let url = admin_url(base);
    let resp = http.get(&url).send().await.map_err(|e| format!("cannot read {url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("cannot read {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{url} answered {}: {}",
            status.as_u16(),
            text.chars().take(200).collect::<String>()
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))
}

/// One comparison: the differences found, and what was compared.
struct Round {
    differences: Vec<String>,
    compared: Vec<String>,
}

async fn round(bus: &Bus, http: &reqwest::Client, args: &VerifyArgs) -> Result<Round, CliError> {
    let mut differences = Vec::new();
    let mut compared = Vec::new();
    // What the services hold first, then the logs: a log read after is never behind them.
    let identity_state = match &args.identity {
        Some(u) => Some(fetch(http, u).await),
        None => None,
    };
    let kubeconfig_state = match &args.kubeconfig {
        Some(u) => Some(fetch(http, u).await),
        None => None,
    };
    let mut proxy_states = Vec::new();
    for p in &args.proxies {
        proxy_states.push((p.clone(), fetch(http, p).await));
    }

    let identity_log = read_log(bus, IdentityEvent::STREAM, &IdentityEvent::subject_filter()).await?;
    let environments_log =
        read_log(bus, EnvironmentEvent::STREAM, &EnvironmentEvent::subject_filter()).await?;
    differences.extend(identity_log.problems.iter().cloned());
    differences.extend(environments_log.problems.iter().cloned());
    let identity_events: Vec<Envelope<IdentityEvent>> =
        decode(&identity_log, IdentityEvent::STREAM, &mut differences);
    let environment_events: Vec<Envelope<EnvironmentEvent>> =
        decode(&environments_log, EnvironmentEvent::STREAM, &mut differences);

    // The same code the services run, fed from the logs alone.
    let mut identity = IdentityState::default();
    for e in &identity_events {
        identity.apply(e);
    }
    if let Some(last) = identity_log.events.last() {
        identity.position = identity.position.max(last.position);
    }
    let mut environments = EnvironmentsState::default();
    for e in &environment_events {
        environments.apply(e);
    }
    if let Some(last) = environments_log.events.last() {
        environments.position = environments.position.max(last.position);
    }
    let (_, throwaway) = kubegate_seal::generate_fleet_key();
    let cache = kubegate_proxy::cache::Cache::new(throwaway);
    for e in &identity_events {
        cache.apply_identity(&e.event);
    }
    for e in &environment_events {
        cache.apply_environment(&e.event);
    }

    if let Some(state) = identity_state {
        match state {
            Ok(s) => {
                let log = kubegate_identity::summary::summary(&identity);
                compare("identity", IdentityEvent::STREAM, &log, &s, &mut differences);
                compared.push(format!("identity (position {})", identity.position));
            }
            Err(e) => differences.push(format!("identity: {e}")),
        }
    }
    if let Some(state) = kubeconfig_state {
        match state {
            Ok(s) => {
                let log = kubegate_kubeconfig::summary::summary(&environments, &identity);
                compare("kubeconfig", EnvironmentEvent::STREAM, &log, &s, &mut differences);
                let mut view = Vec::new();
                compare("kubeconfig", IdentityEvent::STREAM, &log["identity"], &s["identity"], &mut view);
                // Field differences of the identity view are in already; keep only its position note.
                differences.extend(view.into_iter().filter(|d| d.contains(" holds events ")));
                compared.push(format!("kubeconfig (position {})", environments.position));
            }
            Err(e) => differences.push(format!("kubeconfig: {e}")),
        }
    }
    let mut log_cache = cache.summary();
    if let Some(o) = log_cache.as_object_mut() {
        o.remove("trust");
    }
    for (url, state) in proxy_states {
        let name = format!("proxy {url}");
        match state {
            Ok(mut s) => {
                let trust = s.as_object_mut().and_then(|o| o.remove("trust"));
                if trust.as_ref().and_then(|t| t.as_str()) != Some("Current") {
                    differences.push(format!(
                        "{name}: its cache is not current ({})",
                        short(&trust.unwrap_or_default())
                    ));
                }
                let mut found = Vec::new();
                diff("", &log_cache, &s, &name, &mut found);
                differences.extend(found.into_iter().map(|d| format!("{name}: {d}")));
                compared.push(name);
            }
            Err(e) => differences.push(format!("{name}: {e}")),
        }
    }
    Ok(Round { differences, compared })
}

pub async fn run(args: VerifyArgs) -> Result<bool, CliError> {
    if args.identity.is_none() && args.kubeconfig.is_none() && args.proxies.is_empty() {
        return Err(CliError::Usage(
            "name the services to compare: --identity-admin, --kubeconfig-admin, --proxy-admin".into(),
        ));
    }
    let bus = crate::audit::connect(&args.nats).await?;
    kubegate_tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Failed(format!("HTTP client: {e}")))?;
    let started = Instant::now();
    loop {
        let r = round(&bus, &http, &args).await?;
        if r.differences.is_empty() {
            println!("compared with the logs: {}", r.compared.join(", "));
            println!("consistent");
            return Ok(true);
        }
        if started.elapsed() >= args.settle {
            println!(
                "kubegate replay verify: {} difference{} between the logs and the services:",
                r.differences.len(),
                if r.differences.len() == 1 { "" } else { "s" }
            );
            for d in &r.differences {
                println!("  - {d}");
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubegate_events::identity::UserDisabled;
    use kubegate_events::{Actor, Envelope};
    use serde_json::json;

    fn raw(position: u64, id: u128) -> RawEnvelope {
        let mut e = Envelope::new(
            "user-1",
            Actor::system("t"),
            "c",
            IdentityEvent::UserDisabled(UserDisabled { user_id: 1 }),
        );
        e.position = position;
        e.id = uuid::Uuid::from_u128(id);
        e.to_raw().unwrap()
    }

    #[test]
    fn a_log_is_read_in_position_order_and_its_faults_are_named() {
        let log = sequence(
            "S",
            vec![(1, Ok(raw(1, 1))), (2, Ok(raw(2, 2))), (3, Ok(raw(2, 2))), (4, Ok(raw(3, 3)))],
        );
        assert_eq!(log.events.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(log.problems.is_empty(), "{:?}", log.problems);
        let log = sequence("S", vec![(1, Ok(raw(1, 1))), (2, Ok(raw(2, 2))), (3, Ok(raw(2, 9)))]);
        assert_eq!(log.events.len(), 2);
        assert!(log.problems[0].contains("two different events claim position 2"), "{:?}", log.problems);
        let log = sequence("S", vec![(1, Ok(raw(1, 1))), (2, Ok(raw(4, 4))), (3, Ok(raw(5, 5)))]);
        assert_eq!(log.events.len(), 1);
        assert!(log.problems[0].contains("positions 2 to 3 are missing"), "{:?}", log.problems);
    }

    #[test]
    fn differences_name_the_field_and_the_item() {
        let log = json!({"position": 5, "users": [{"id": 2, "username": "alice", "role": "admin"}], "x": 1});
        let svc = json!({"position": 4, "users": [{"id": 2, "username": "alice", "role": "user"}, {"id": 3, "username": "bob", "role": "user"}], "x": 1});
        let mut out = Vec::new();
        compare("identity", "KUBEGATE_IDENTITY", &log, &svc, &mut out);
        assert!(
            out.contains(&"identity: position: the log gives 5, identity reports 4".to_string()),
            "{out:?}"
        );
        assert!(
            out.contains(
                &"identity: users[2 alice].role: the log gives \"admin\", identity reports \"user\""
                    .to_string()
            ),
            "{out:?}"
        );
        assert!(
            out.iter().any(|d| d.starts_with("identity: users[3 bob]: identity has it, the log does not")),
            "{out:?}"
        );
        assert!(
            out.iter().any(|d| d.contains(
                "KUBEGATE_IDENTITY holds events identity's own log does not have (positions 5 to 5)"
            )),
            "{out:?}"
        );
        let mut none = Vec::new();
        compare("identity", "KUBEGATE_IDENTITY", &log, &log, &mut none);
        assert!(none.is_empty());
    }
}
