//! Given events, when a command, then events (or a refusal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use kubegate_events::identity::*;
use kubegate_events::{Actor, Envelope, SealedSecret};

use super::state::KEY_WARM_UP;
use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap() + chrono::Duration::milliseconds(400)
}

fn sealed(s: &str) -> SealedSecret {
    SealedSecret(s.into())
}

/// Applies `events` to a fresh state, as if read from the log.
fn given(events: Vec<(&str, IdentityEvent)>) -> IdentityState {
    let mut state = IdentityState::default();
    for (i, (stream, event)) in events.into_iter().enumerate() {
        let mut env = Envelope::new(stream, Actor::system("test"), "c", event);
        env.position = i as u64 + 1;
        env.occurred_at = now();
        state.apply(&env);
    }
    state
}

/// Applies a decision's events to the state (what the engine does after the append).
fn then_apply(state: &mut IdentityState, outcome: &Outcome) {
    for d in &outcome.decisions {
        for e in &d.events {
            let mut env = Envelope::new(d.stream.clone(), Actor::system("test"), "c", e.clone());
            env.occurred_at = now();
            state.apply(&env);
        }
    }
}

fn events(outcome: &Outcome) -> Vec<IdentityEvent> {
    outcome.decisions.iter().flat_map(|d| d.events.clone()).collect()
}

fn admin_and_alice() -> IdentityState {
    given(vec![
        (
            "user-1",
            IdentityEvent::UserCreated(UserCreated {
                user_id: 1,
                username: "admin".into(),
                role: GlobalRole::Admin,
                password: sealed("a"),
            }),
        ),
        (
            "user-2",
            IdentityEvent::UserCreated(UserCreated {
                user_id: 2,
                username: "alice".into(),
                role: GlobalRole::User,
                password: sealed("b"),
            }),
        ),
        (
            "signing-keys",
            IdentityEvent::SigningKeyAdded(SigningKeyAdded {
                kid: "k1".into(),
                public_key: "pk".into(),
                private_key: sealed("sk"),
            }),
        ),
    ])
}

#[test]
fn creating_a_user_allocates_the_next_id_and_checks_the_stream_is_new() {
    let state = admin_and_alice();
    let out = decide(
        &state,
        Command::CreateUser { username: "bob".into(), role: GlobalRole::User, password: sealed("p") },
        now(),
    )
    .unwrap();
    assert_eq!(out.created_id, Some(3));
    assert_eq!(out.decisions[0].stream, "user-3");
    assert_eq!(out.decisions[0].expected, Some(0));
    assert_eq!(
        events(&out),
        vec![IdentityEvent::UserCreated(UserCreated {
            user_id: 3,
            username: "bob".into(),
            role: GlobalRole::User,
            password: sealed("p")
        })]
    );
}

#[test]
fn user_names_are_unique_regardless_of_case_and_validated() {
    let state = admin_and_alice();
    let err = decide(
        &state,
        Command::CreateUser { username: "ALICE".into(), role: GlobalRole::User, password: sealed("p") },
        now(),
    );
    assert!(matches!(err, Err(DomainError::Conflict(_))));
    for bad in ["", " bob", "bob ", "bo\nb", "b\u{0}", &"x".repeat(65)] {
        let err = decide(
            &state,
            Command::CreateUser { username: bad.into(), role: GlobalRole::User, password: sealed("p") },
            now(),
        );
        assert!(matches!(err, Err(DomainError::Invalid(_))), "{bad:?}");
    }
    // Any other Unicode is fine.
    assert!(
        decide(
            &state,
            Command::CreateUser {
                username: "Zoë 🚀 \"q\": #x".into(),
                role: GlobalRole::User,
                password: sealed("p")
            },
            now()
        )
        .is_ok()
    );
}

#[test]
fn a_deleted_users_id_is_never_reused_but_the_name_is_free_again() {
    let mut state = admin_and_alice();
    let out = decide(&state, Command::DeleteUser { user_id: 2 }, now()).unwrap();
    then_apply(&mut state, &out);
    assert!(!state.users.contains_key(&2));
    let out = decide(
        &state,
        Command::CreateUser { username: "alice".into(), role: GlobalRole::User, password: sealed("p") },
        now(),
    )
    .unwrap();
    assert_eq!(out.created_id, Some(3));
}

