//! The timeline without a bus: rows from events, filters, the merge order, the output formats,
//! the cursor.

use chrono::{DateTime, TimeZone, Utc};
use kubegate_events::access::EnvironmentRole;
use kubegate_events::audit::{AuditEvent, AuditSubject, AuditTarget, Decision, RequestAudited, SessionEnded};
use kubegate_events::audit::{SessionKind, SessionStarted};
use kubegate_events::environments::{EnvironmentEvent, EnvironmentRegistered, SealedCredential};
use kubegate_events::identity::{GlobalRole, IdentityEvent, SignInFailed, SignInFailure, UserCreated};
use kubegate_events::identity::{UserRoleChanged, UserTokensRevoked};
use kubegate_events::{Actor, Envelope, SealedSecret};

use crate::cursor::Cursor;
use crate::directory::Directory;
use crate::filter::{FilterSpec, parse_time};
use crate::merge::{Merger, Step};
use crate::output::{Format, RowWriter};
use crate::row::{self, At, Kind, Row, Sessions, Source};
use crate::source::Batch;

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, second).unwrap()
}

fn envelope<E: kubegate_events::DomainEvent>(
    second: u32,
    actor: Actor,
    correlation: &str,
    event: E,
) -> Envelope<E> {
    let mut env = Envelope::new("s", actor, correlation, event);
    env.occurred_at = at(second);
    env
}

fn admin() -> Actor {
    Actor::User { id: 1, name: "admin".into() }
}

fn directory() -> Directory {
    let d = Directory::new();
    for (id, name) in [(1, "admin"), (2, "alice"), (3, "bob")] {
        d.learn_identity(&IdentityEvent::UserCreated(UserCreated {
            user_id: id,
            username: name.into(),
            role: GlobalRole::User,
            password: SealedSecret("x".into()),
        }));
    }
    d.learn_environment(&EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
        environment_id: 4,
        name: "prod".into(),
        url: "https://prod.example:6443".into(),
        ca_pem: None,
        insecure_skip_tls_verify: false,
        credential: SealedCredential("sealed".into()),
        credential_kind: kubegate_events::environments::CredentialKind::Token,
    }));
    d
}

fn request(
    second: u32,
    user: &str,
    id: u64,
    ns: &str,
    verb: &str,
    status: u16,
    decision: Decision,
) -> Envelope<AuditEvent> {
    envelope(
        second,
        Actor::User { id, name: user.into() },
        &format!("req-{second}"),
        AuditEvent::RequestAudited(RequestAudited {
            request_id: format!("req-{second}"),
            subject: AuditSubject {
                user_id: Some(id),
                username: Some(user.into()),
                token_id: Some("t1".into()),
                role: Some(EnvironmentRole::Standard),
                client_address: "127.0.0.1:5000".into(),
                ..Default::default()
            },
            target: AuditTarget {
                environment_id: Some(4),
                verb: verb.into(),
                api_group: Some("apps".into()),
                namespace: Some(ns.into()),
                resource: Some("deployments".into()),
                subresource: Some("scale".into()),
                name: Some("web".into()),
                path: format!("/apis/apps/v1/namespaces/{ns}/deployments/web/scale"),
            },
            decision,
            reason: (decision == Decision::Denied).then(|| "not in your namespaces".to_string()),
            status,
            duration_us: 1500,
            bytes_in: 0,
            bytes_out: 10,
            user_agent: None,
        }),
    )
}

fn audit_row(second: u32, user: &str, id: u64, ns: &str, decision: Decision) -> Row {
    let status = if decision == Decision::Allowed { 200 } else { 403 };
    Sessions::default().audit_row(
        &request(second, user, id, ns, "get", status, decision),
        At::message(u64::from(second)),
        &directory(),
    )
}

#[test]
fn a_request_record_becomes_a_row_with_names() {
    let row = audit_row(1, "alice", 2, "dev", Decision::Denied);
    assert_eq!(row.kind, Kind::Request);
    assert_eq!(row.user.as_deref(), Some("alice"));
    assert_eq!(row.environments, vec!["prod".to_string()]);
    assert_eq!(row.resource.as_deref(), Some("deployments.apps/scale"));
    assert_eq!(row.status, Some(403));
    assert_eq!(row.correlation_id, "req-1");
    assert_eq!(row.summary, "get deployments.apps/scale web in dev → 403: not in your namespaces");
    let json = serde_json::to_value(&row).unwrap();
    assert_eq!(json["environmentIds"], serde_json::json!([4]));
    assert_eq!(json["stream"], "KUBEGATE_AUDIT");
    assert!(json.as_object().unwrap().contains_key("targetUser"), "every key is present: {json}");
    assert_eq!(json.as_object().unwrap().len(), row::COLUMNS.len());
}

