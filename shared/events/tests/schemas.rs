//! Every event type has a committed JSON Schema equal to what the Rust types say, and an example
//! of every variant validates against it. Run with `UPDATE_SCHEMAS=1` to rewrite the files after
//! changing an event (then review the diff: a changed schema usually needs a new version).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use kubegate_events::access::EnvironmentRole;
use kubegate_events::audit::*;
use kubegate_events::environments::*;
use kubegate_events::identity::*;
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope, SealedSecret, schema};

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events")
}

fn t() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
}

fn identity_examples() -> Vec<IdentityEvent> {
    let sealed = || SealedSecret("c2VhbGVk".into());
    vec![
        IdentityEvent::UserCreated(UserCreated {
            user_id: 2,
            username: "alice".into(),
            role: GlobalRole::User,
            password: sealed(),
        }),
        IdentityEvent::UserRoleChanged(UserRoleChanged { user_id: 2, role: GlobalRole::Admin }),
        IdentityEvent::UserPasswordChanged(UserPasswordChanged { user_id: 2, password: sealed() }),
        IdentityEvent::UserDisabled(UserDisabled { user_id: 2 }),
        IdentityEvent::UserEnabled(UserEnabled { user_id: 2 }),
        IdentityEvent::UserDeleted(UserDeleted { user_id: 2, username: "alice".into() }),
        IdentityEvent::TeamCreated(TeamCreated { team_id: 1, name: "platform".into() }),
        IdentityEvent::TeamRenamed(TeamRenamed { team_id: 1, name: "sre".into() }),
        IdentityEvent::TeamDeleted(TeamDeleted { team_id: 1 }),
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 1, user_id: 2 }),
        IdentityEvent::TeamMemberRemoved(TeamMemberRemoved { team_id: 1, user_id: 2 }),
        IdentityEvent::KubeconfigExpiryChanged(KubeconfigExpiryChanged {
            expiry: KubeconfigExpiry::Never,
            previous: KubeconfigExpiry::Month,
        }),
        IdentityEvent::SigningKeyAdded(SigningKeyAdded {
            kid: "k-0193".into(),
            public_key: "MCowBQYDK2VwAyEA".into(),
            private_key: sealed(),
        }),
        IdentityEvent::SigningKeyRetired(SigningKeyRetired { kid: "k-0193".into() }),
        IdentityEvent::KubeconfigTokenIssued(KubeconfigTokenIssued {
            token_id: "0193-abc".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1, 3],
            issued_at: t(),
            expires_at: Some(t() + chrono::Duration::hours(720)),
        }),
        IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
            token_id: "0193-abc".into(),
            user_id: 2,
            expires_at: None,
        }),
        IdentityEvent::UserTokensRevoked(UserTokensRevoked {
            user_id: 2,
            valid_after: t(),
            reason: RevocationReason::PasswordChanged,
        }),
        IdentityEvent::SignInSucceeded(SignInSucceeded {
            user_id: 2,
            username: "alice".into(),
            client_address: "127.0.0.1".into(),
            session_id: "s-1".into(),
            expires_at: t(),
        }),
        IdentityEvent::SignInFailed(SignInFailed {
            username: "mallory".into(),
            client_address: "127.0.0.1".into(),
            reason: SignInFailure::BadCredentials,
        }),
    ]
}

fn environment_examples() -> Vec<EnvironmentEvent> {
    vec![
        EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
            environment_id: 1,
            name: "prod 🚀".into(),
            url: "https://10.0.0.1:6443".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\n…".into()),
            insecure_skip_tls_verify: false,
            credential: SealedCredential("-----BEGIN AGE ENCRYPTED FILE-----".into()),
            credential_kind: CredentialKind::Token,
        }),
        EnvironmentEvent::EnvironmentRenamed(EnvironmentRenamed { environment_id: 1, name: "prod".into() }),
        EnvironmentEvent::EnvironmentEndpointChanged(EnvironmentEndpointChanged {
            environment_id: 1,
            url: "https://10.0.0.2:6443".into(),
            ca_pem: None,
            insecure_skip_tls_verify: true,
        }),
        EnvironmentEvent::EnvironmentCredentialRotated(EnvironmentCredentialRotated {
            environment_id: 1,
            credential: SealedCredential("-----BEGIN AGE ENCRYPTED FILE-----".into()),
            credential_kind: CredentialKind::ClientCertificate,
        }),
        EnvironmentEvent::EnvironmentRemoved(EnvironmentRemoved { environment_id: 1 }),
        EnvironmentEvent::AccessPolicySet(AccessPolicySet {
            environment_id: 1,
            users: vec![PolicyEntry {
                id: 2,
                role: EnvironmentRole::Standard,
                namespaces: vec!["dev".into()],
            }],
            teams: vec![PolicyEntry {
                id: 1,
                role: EnvironmentRole::ReadOnly,
                namespaces: vec!["qa".into()],
            }],
        }),
        EnvironmentEvent::KubeconfigDownloaded(KubeconfigDownloaded {
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
            token_id: "0193-abc".into(),
            expires_at: None,
            client_address: "127.0.0.1".into(),
        }),
    ]
}

