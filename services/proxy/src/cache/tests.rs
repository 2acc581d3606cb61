//! The cache's decisions about tokens, given events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use kubegate_events::SealedSecret;
use kubegate_events::access::EnvironmentRole;
use kubegate_events::environments::*;
use kubegate_events::identity::*;
use kubegate_token::{Claims, Scope, SigningKey};

use super::*;

const NOW: i64 = 1_800_000_000;

fn cache_with_user() -> (Cache, SigningKey) {
    let (_, fleet) = kubegate_seal::generate_fleet_key();
    let cache = Cache::new(fleet);
    let key = SigningKey::from_seed("k1", &[3u8; 32]).unwrap();
    cache.apply_identity(&IdentityEvent::SigningKeyAdded(SigningKeyAdded {
        kid: "k1".into(),
        public_key: key.public_key(),
        private_key: SealedSecret("x".into()),
    }));
    cache.apply_identity(&IdentityEvent::UserCreated(UserCreated {
        user_id: 7,
        username: "alice".into(),
        role: GlobalRole::User,
        password: SealedSecret("x".into()),
    }));
    (cache, key)
}

fn token(key: &SigningKey, jti: &str, iat: i64, exp: Option<i64>, scope: Scope) -> String {
    key.mint(&Claims { sub: "7".into(), name: "alice".into(), jti: jti.into(), iat, exp, scope }).unwrap()
}

/// Environment 1, "prod", with a credential the fleet key cannot open.
fn register_prod(cache: &Cache) {
    cache.apply_environment(&EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
        environment_id: 1,
        name: "prod".into(),
        url: "https://127.0.0.1:6443".into(),
        ca_pem: None,
        insecure_skip_tls_verify: true,
        credential: SealedCredential("sealed".into()),
        credential_kind: CredentialKind::Token,
    }));
}

#[test]
fn a_valid_token_passes_and_an_expired_one_does_not() {
    let (cache, key) = cache_with_user();
    let t = token(&key, "t1", NOW - 10, Some(NOW + 60), Scope::Kubeconfig);
    let who = cache.authenticate(&t, NOW).unwrap();
    assert_eq!((who.user_id, who.user.username.as_str(), &*who.kid), (7, "alice", "k1"));
    // Cached signature, but expiry is checked on every use.
    let err = cache.authenticate(&t, NOW + 61).unwrap_err();
    assert_eq!(err, "token expired; download a new kubeconfig");
    let never = token(&key, "t2", NOW, None, Scope::Kubeconfig);
    assert!(cache.authenticate(&never, NOW + 100 * 365 * 86400).is_ok());
}

#[test]
fn session_tokens_and_strangers_are_refused() {
    let (cache, key) = cache_with_user();
    let s = token(&key, "s1", NOW, Some(NOW + 60), Scope::Session);
    assert!(cache.authenticate(&s, NOW).unwrap_err().contains("session tokens are not accepted here"));
    let other = SigningKey::from_seed("k1", &[4u8; 32]).unwrap();
    let forged = token(&other, "t1", NOW, None, Scope::Kubeconfig);
    assert!(cache.authenticate(&forged, NOW).unwrap_err().contains("signature"));
    assert!(cache.authenticate(&"x".repeat(70_000), NOW).unwrap_err().contains("larger"));
}

#[test]
fn revocations_apply_to_cached_tokens() {
    let (cache, key) = cache_with_user();
    let t = token(&key, "t1", NOW - 10, Some(NOW + 600), Scope::Kubeconfig);
    assert!(cache.authenticate(&t, NOW).is_ok());
    cache.apply_identity(&IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
        token_id: "t1".into(),
        user_id: 7,
        expires_at: None,
    }));
    assert_eq!(cache.authenticate(&t, NOW).unwrap_err(), "token revoked; download a new kubeconfig");

    let t2 = token(&key, "t2", NOW - 10, Some(NOW + 600), Scope::Kubeconfig);
    assert!(cache.authenticate(&t2, NOW).is_ok());
    cache.apply_identity(&IdentityEvent::UserTokensRevoked(UserTokensRevoked {
        user_id: 7,
        valid_after: Utc.timestamp_opt(NOW, 0).unwrap(),
        reason: RevocationReason::Requested,
    }));
    assert!(cache.authenticate(&t2, NOW).is_err(), "issued before the cut-off");
    let t3 = token(&key, "t3", NOW, Some(NOW + 600), Scope::Kubeconfig);
    assert!(cache.authenticate(&t3, NOW).is_ok(), "issued at the cut-off");

    cache.apply_identity(&IdentityEvent::UserDisabled(UserDisabled { user_id: 7 }));
    assert_eq!(cache.authenticate(&t3, NOW).unwrap_err(), "token refused: the user is disabled");
    cache.apply_identity(&IdentityEvent::UserEnabled(UserEnabled { user_id: 7 }));
    assert!(cache.authenticate(&t3, NOW).is_ok());
    cache.apply_identity(&IdentityEvent::SigningKeyRetired(SigningKeyRetired { kid: "k1".into() }));
    assert!(
        cache.authenticate(&t3, NOW).unwrap_err().contains("retired"),
        "a cached signature does not outlive its key"
    );
    cache.apply_identity(&IdentityEvent::UserDeleted(UserDeleted { user_id: 7, username: "alice".into() }));
}