#[test]
fn password_role_change_disable_and_delete_revoke_earlier_tokens() {
    let state = admin_and_alice();
    let cases = [
        (Command::ChangePassword { user_id: 2, password: sealed("new") }, RevocationReason::PasswordChanged),
        (Command::ChangeRole { user_id: 2, role: GlobalRole::Admin }, RevocationReason::RoleChanged),
        (Command::DisableUser { user_id: 2 }, RevocationReason::Disabled),
        (Command::DeleteUser { user_id: 2 }, RevocationReason::Deleted),
        (Command::RevokeUserTokens { user_id: 2 }, RevocationReason::Requested),
    ];
    for (command, reason) in cases {
        let out = decide(&state, command.clone(), now()).unwrap();
        let revoked = events(&out).into_iter().find_map(|e| match e {
            IdentityEvent::UserTokensRevoked(r) => Some(r),
            _ => None,
        });
        let revoked = revoked.unwrap_or_else(|| panic!("{command:?} must revoke"));
        assert_eq!(revoked.reason, reason);
        // The cut-off is the next whole second: a token issued earlier in this second is revoked.
        assert_eq!(revoked.valid_after.timestamp(), now().timestamp() + 1);
    }
}

#[test]
fn a_token_issued_after_a_revoke_all_in_the_same_second_is_valid() {
    let mut state = admin_and_alice();
    let before = decide(
        &state,
        Command::IssueKubeconfigToken {
            token_id: "t1".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
        },
        now(),
    )
    .unwrap();
    then_apply(&mut state, &before);
    let (iat_before, _) = before.token_times.unwrap();
    let out = decide(&state, Command::ChangePassword { user_id: 2, password: sealed("new") }, now()).unwrap();
    then_apply(&mut state, &out);
    assert!(state.tokens["t1"].revoked, "the older token is marked revoked");
    assert!(state.user_accepts(2, iat_before).is_err());
    let after = decide(
        &state,
        Command::IssueKubeconfigToken {
            token_id: "t2".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
        },
        now(),
    )
    .unwrap();
    let (iat_after, _) = after.token_times.unwrap();
    assert!(state.user_accepts(2, iat_after).is_ok());
}

#[test]
fn a_token_keeps_the_expiry_it_was_issued_with() {
    let mut state = admin_and_alice();
    let month = decide(
        &state,
        Command::IssueKubeconfigToken {
            token_id: "t1".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1, 3],
        },
        now(),
    )
    .unwrap();
    then_apply(&mut state, &month);
    let (iat, exp) = month.token_times.unwrap();
    assert_eq!(exp, Some(iat + 720 * 3600), "the default is 720h");
    let change =
        decide(&state, Command::SetKubeconfigExpiry { expiry: KubeconfigExpiry::Day }, now()).unwrap();
    assert_eq!(
        events(&change),
        vec![IdentityEvent::KubeconfigExpiryChanged(KubeconfigExpiryChanged {
            expiry: KubeconfigExpiry::Day,
            previous: KubeconfigExpiry::Month
        })]
    );
    then_apply(&mut state, &change);
    let day = decide(
        &state,
        Command::IssueKubeconfigToken {
            token_id: "t2".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
        },
        now(),
    )
    .unwrap();
    then_apply(&mut state, &day);
    assert_eq!(day.token_times.unwrap().1, Some(iat + 24 * 3600));
    assert_eq!(state.tokens["t1"].expires_at.unwrap().timestamp(), iat + 720 * 3600);
    let never =
        decide(&state, Command::SetKubeconfigExpiry { expiry: KubeconfigExpiry::Never }, now()).unwrap();
    then_apply(&mut state, &never);
    let forever = decide(
        &state,
        Command::IssueKubeconfigToken {
            token_id: "t3".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
        },
        now(),
    )
    .unwrap();
    assert_eq!(forever.token_times.unwrap().1, None);
    // Setting the same value again records nothing.
    assert!(
        decide(&state, Command::SetKubeconfigExpiry { expiry: KubeconfigExpiry::Never }, now())
            .unwrap()
            .decisions
            .is_empty()
    );
}