fn audit_examples() -> Vec<AuditEvent> {
    let subject = AuditSubject {
        user_id: Some(2),
        username: Some("alice".into()),
        token_id: Some("0193-abc".into()),
        role: Some(EnvironmentRole::Standard),
        impersonated_user: Some("kubegate:alice".into()),
        impersonated_groups: vec!["kubegate:role:standard".into(), "system:authenticated".into()],
        client_address: "127.0.0.1:51234".into(),
    };
    let target = AuditTarget {
        environment_id: Some(1),
        verb: "list".into(),
        api_group: None,
        namespace: Some("dev".into()),
        resource: Some("pods".into()),
        subresource: None,
        name: None,
        path: "/api/v1/namespaces/dev/pods".into(),
    };
    vec![
        AuditEvent::RequestAudited(RequestAudited {
            request_id: "r-1".into(),
            subject: subject.clone(),
            target: target.clone(),
            decision: Decision::Allowed,
            reason: None,
            status: 200,
            duration_us: 812,
            bytes_in: 0,
            bytes_out: 2048,
            user_agent: Some("kubectl/v1.33.0".into()),
        }),
        AuditEvent::SessionStarted(SessionStarted {
            session_id: "s-1".into(),
            request_id: "r-2".into(),
            kind: SessionKind::Exec,
            subject,
            target,
            protocol: "v5.channel.k8s.io".into(),
        }),
        AuditEvent::SessionEnded(SessionEnded {
            session_id: "s-1".into(),
            request_id: "r-2".into(),
            kind: SessionKind::Exec,
            started_at: t(),
            duration_us: 1_000_000,
            bytes_in: 10,
            bytes_out: 20,
            end_reason: "closed".into(),
        }),
    ]
}

/// Encoding in one pass ([`Envelope::encode`]) writes the same bytes as through the raw envelope.
fn assert_encodes_as_raw<E: DomainEvent>(env: &Envelope<E>, what: &str) {
    assert_eq!(
        String::from_utf8(env.encode().unwrap()).unwrap(),
        String::from_utf8(env.to_raw().unwrap().to_vec()).unwrap(),
        "{what}: Envelope::encode differs from to_raw().to_vec()"
    );
}

fn check<E: DomainEvent>(examples: Vec<E>) {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let docs = schema::documents::<E>();
    let names: BTreeSet<&str> = E::TYPES.iter().map(|t| t.name).collect();
    assert_eq!(docs.len(), names.len(), "a variant of {} has no schema", E::SERVICE);
    let covered: BTreeSet<&str> = examples.iter().map(|e| e.event_type()).collect();
    let missing: Vec<_> = names.difference(&covered).collect();
    assert!(missing.is_empty(), "no example for {missing:?}: add one to this test");

    // No stray files for types that no longer exist.
    let dir = schema_dir().join(E::SERVICE);
    let expected_files: BTreeSet<String> =
        docs.iter().map(|(p, _)| p.rsplit('/').next().unwrap_or_default().to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries {
            let file = entry.unwrap().file_name().to_string_lossy().to_string();
            assert!(expected_files.contains(&file), "{}/{file} describes no event type", E::SERVICE);
        }
    }

    for (path, doc) in &docs {
        let file = schema_dir().join(path);
        let pretty = serde_json::to_string_pretty(doc).unwrap() + "\n";
        if update {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &pretty).unwrap();
        }
        let committed = std::fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("schemas/events/{path} is missing (run with UPDATE_SCHEMAS=1)"));
        assert_eq!(committed, pretty, "schemas/events/{path} is out of date (run with UPDATE_SCHEMAS=1)");
    }

    for (i, example) in examples.into_iter().enumerate() {
        let name = example.event_type();
        let mut env = Envelope::new(
            format!("agg-{i}"),
            Actor::User { id: 1, name: "admin".into() },
            "corr-1",
            example.clone(),
        );
        env.sequence = 1;
        env.position = i as u64 + 1;
        let raw = env.to_raw().unwrap();
        let bytes = raw.to_vec();
        assert_encodes_as_raw(&env, name);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let (_, doc) = docs.iter().find(|(p, _)| p.contains(&format!("/{name}.v"))).unwrap();
        let validator = jsonschema::validator_for(doc).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name} example does not validate: {errors:?}\n{value:#}");
        // And it decodes back to the same typed event.
        let back = RawEnvelope::from_slice(&bytes).unwrap().decode::<E>().unwrap();
        assert_eq!(back.event, example);
        assert_eq!(back.id, env.id);
    }
}

#[test]
fn identity_events_match_their_schemas() {
    check(identity_examples());
}

#[test]
fn environment_events_match_their_schemas() {
    check(environment_examples());
}

#[test]
fn audit_events_match_their_schemas() {
    check(audit_examples());
}

