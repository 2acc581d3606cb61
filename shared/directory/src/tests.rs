#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use kubegate_events::SealedSecret;
use kubegate_events::identity::*;
use kubegate_token::SigningKey;

use super::*;

const NOW: i64 = 1_900_000_000;

fn at(t: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(t, 0).unwrap()
}

fn user(id: u64, name: &str, role: GlobalRole) -> IdentityEvent {
    IdentityEvent::UserCreated(UserCreated {
        user_id: id,
        username: name.into(),
        role,
        password: SealedSecret("x".into()),
    })
}

/// A history touching every event type the directory folds.
fn history() -> Vec<IdentityEvent> {
    let k1 = SigningKey::generate("k1").unwrap();
    let k2 = SigningKey::generate("k2").unwrap();
    let key = |kid: &str, k: &SigningKey| {
        IdentityEvent::SigningKeyAdded(SigningKeyAdded {
            kid: kid.into(),
            public_key: k.public_key(),
            private_key: SealedSecret("sealed".into()),
        })
    };
    let revoke = |jti: &str, user_id: u64, expires: Option<i64>| {
        IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
            token_id: jti.into(),
            user_id,
            expires_at: expires.map(at),
        })
    };
    vec![
        key("k1", &k1),
        IdentityEvent::TeamCreated(TeamCreated { team_id: 1, name: "sre".into() }),
        IdentityEvent::TeamCreated(TeamCreated { team_id: 2, name: "dev".into() }),
        // A member added before the user exists is picked up when the user is created.
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 2, user_id: 4 }),
        user(1, "admin", GlobalRole::Admin),
        user(2, "alice", GlobalRole::User),
        user(3, "bob", GlobalRole::User),
        user(4, "carol", GlobalRole::User),
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 1, user_id: 2 }),
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 1, user_id: 3 }),
        IdentityEvent::TeamMemberRemoved(TeamMemberRemoved { team_id: 1, user_id: 3 }),
        IdentityEvent::TeamRenamed(TeamRenamed { team_id: 1, name: "platform".into() }),
        IdentityEvent::UserRoleChanged(UserRoleChanged { user_id: 3, role: GlobalRole::Admin }),
        IdentityEvent::UserDisabled(UserDisabled { user_id: 4 }),
        IdentityEvent::UserDisabled(UserDisabled { user_id: 2 }),
        IdentityEvent::UserEnabled(UserEnabled { user_id: 2 }),
        IdentityEvent::UserTokensRevoked(UserTokensRevoked {
            user_id: 2,
            valid_after: at(NOW - 100),
            reason: RevocationReason::Requested,
        }),
        revoke("t-live", 2, Some(NOW + 3600)),
        revoke("t-forever", 3, None),
        revoke("t-expired", 3, Some(NOW - 1)),
        key("k2", &k2),
        IdentityEvent::SigningKeyRetired(SigningKeyRetired { kid: "k1".into() }),
        IdentityEvent::TeamCreated(TeamCreated { team_id: 3, name: "gone".into() }),
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 3, user_id: 2 }),
        IdentityEvent::TeamDeleted(TeamDeleted { team_id: 3 }),
        user(5, "dave", GlobalRole::User),
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 2, user_id: 5 }),
        IdentityEvent::UserDeleted(UserDeleted { user_id: 5, username: "dave".into() }),
    ]
}

fn folded() -> Directory {
    let d = Directory::new();
    for e in history() {
        d.apply(&e, NOW);
    }
    d
}

#[test]
fn the_fold_knows_what_a_request_needs() {
    let d = folded();
    let alice = d.user(2).unwrap();
    assert_eq!((alice.admin, alice.disabled, alice.valid_after), (false, false, NOW - 100));
    assert_eq!(alice.teams.iter().copied().collect::<Vec<_>>(), vec![1]);
    assert!(d.user(3).unwrap().admin && d.user(3).unwrap().teams.is_empty());
    let carol = d.user(4).unwrap();
    assert!(carol.disabled);
    assert_eq!(carol.teams.iter().copied().collect::<Vec<_>>(), vec![2]);
    assert!(d.user(5).is_none());
    assert_eq!(d.team_name(1).as_deref(), Some("platform"));
    assert!(d.team_name(3).is_none());
    assert!(d.is_revoked("t-live") && d.is_revoked("t-forever") && !d.is_revoked("t-expired"));
    assert!(d.is_retired("k1") && !d.is_retired("k2"));
    assert!(!d.keys().contains("k1") && d.keys().contains("k2"));
    d.prune_revocations(NOW + 3600);
    assert!(!d.is_revoked("t-live") && d.is_revoked("t-forever"));
}

#[test]
fn a_restored_state_is_the_folded_one() {
    let d = folded();
    let state = d.state();
    // Through JSON, as a snapshot carries it.
    let state: State = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
    let restored = Directory::new();
    restored.apply(&user(99, "left-over", GlobalRole::User), NOW);
    restored.restore(state.clone()).unwrap();
    assert_eq!(restored.state(), d.state());
    assert!(restored.user(99).is_none(), "restoring replaces what was there");
    // And it goes on folding the same way.
    let more = [
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 2, user_id: 2 }),
        IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
            token_id: "t-new".into(),
            user_id: 2,
            expires_at: None,
        }),
    ];
    for e in &more {
        d.apply(e, NOW);
        restored.apply(e, NOW);
    }
    assert_eq!(restored.state(), d.state());
    assert_eq!(restored.user(2).unwrap().teams.len(), 2);
}

#[test]
fn a_state_with_an_unusable_key_changes_nothing() {
    let d = folded();
    let before = d.state();
    let mut bad = before.clone();
    bad.keys.push(PublicKey { kid: "k9".into(), public_key: "not-a-key".into() });
    bad.users.clear();
    let err = d.restore(bad).unwrap_err();
    assert!(err.contains("k9"), "{err}");
    assert_eq!(d.state(), before);
}

#[test]
fn ignored_types_are_identity_types_that_change_nothing() {
    for name in IGNORED_EVENTS {
        assert!(
            kubegate_events::envelope::subject_of::<IdentityEvent>(name).is_some(),
            "{name} is not an identity event type"
        );
    }
    let d = folded();
    let before = d.state();
    d.apply(
        &IdentityEvent::KubeconfigTokenIssued(KubeconfigTokenIssued {
            token_id: "t-x".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
            issued_at: at(NOW),
            expires_at: None,
        }),
        NOW,
    );
    d.apply(
        &IdentityEvent::UserPasswordChanged(UserPasswordChanged {
            user_id: 2,
            password: SealedSecret("y".into()),
        }),
        NOW,
    );
    assert_eq!(d.state(), before);
}