#[test]
fn tokens_are_refused_to_disabled_users_and_without_environments() {
    let issue = |state: &IdentityState, user_id: u64, username: &str, environment_ids: Vec<u64>| {
        let token_id = "t".to_string();
        let username = username.to_string();
        decide(state, Command::IssueKubeconfigToken { token_id, user_id, username, environment_ids }, now())
    };
    let mut state = admin_and_alice();
    assert!(matches!(issue(&state, 2, "alice", vec![]), Err(DomainError::Invalid(_))));
    // The name the caller gave is recorded as who asked: a wrong one is refused.
    assert!(matches!(issue(&state, 2, "admin", vec![1]), Err(DomainError::Conflict(_))));
    assert!(matches!(issue(&state, 9, "alice", vec![1]), Err(DomainError::NotFound(_))));
    let out = decide(&state, Command::DisableUser { user_id: 2 }, now()).unwrap();
    then_apply(&mut state, &out);
    assert!(matches!(issue(&state, 2, "alice", vec![1]), Err(DomainError::Conflict(_))));
}

#[test]
fn the_last_admin_cannot_be_removed_demoted_or_disabled() {
    let state = admin_and_alice();
    for command in [
        Command::DeleteUser { user_id: 1 },
        Command::DisableUser { user_id: 1 },
        Command::ChangeRole { user_id: 1, role: GlobalRole::User },
    ] {
        assert!(matches!(decide(&state, command, now()), Err(DomainError::Conflict(_))));
    }
    let mut state = state;
    let out = decide(&state, Command::ChangeRole { user_id: 2, role: GlobalRole::Admin }, now()).unwrap();
    then_apply(&mut state, &out);
    assert!(decide(&state, Command::DisableUser { user_id: 1 }, now()).is_ok());
}

/// Adds signing key `kid` at `now()`, as a rotation does.
fn add_signing_key(state: &mut IdentityState, kid: &str) {
    let command = Command::AddSigningKey {
        kid: kid.into(),
        public_key: format!("pk-{kid}"),
        private_key: sealed(&format!("seed-{kid}")),
    };
    let out = decide(state, command, now()).unwrap();
    then_apply(state, &out);
}

#[test]
fn signing_keys_rotate_and_any_but_the_last_retires() {
    let mut state = admin_and_alice();
    assert!(matches!(
        decide(&state, Command::RetireSigningKey { kid: "k1".into() }, now()),
        Err(DomainError::Conflict(_))
    ));
    add_signing_key(&mut state, "k2");
    let later = now() + KEY_WARM_UP;
    assert_eq!(state.active_key(later).unwrap().kid, "k2");
    // The old key may go before the new one has warmed up; the new one then signs at once.
    let out = decide(&state, Command::RetireSigningKey { kid: "k1".into() }, now()).unwrap();
    assert_eq!(events(&out), vec![IdentityEvent::SigningKeyRetired(SigningKeyRetired { kid: "k1".into() })]);
    then_apply(&mut state, &out);
    assert_eq!(state.active_key(now()).unwrap().kid, "k2");
    assert!(matches!(
        decide(&state, Command::RetireSigningKey { kid: "k2".into() }, later),
        Err(DomainError::Conflict(m)) if m.contains("last signing key")
    ));
    assert!(matches!(
        decide(&state, Command::RetireSigningKey { kid: "nope".into() }, now()),
        Err(DomainError::NotFound(_))
    ));
}