#[test]
fn a_session_end_says_where_its_start_was() {
    let d = directory();
    let mut sessions = Sessions::default();
    let subject = AuditSubject {
        user_id: Some(2),
        username: Some("alice".into()),
        client_address: "127.0.0.1:1".into(),
        ..Default::default()
    };
    let target = AuditTarget {
        environment_id: Some(4),
        verb: "create".into(),
        namespace: Some("dev".into()),
        resource: Some("pods".into()),
        subresource: Some("exec".into()),
        name: Some("api".into()),
        path: "/api/v1/namespaces/dev/pods/api/exec".into(),
        ..Default::default()
    };
    let actor = Actor::User { id: 2, name: "alice".into() };
    let start = envelope(
        1,
        actor.clone(),
        "r",
        AuditEvent::SessionStarted(SessionStarted {
            session_id: "r-1".into(),
            request_id: "r".into(),
            kind: SessionKind::Exec,
            subject,
            target,
            protocol: "v5.channel.k8s.io".into(),
        }),
    );
    let end = envelope(
        2,
        actor,
        "r",
        AuditEvent::SessionEnded(SessionEnded {
            session_id: "r-1".into(),
            request_id: "r".into(),
            kind: SessionKind::Exec,
            started_at: at(1),
            duration_us: 1_200_000,
            bytes_in: 3,
            bytes_out: 4,
            end_reason: "closed".into(),
        }),
    );
    let started = sessions.audit_row(&start, At::message(1), &d);
    assert_eq!(started.summary, "exec session started on pods/exec api in dev (v5.channel.k8s.io)");
    let ended = sessions.audit_row(&end, At::message(2), &d);
    assert_eq!(
        (ended.namespace.as_deref(), ended.environments.clone()),
        (Some("dev"), vec!["prod".to_string()])
    );
    assert_eq!(
        ended.summary,
        "exec session ended on pods/exec api in dev after 1.2 s: closed (3 B in, 4 B out)"
    );
}

#[test]
fn identity_rows_name_whom_they_are_about() {
    let d = directory();
    let role = envelope(
        1,
        admin(),
        "c1",
        IdentityEvent::UserRoleChanged(UserRoleChanged { user_id: 3, role: GlobalRole::Admin }),
    );
    let row = row::identity_row(&role, At::message(1), &d);
    assert_eq!(
        (row.kind, row.user.as_deref(), row.target_user.as_deref()),
        (Kind::User, Some("admin"), Some("bob"))
    );
    assert_eq!(row.summary, "changed the role of bob to admin");
    let revoked = envelope(
        2,
        admin(),
        "c2",
        IdentityEvent::UserTokensRevoked(UserTokensRevoked {
            user_id: 2,
            valid_after: at(2),
            reason: kubegate_events::identity::RevocationReason::Requested,
        }),
    );
    let row = row::identity_row(&revoked, At::message(2), &d);
    assert_eq!(
        (row.kind, row.target_user.as_deref(), row.reason.as_deref()),
        (Kind::Token, Some("alice"), Some("requested"))
    );
    let failed = envelope(
        3,
        Actor::Anonymous { address: Some("10.0.0.9".into()) },
        "c3",
        IdentityEvent::SignInFailed(SignInFailed {
            username: "alice".into(),
            client_address: "10.0.0.9".into(),
            reason: SignInFailure::BadCredentials,
        }),
    );
    let row = row::identity_row(&failed, At::message(3), &d);
    assert_eq!(
        (row.kind, row.user.as_deref(), row.decision),
        (Kind::Signin, Some("alice"), Some(Decision::Denied))
    );
    assert_eq!(row.summary, "sign-in as alice failed from 10.0.0.9: bad-credentials");
}