#[test]
fn expired_revocations_are_forgotten() {
    let (cache, _) = cache_with_user();
    cache.apply_identity(&IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
        token_id: "old".into(),
        user_id: 7,
        expires_at: Some(Utc::now() + chrono::Duration::seconds(30)),
    }));
    assert!(cache.directory.is_revoked("old"));
    cache.prune_revocations(Utc::now().timestamp() + 60);
    assert!(!cache.directory.is_revoked("old"));
}

#[test]
fn grants_come_from_policies_teams_and_the_admin_role() {
    let (cache, _) = cache_with_user();
    cache.apply_identity(&IdentityEvent::TeamCreated(TeamCreated { team_id: 2, name: "sre".into() }));
    cache.apply_identity(&IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 2, user_id: 7 }));
    register_prod(&cache);
    let env = cache.environment(1).unwrap();
    let user = cache.directory.user(7).unwrap();
    assert!(cache.grant(&user, 7, &env).is_none());
    cache.apply_environment(&EnvironmentEvent::AccessPolicySet(AccessPolicySet {
        environment_id: 1,
        users: vec![PolicyEntry { id: 7, role: EnvironmentRole::ReadOnly, namespaces: vec!["qa".into()] }],
        teams: vec![PolicyEntry { id: 2, role: EnvironmentRole::Standard, namespaces: vec!["dev".into()] }],
    }));
    let env = cache.environment(1).unwrap();
    let grant = cache.grant(&user, 7, &env).unwrap();
    assert_eq!((grant.role, grant.namespaces.clone()), (EnvironmentRole::Standard, vec!["dev".to_string()]));
    assert_eq!(cache.team_names(&user), vec!["sre".to_string()]);
    cache.apply_identity(&IdentityEvent::UserRoleChanged(UserRoleChanged {
        user_id: 7,
        role: GlobalRole::Admin,
    }));
    let admin = cache.directory.user(7).unwrap();
    assert_eq!(cache.grant(&admin, 7, &env).unwrap().role, EnvironmentRole::EnvironmentAdmin);
    // A credential the fleet key cannot open makes the environment unusable, with a reason.
    assert!(env.upstream(&cache.fleet).unwrap_err().contains("credential"));
    cache.apply_environment(&EnvironmentEvent::EnvironmentRemoved(EnvironmentRemoved { environment_id: 1 }));
    assert!(cache.environment(1).is_none());
}

#[test]
fn the_event_types_skipped_when_following_are_identity_types_the_cache_ignores() {
    for name in kubegate_directory::IGNORED_EVENTS {
        assert!(
            kubegate_events::envelope::subject_of::<IdentityEvent>(name).is_some(),
            "{name} is not an identity event type"
        );
    }
    // Applying one of them changes nothing a request could see.
    let (cache, key) = cache_with_user();
    let t = token(&key, "t-skip", NOW - 10, Some(NOW + 60), Scope::Kubeconfig);
    assert!(cache.authenticate(&t, NOW).is_ok());
    cache.apply_identity(&IdentityEvent::KubeconfigTokenIssued(KubeconfigTokenIssued {
        token_id: "t-skip".into(),
        user_id: 7,
        username: "alice".into(),
        environment_ids: vec![1],
        issued_at: Utc.timestamp_opt(NOW - 10, 0).unwrap(),
        expires_at: None,
    }));
    assert!(cache.authenticate(&t, NOW).is_ok());
}

#[test]
fn the_environment_type_skipped_when_following_is_the_download_the_cache_ignores() {
    use kubegate_events::DomainEvent;
    let downloaded = EnvironmentEvent::KubeconfigDownloaded(KubeconfigDownloaded {
        user_id: 7,
        username: "alice".into(),
        environment_ids: vec![1],
        token_id: "t-1".into(),
        expires_at: None,
        client_address: "127.0.0.1".into(),
    });
    assert_eq!(downloaded.event_type(), kubegate_directory::environments::DOWNLOADED);
    // Applying it changes nothing a request could see: the environment stays as it was.
    let (cache, _) = cache_with_user();
    register_prod(&cache);
    let before = cache.environment(1).unwrap();
    cache.apply_environment(&downloaded);
    assert!(Arc::ptr_eq(&before, &cache.environment(1).unwrap()));
}