#[test]
fn a_schema_rejects_what_the_type_rejects() {
    let docs = schema::documents::<IdentityEvent>();
    let (_, doc) = docs.iter().find(|(p, _)| p.ends_with("/UserDisabled.v1.json")).unwrap();
    let validator = jsonschema::validator_for(doc).unwrap();
    let mut env = Envelope::new(
        "user-2",
        Actor::system("identity"),
        "c",
        IdentityEvent::UserDisabled(UserDisabled { user_id: 2 }),
    );
    env.sequence = 1;
    env.position = 1;
    let mut value: serde_json::Value = serde_json::from_slice(&env.to_raw().unwrap().to_vec()).unwrap();
    assert!(validator.is_valid(&value));
    value["payload"]["surprise"] = serde_json::json!(true);
    assert!(!validator.is_valid(&value), "unknown payload fields must be refused");
    value["payload"] = serde_json::json!({"user_id": 2});
    value["type"] = serde_json::json!("UserEnabled");
    assert!(!validator.is_valid(&value), "type is pinned per schema");
}

#[test]
fn decoding_garbage_is_a_typed_error() {
    use kubegate_events::DecodeError;
    assert!(matches!(RawEnvelope::from_slice(b"\xff\x00garbage"), Err(DecodeError::Envelope(_))));
    assert!(matches!(RawEnvelope::from_slice(&vec![b' '; 2 * 1024 * 1024]), Err(DecodeError::TooLarge)));
    let mut env = Envelope::new(
        "user-2",
        Actor::system("identity"),
        "c",
        IdentityEvent::UserDisabled(UserDisabled { user_id: 2 }),
    );
    env.sequence = 1;
    env.position = 1;
    let mut raw = env.to_raw().unwrap();
    raw.version = 9;
    assert!(matches!(raw.decode::<IdentityEvent>(), Err(DecodeError::UnsupportedVersion { version: 9, .. })));
    raw.version = 1;
    raw.event_type = "UserExploded".into();
    assert!(matches!(raw.decode::<IdentityEvent>(), Err(DecodeError::UnknownType(_))));
    raw.event_type = "UserDisabled".into();
    raw.payload = serde_json::value::to_raw_value(&serde_json::json!({"user_id": "two"})).unwrap();
    assert!(matches!(raw.decode::<IdentityEvent>(), Err(DecodeError::Payload { .. })));
}

#[test]
fn a_message_packs_one_envelope_as_itself_and_several_as_an_array() {
    use kubegate_events::DecodeError;
    let envs: Vec<RawEnvelope> = (1..=3u64)
        .map(|p| {
            let mut env = Envelope::new(
                "user-2",
                Actor::system("identity"),
                "c",
                IdentityEvent::UserDisabled(UserDisabled { user_id: p }),
            );
            env.position = p;
            env.to_raw().unwrap()
        })
        .collect();
    let encoded: Vec<Vec<u8>> = envs.iter().map(RawEnvelope::to_vec).collect();
    let one = RawEnvelope::pack(&[encoded[0].as_slice()]);
    assert_eq!(one, encoded[0], "one envelope is a message as every producer writes it");
    assert_eq!(RawEnvelope::all_from_slice(&one).unwrap()[0].id, envs[0].id);
    assert_eq!(envs[0].pack_id(1), envs[0].id.to_string());

    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let three = RawEnvelope::pack(&parts);
    assert!(!three.contains(&b'\n'), "a packed message is one line");
    let back = RawEnvelope::all_from_slice(&three).unwrap();
    assert_eq!(back.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(envs[0].pack_id(3), format!("{}+3", envs[0].id));
    // Leading whitespace, as JSON allows.
    let mut spaced = b"  ".to_vec();
    spaced.extend_from_slice(&three);
    assert_eq!(RawEnvelope::all_from_slice(&spaced).unwrap().len(), 3);

    assert!(matches!(RawEnvelope::all_from_slice(b"[]"), Err(DecodeError::Envelope(_))));
    assert!(matches!(RawEnvelope::all_from_slice(b"[1,2]"), Err(DecodeError::Envelope(_))));
    assert!(matches!(RawEnvelope::all_from_slice(&vec![b' '; 2 * 1024 * 1024]), Err(DecodeError::TooLarge)));
}

#[test]
fn envelope_times_are_encoded_as_chrono_writes_them() {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let times = [
        (0, 0),
        (59, 1_000_000),
        (59, 120_000_000),
        (59, 123_456_000),
        (59, 123_456_789),
        (59, 1),
        (59, 999_999_999),
        (59, 1_500_000_000), // a leap second
    ];
    for (second, nanos) in times {
        let at = day.and_hms_nano_opt(23, 59, second, nanos).unwrap().and_utc();
        let mut env = Envelope::new(
            "user-2",
            Actor::system("identity"),
            "c",
            IdentityEvent::UserDisabled(UserDisabled { user_id: 2 }),
        );
        env.occurred_at = at;
        assert_encodes_as_raw(&env, &format!("{at:?}"));
    }
}