#[test]
fn filters_select_by_user_environment_namespace_kind_decision_and_time() {
    let d = directory();
    let now = at(59);
    let alice_dev = audit_row(10, "alice", 2, "dev", Decision::Allowed);
    let bob_denied = audit_row(20, "bob", 3, "kube-system", Decision::Denied);
    let resolve = |spec: FilterSpec| spec.resolve(now, &d).unwrap();
    let spec = |f: fn(&mut FilterSpec)| {
        let mut s = FilterSpec::default();
        f(&mut s);
        s
    };
    let f = resolve(spec(|s| s.user = Some("ALICE".into())));
    assert!(f.matches(&alice_dev) && !f.matches(&bob_denied));
    let f = resolve(spec(|s| s.env = Some("prod".into())));
    assert!(f.matches(&alice_dev) && f.matches(&bob_denied));
    assert_eq!(f.environment_id, Some(4));
    let f = resolve(spec(|s| s.env = Some("4".into())));
    assert_eq!(f.environment_id, Some(4));
    let f = resolve(spec(|s| s.namespace = Some("dev".into())));
    assert!(f.matches(&alice_dev) && !f.matches(&bob_denied));
    let f = resolve(spec(|s| s.decision = Some("denied".into())));
    assert!(!f.matches(&alice_dev) && f.matches(&bob_denied));
    let f = resolve(spec(|s| s.kind = Some("signin, token".into())));
    assert!(!f.matches(&alice_dev));
    assert_eq!(f.subject(Source::Identity), "kubegate.identity.>");
    assert!(!f.wants_source(Source::Audit));
    let f = resolve(spec(|s| s.kind = Some("request".into())));
    assert_eq!(f.subject(Source::Audit), "kubegate.audit.request.>");
    let f = resolve(spec(|s| s.since = Some("45s".into())));
    assert_eq!(f.since, Some(at(14)));
    assert!(!f.matches(&alice_dev) && f.matches(&bob_denied));
    let f = resolve(spec(|s| s.until = Some("2025-06-01T10:00:15+02:00".into())));
    assert!(f.matches(&alice_dev) && !f.matches(&bob_denied));
    let f = resolve(spec(|s| s.correlation = Some("req-20".into())));
    assert!(!f.matches(&alice_dev) && f.matches(&bob_denied));
}

#[test]
fn a_bad_filter_is_refused_naming_it() {
    let d = directory();
    let err = |f: fn(&mut FilterSpec)| {
        let mut s = FilterSpec::default();
        f(&mut s);
        s.resolve(at(0), &d).unwrap_err()
    };
    assert_eq!(err(|s| s.since = Some("yesterday".into())).param, "since");
    assert_eq!(err(|s| s.kind = Some("request,bogus".into())).param, "kind");
    assert_eq!(err(|s| s.decision = Some("maybe".into())).param, "decision");
    assert_eq!(err(|s| s.env = Some("nowhere".into())).param, "env");
    let e = err(|s| {
        s.since = Some("2025-06-02T00:00:00Z".into());
        s.until = Some("2025-06-01T00:00:00Z".into());
    });
    assert_eq!(e.to_string(), "until: is before since");
    let mut s = FilterSpec::default();
    assert!(s.set("user", "alice".into()).unwrap());
    assert!(!s.set("usr", "alice".into()).unwrap());
    assert_eq!(s.set("user", "bob".into()).unwrap_err().param, "user");
    assert!(parse_time("since", "2025-06-01T08:00:00Z", at(0)).is_ok());
}

fn row_at(second: u32, source: Source, sequence: u64) -> Row {
    let mut r = audit_row(second, "alice", 2, "dev", Decision::Allowed);
    r.stream = source;
    r.sequence = sequence;
    r
}

fn batch(rows: Vec<Row>, caught_up: bool) -> Batch {
    let next_sequence = rows.last().map(|r| r.sequence + 1).unwrap_or(0);
    Batch { scanned: rows.len() as u64, rows, next_sequence, caught_up, undecodable: 0 }
}

#[test]
fn the_merge_hands_out_the_oldest_head_and_waits_for_lanes_still_replaying() {
    let mut m = Merger::new(&[(Source::Identity, At::default()), (Source::Audit, At::default())]);
    assert_eq!(m.step(), Step::Need(0));
    m.push(0, batch(vec![row_at(1, Source::Identity, 1), row_at(5, Source::Identity, 2)], false));
    assert_eq!(m.step(), Step::Need(1));
    m.push(1, batch(vec![row_at(1, Source::Audit, 7), row_at(3, Source::Audit, 8)], true));
    let order = |m: &mut Merger, n: usize| -> Vec<(Source, u64)> {
        (0..n)
            .map(|_| match m.step() {
                Step::Emit(r) => (r.stream, r.sequence),
                other => panic!("expected a row, got {other:?}"),
            })
            .collect()
    };
    // Same instant: the domain event first.
    assert_eq!(order(&mut m, 3), vec![(Source::Identity, 1), (Source::Audit, 7), (Source::Audit, 8)]);
    assert_eq!(m.positions(), vec![(Source::Identity, At::message(2)), (Source::Audit, At::message(9))]);
    assert_eq!(order(&mut m, 1), vec![(Source::Identity, 2)]);
    // The identity lane is empty and not caught up: its next row could be older than anything.
    assert_eq!(m.step(), Step::Need(0));
    m.push(0, batch(vec![], true));
    assert_eq!(m.step(), Step::Idle);
    assert!(m.caught_up());
    // Following: new rows come out as they arrive.
    m.push(1, batch(vec![row_at(9, Source::Audit, 10)], false));
    assert_eq!(order(&mut m, 1), vec![(Source::Audit, 10)]);
    assert_eq!(m.step(), Step::Idle);
}