#[test]
fn a_stream_registered_after_its_token_was_revoked_is_closed_at_once() {
    let (cache, _) = cache_with_user();
    register_prod(&cache);
    cache.apply_environment(&EnvironmentEvent::AccessPolicySet(AccessPolicySet {
        environment_id: 1,
        users: vec![PolicyEntry { id: 7, role: EnvironmentRole::ReadOnly, namespaces: vec!["qa".into()] }],
        teams: vec![],
    }));
    let holder = |jti: &str| Holder {
        token_id: jti.into(),
        kid: "k1".into(),
        user_id: 7,
        iat: NOW - 10,
        environment_id: 1,
    };
    let (_, open) = cache.open_stream(holder("t1"));
    assert!(!open.is_cancelled());
    // The request was checked, then the revocation arrived, then the stream was registered.
    cache.apply_identity(&IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
        token_id: "t2".into(),
        user_id: 7,
        expires_at: None,
    }));
    let (_, late) = cache.open_stream(holder("t2"));
    assert!(late.is_cancelled(), "registered after its revocation, yet left open");
    assert!(!open.is_cancelled(), "another token's stream stays open");
    // Losing access to the environment counts too.
    cache.apply_environment(&EnvironmentEvent::AccessPolicySet(AccessPolicySet {
        environment_id: 1,
        users: vec![],
        teams: vec![],
    }));
    assert!(cache.open_stream(holder("t3")).1.is_cancelled());
}

mod compacted_environments {
    //! A replica that starts from the environments snapshot, whose log drops superseded
    //! events, must know exactly what one that applied every event knows.

    use kubegate_directory::environments::EnvironmentLog;
    use kubegate_events::{Actor, Envelope};
    use proptest::prelude::*;

    use super::*;

    /// One admin action on environment `id` (1 – 3), `n` picking the values it sets.
    fn event(kind: u8, id: u64, n: u64) -> EnvironmentEvent {
        let role =
            [EnvironmentRole::ReadOnly, EnvironmentRole::Standard, EnvironmentRole::Operator][n as usize % 3];
        match kind {
            0 => EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
                environment_id: id,
                name: format!("env-{n}"),
                url: format!("https://127.0.0.{}:6443", n % 5 + 1),
                ca_pem: n.is_multiple_of(2).then(|| format!("ca-{n}")),
                insecure_skip_tls_verify: !n.is_multiple_of(2),
                credential: SealedCredential(format!("sealed-{n}")),
                credential_kind: CredentialKind::Token,
            }),
            1 => EnvironmentEvent::EnvironmentRenamed(EnvironmentRenamed {
                environment_id: id,
                name: format!("renamed-{n}"),
            }),
            2 => EnvironmentEvent::EnvironmentEndpointChanged(EnvironmentEndpointChanged {
                environment_id: id,
                url: format!("https://127.0.1.{}:6443", n % 5 + 1),
                ca_pem: n.is_multiple_of(3).then(|| format!("ca-{n}")),
                insecure_skip_tls_verify: !n.is_multiple_of(3),
            }),
            3 => EnvironmentEvent::EnvironmentCredentialRotated(EnvironmentCredentialRotated {
                environment_id: id,
                credential: SealedCredential(format!("rotated-{n}")),
                credential_kind: CredentialKind::Token,
            }),
            4 => EnvironmentEvent::AccessPolicySet(AccessPolicySet {
                environment_id: id,
                users: vec![PolicyEntry { id: n % 4, role, namespaces: vec![format!("ns-{n}")] }],
                teams: (0..n % 3).map(|t| PolicyEntry { id: t, role, namespaces: vec![] }).collect(),
            }),
            5 => EnvironmentEvent::EnvironmentRemoved(EnvironmentRemoved { environment_id: id }),
            _ => EnvironmentEvent::KubeconfigDownloaded(KubeconfigDownloaded {
                user_id: n,
                username: "alice".into(),
                environment_ids: vec![id],
                token_id: format!("t-{n}"),
                expires_at: None,
                client_address: "127.0.0.1".into(),
            }),
        }
    }

    /// Everything a replica knows of environment `id`.
    fn known(cache: &Cache, id: u64) -> Option<String> {
        cache.environment(id).map(|e| {
            format!(
                "{} {} {:?} {} {} {}",
                e.name,
                e.url,
                e.ca_pem,
                e.insecure_skip_tls_verify,
                e.sealed.0,
                serde_json::to_string(&e.policy).unwrap()
            )
        })
    }

    fn fresh() -> Cache {
        let (_, fleet) = kubegate_seal::generate_fleet_key();
        Cache::new(fleet)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn a_replica_from_the_compacted_log_knows_what_a_whole_replay_gives(
            actions in proptest::collection::vec((0u8..7, 1u64..4, 0u64..20), 0..60)
        ) {
            let whole = fresh();
            let mut raws = Vec::new();
            for (i, (kind, id, n)) in actions.iter().enumerate() {
                let e = event(*kind, *id, *n);
                whole.apply_environment(&e);
                let mut envelope = Envelope::new(format!("s-{i}"), Actor::system("kubeconfig"), "test", e);
                envelope.position = i as u64 + 1;
                raws.push(envelope.to_raw().unwrap());
            }
            let log = EnvironmentLog::of(&raws);
            let restored = fresh();
            for raw in &log.events {
                restored.apply_environment(&raw.decode::<EnvironmentEvent>().unwrap().event);
            }
            for id in 1..4 {
                prop_assert_eq!(known(&whole, id), known(&restored, id), "environment {}", id);
            }
            // Never more than a registration and one event of each other kind per environment.
            prop_assert!(log.events.len() <= 3 * 5);
            let positions: Vec<u64> = log.events.iter().map(|e| e.position).collect();
            prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "in position order: {:?}", positions);
        }
    }
}