#[test]
fn a_new_signing_key_signs_only_once_verifiers_had_time_to_learn_it() {
    let mut state = admin_and_alice();
    // The first key signs at once: there is nothing else to sign with.
    assert_eq!(state.active_key(now()).unwrap().kid, "k1");
    add_signing_key(&mut state, "k2");
    let issue = |state: &IdentityState, at| {
        let command = Command::IssueKubeconfigToken {
            token_id: "t1".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
        };
        decide(state, command, at).unwrap().signing_kid.unwrap()
    };
    let sign_in = |state: &IdentityState, at| {
        let command = Command::RecordSignIn {
            user_id: 2,
            session_id: "s1".into(),
            client_address: "127.0.0.1".into(),
            expires_at: now() + chrono::Duration::hours(1),
        };
        decide(state, command, at).unwrap().signing_kid.unwrap()
    };
    let just_before = now() + KEY_WARM_UP - chrono::Duration::milliseconds(1);
    assert_eq!(issue(&state, now()), "k1", "the new key is only published");
    assert_eq!(issue(&state, just_before), "k1");
    assert_eq!(sign_in(&state, just_before), "k1");
    assert_eq!(issue(&state, now() + KEY_WARM_UP), "k2", "warmed up: the new key signs");
    assert_eq!(sign_in(&state, now() + KEY_WARM_UP), "k2");

    // Two rotations in a row: the newest key that has warmed up signs.
    add_signing_key(&mut state, "k3");
    assert_eq!(issue(&state, just_before), "k1");
    assert_eq!(issue(&state, now() + KEY_WARM_UP), "k3");
}

#[test]
fn revoking_one_token_names_its_owner_and_expiry() {
    let mut state = admin_and_alice();
    let out = decide(
        &state,
        Command::IssueKubeconfigToken {
            token_id: "t1".into(),
            user_id: 2,
            username: "alice".into(),
            environment_ids: vec![1],
        },
        now(),
    )
    .unwrap();
    then_apply(&mut state, &out);
    let out = decide(&state, Command::RevokeToken { token_id: "t1".into() }, now()).unwrap();
    match &events(&out)[0] {
        IdentityEvent::KubeconfigTokenRevoked(r) => {
            assert_eq!(r.user_id, 2);
            assert!(r.expires_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out.decisions[0].stream, "token-t1");
    assert_eq!(out.decisions[0].expected, Some(1));
    then_apply(&mut state, &out);
    assert!(
        decide(&state, Command::RevokeToken { token_id: "t1".into() }, now()).unwrap().decisions.is_empty()
    );
    assert!(matches!(
        decide(&state, Command::RevokeToken { token_id: "zz".into() }, now()),
        Err(DomainError::NotFound(_))
    ));
}

#[test]
fn teams_have_unique_names_and_members_that_exist() {
    let mut state = admin_and_alice();
    let out = decide(&state, Command::CreateTeam { name: "platform".into() }, now()).unwrap();
    assert_eq!(out.created_id, Some(1));
    then_apply(&mut state, &out);
    assert!(matches!(
        decide(&state, Command::CreateTeam { name: "Platform".into() }, now()),
        Err(DomainError::Conflict(_))
    ));
    assert!(matches!(
        decide(&state, Command::AddTeamMember { team_id: 1, user_id: 99 }, now()),
        Err(DomainError::NotFound(_))
    ));
    let out = decide(&state, Command::AddTeamMember { team_id: 1, user_id: 2 }, now()).unwrap();
    then_apply(&mut state, &out);
    assert_eq!(state.teams_of(2).len(), 1);
    // Deleting the user removes the membership too.
    let out = decide(&state, Command::DeleteUser { user_id: 2 }, now()).unwrap();
    then_apply(&mut state, &out);
    assert!(state.teams[&1].members.is_empty());
}

#[test]
fn sign_in_records_are_independent_facts() {
    let state = admin_and_alice();
    let out = decide(
        &state,
        Command::RecordSignInFailure {
            username: "x".repeat(500),
            client_address: "127.0.0.1".into(),
            reason: SignInFailure::Throttled,
        },
        now(),
    )
    .unwrap();
    assert_eq!(out.decisions[0].expected, None);
    match &events(&out)[0] {
        IdentityEvent::SignInFailed(f) => assert_eq!(f.username.chars().count(), 128),
        other => panic!("{other:?}"),
    }
}