#[test]
fn the_place_after_a_row_handed_out_can_be_inside_a_message() {
    // One audit message of three records, all at the same instant.
    let mut m = Merger::new(&[(Source::Audit, At::default())]);
    let rows: Vec<Row> = (0..3)
        .map(|i| {
            let mut r = row_at(4, Source::Audit, 7);
            r.index = i;
            r
        })
        .collect();
    m.push(0, batch(rows, true));
    for i in 0..2 {
        match m.step() {
            Step::Emit(r) => assert_eq!(r.at(), At { sequence: 7, index: i }),
            other => panic!("expected a row, got {other:?}"),
        }
    }
    assert_eq!(m.positions(), vec![(Source::Audit, At { sequence: 7, index: 2 })]);
    assert!(matches!(m.step(), Step::Emit(r) if r.index == 2));
    assert_eq!(m.positions(), vec![(Source::Audit, At::message(8))]);
}

#[test]
fn csv_escapes_what_needs_it_and_keeps_the_columns() {
    let mut row = audit_row(1, "alice", 2, "dev", Decision::Allowed);
    row.user = Some("eve, \"the\"\nquoted".into());
    row.summary = "a;b".into();
    let mut out = Vec::new();
    {
        let mut w = RowWriter::new(Format::Csv, &mut out).unwrap();
        w.write(&row).unwrap();
        w.flush().unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("time,kind,event,user,userId,"), "{text}");
    assert!(text.contains("\"eve, \"\"the\"\"\nquoted\""), "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let record = reader.records().next().unwrap().unwrap();
    assert_eq!(headers.len(), row::COLUMNS.len());
    assert_eq!(record.len(), row::COLUMNS.len());
    let field = |name: &str| record.get(headers.iter().position(|h| h == name).unwrap()).unwrap().to_string();
    assert_eq!(field("user"), "eve, \"the\"\nquoted");
    assert_eq!(field("environments"), "prod");
    assert_eq!(field("status"), "200");
    assert_eq!(field("time"), "2025-06-01T08:00:01.000000Z");
}

#[test]
fn json_lines_are_one_object_per_row() {
    let rows =
        [audit_row(1, "alice", 2, "dev", Decision::Allowed), audit_row(2, "bob", 3, "qa", Decision::Denied)];
    let mut out = Vec::new();
    {
        let mut w = RowWriter::new(Format::Json, &mut out).unwrap();
        for r in &rows {
            w.write(r).unwrap();
        }
        w.flush().unwrap();
    }
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["user"], "bob");
    assert_eq!(lines[1]["decision"], "denied");
    assert_eq!(lines[0]["time"], "2025-06-01T08:00:01.000000Z");
}

#[test]
fn the_table_escapes_control_characters_and_keeps_its_columns() {
    let mut row = audit_row(1, "alice", 2, "dev", Decision::Allowed);
    row.user = Some("evil\u{1b}[2Jname-that-is-far-too-long".into());
    let mut out = Vec::new();
    {
        let mut w = RowWriter::new(Format::Table, &mut out).unwrap();
        w.write(&row).unwrap();
        w.flush().unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{text}");
    assert!(lines[1].contains("evil\\u{1b}[2Jna…"), "{text}");
    // The KIND column starts at the same place in the header and the row.
    assert_eq!(lines[0].find("KIND"), lines[1].find("request"));
    assert!(lines[1].contains("get deployments.apps/scale web in dev → 200"), "{text}");
}

#[test]
fn a_cursor_round_trips_and_refuses_anything_else() {
    let c = Cursor { next: [At::message(3), At::default(), At { sequence: 1_000_001, index: 17 }] };
    assert_eq!(Cursor::decode(&c.encode()), Some(c));
    use base64::Engine as _;
    // A cursor of the first version (sequences only) still continues where it said.
    let v1 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:3:0:5");
    assert_eq!(Cursor::decode(&v1), Some(Cursor { next: [At::message(3), At::default(), At::message(5)] }));
    assert_eq!(Cursor::decode("garbage"), None);
    assert_eq!(Cursor::decode(""), None);
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:1:2");
    assert_eq!(Cursor::decode(&forged), None);
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v9:1:2:3");
    assert_eq!(Cursor::decode(&forged), None);
}
