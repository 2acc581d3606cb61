//! Given events, when a command, then events (or a refusal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_events::access::EnvironmentRole;
use kubegate_events::environments::*;
use kubegate_events::identity::{
    GlobalRole, IdentityEvent, TeamCreated, TeamMemberAdded, UserCreated, UserDisabled,
};
use kubegate_events::{Actor, Envelope, SealedSecret};
use kubegate_identity::domain::IdentityState;

use super::*;

const CA: &str = include_str!("../../tests/golden/ca.pem");

fn sealed(s: &str) -> SealedCredential {
    SealedCredential(format!("-----BEGIN AGE ENCRYPTED FILE-----\n{s}\n-----END AGE ENCRYPTED FILE-----\n"))
}

/// Applies `events` to a fresh state, as if read from the log.
fn given(events: Vec<EnvironmentEvent>) -> EnvironmentsState {
    let mut state = EnvironmentsState::default();
    for (i, event) in events.into_iter().enumerate() {
        let mut env = Envelope::new(state::streams::ENVIRONMENTS, Actor::system("test"), "c", event);
        env.position = i as u64 + 1;
        state.apply(&env);
    }
    state
}

/// Applies an outcome's events (what the engine does after the append).
fn then_apply(state: &mut EnvironmentsState, outcome: &Outcome) {
    for d in &outcome.decisions {
        for e in &d.events {
            state.apply(&Envelope::new(d.stream.clone(), Actor::system("test"), "c", e.clone()));
        }
    }
}

fn events(outcome: &Outcome) -> Vec<EnvironmentEvent> {
    outcome.events().cloned().collect()
}

/// Identity with admin (1), alice (2), bob (3, disabled), carol (4); team platform (1) with carol.
fn identity() -> IdentityState {
    let mut state = IdentityState::default();
    let user = |id: u64, name: &str, role| {
        IdentityEvent::UserCreated(UserCreated {
            user_id: id,
            username: name.into(),
            role,
            password: SealedSecret("x".into()),
        })
    };
    let all = vec![
        user(1, "admin", GlobalRole::Admin),
        user(2, "alice", GlobalRole::User),
        user(3, "bob", GlobalRole::User),
        user(4, "carol", GlobalRole::User),
        IdentityEvent::UserDisabled(UserDisabled { user_id: 3 }),
        IdentityEvent::TeamCreated(TeamCreated { team_id: 1, name: "platform".into() }),
        IdentityEvent::TeamMemberAdded(TeamMemberAdded { team_id: 1, user_id: 4 }),
    ];
    for (i, e) in all.into_iter().enumerate() {
        let mut env = Envelope::new("x", Actor::system("test"), "c", e);
        env.position = i as u64 + 1;
        state.apply(&env);
    }
    state
}

fn registered(id: u64, name: &str) -> EnvironmentEvent {
    EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
        environment_id: id,
        name: name.into(),
        url: format!("https://cluster-{id}.example:6443"),
        ca_pem: Some(CA.into()),
        insecure_skip_tls_verify: false,
        credential: sealed("one"),
        credential_kind: CredentialKind::Token,
    })
}

fn register(name: &str) -> Command {
    Command::RegisterEnvironment {
        name: name.into(),
        url: "https://10.0.0.1:6443".into(),
        ca_pem: Some(CA.into()),
        insecure_skip_tls_verify: false,
        credential: sealed("c"),
        credential_kind: CredentialKind::Token,
    }
}

fn update(id: u64) -> Command {
    Command::UpdateEnvironment {
        environment_id: id,
        name: None,
        url: None,
        ca_pem: None,
        insecure_skip_tls_verify: None,
        credential: None,
    }
}

fn entry(id: u64, role: EnvironmentRole, namespaces: &[&str]) -> PolicyEntry {
    PolicyEntry { id, role, namespaces: namespaces.iter().map(|n| n.to_string()).collect() }
}

fn policy(environment_id: u64, users: Vec<PolicyEntry>, teams: Vec<PolicyEntry>) -> EnvironmentEvent {
    EnvironmentEvent::AccessPolicySet(AccessPolicySet { environment_id, users, teams })
}

fn only_registration(outcome: &Outcome) -> EnvironmentRegistered {
    match events(outcome).as_slice() {
        [EnvironmentEvent::EnvironmentRegistered(e)] => e.clone(),
        other => panic!("expected one registration, got {other:?}"),
    }
}

fn invalid(result: Result<Outcome, DomainError>) -> String {
    match result {
        Err(DomainError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- registration ----------------------------------------------------------------------------

#[test]
fn given_nothing_when_registering_then_id_1_on_a_new_catalogue_with_canonical_ca() {
    let state = given(vec![]);
    let out = decide(&state, &identity(), register("prod")).unwrap();
    assert_eq!(out.created_id, Some(1));
    assert_eq!(out.decisions[0].stream, "environments");
    assert_eq!(out.decisions[0].expected, Some(0));
    let e = only_registration(&out);
    assert_eq!((e.environment_id, e.name.as_str(), e.url.as_str()), (1, "prod", "https://10.0.0.1:6443"));
    assert!(e.ca_pem.unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(!e.insecure_skip_tls_verify);
}

#[test]
fn given_removed_environments_when_registering_then_ids_are_never_reused() {
    let state = given(vec![
        registered(1, "a"),
        registered(2, "b"),
        EnvironmentEvent::EnvironmentRemoved(EnvironmentRemoved { environment_id: 2 }),
    ]);
    let out = decide(&state, &identity(), register("c")).unwrap();
    assert_eq!(out.created_id, Some(3));
    assert_eq!(out.decisions[0].expected, Some(3));
}

#[test]
fn names_are_unique_regardless_of_letter_case() {
    let state = given(vec![registered(1, "Prod")]);
    for taken in ["Prod", "prod", "PROD"] {
        assert!(
            matches!(decide(&state, &identity(), register(taken)), Err(DomainError::Conflict(_))),
            "{taken}"
        );
    }
    assert!(decide(&state, &identity(), register("prod-2")).is_ok());
    assert!(decide(&state, &identity(), register("Prod ")).is_ok(), "whitespace is part of the name");
}

#[test]
fn names_are_1_to_128_characters_of_any_unicode_but_nul() {
    let state = given(vec![]);
    for ok in ["x", "生产环境", "line\nbreak", "say \"hi\": #1", "- yes", "~", "👩‍💻", &"é".repeat(128)]
    {
        assert!(decide(&state, &identity(), register(ok)).is_ok(), "{ok:?}");
    }
    for bad in ["", &"é".repeat(129), "nul\0byte"] {
        invalid(decide(&state, &identity(), register(bad)));
    }
}

#[test]
fn urls_must_be_https_with_a_host_and_nothing_secret_or_ambiguous() {
    let state = given(vec![]);
    let with_url = |url: &str| Command::RegisterEnvironment {
        name: "x".into(),
        url: url.into(),
        ca_pem: Some(CA.into()),
        insecure_skip_tls_verify: false,
        credential: sealed("c"),
        credential_kind: CredentialKind::Token,
    };
    for (given_url, stored) in [
        ("https://10.0.0.1:6443", "https://10.0.0.1:6443"),
        ("https://Cluster.Example:443/", "https://cluster.example"),
        ("HTTPS://[::1]:6443/", "https://[::1]:6443"),
        ("https://rancher.example/k8s/clusters/c-m-1", "https://rancher.example/k8s/clusters/c-m-1"),
    ] {
        let out = decide(&state, &identity(), with_url(given_url)).unwrap();
        let e = only_registration(&out);
        assert_eq!(e.url, stored, "{given_url}");
    }
    for bad in [
        "http://10.0.0.1:6443",
        "10.0.0.1:6443",
        "ftp://x",
        "https://",
        "https://user:pw@host",
        "https://token@host",
        "https://host/?a=b",
        "https://host/#x",
        " https://host",
        "https://ho st",
        "",
    ] {
        let message = invalid(decide(&state, &identity(), with_url(bad)));
        assert!(message.starts_with("url must be an https:// URL"), "{bad}: {message}");
    }
}

#[test]
fn the_ca_is_required_unless_verification_is_explicitly_skipped() {
    let state = given(vec![]);
    let with = |ca: Option<&str>, insecure: bool| Command::RegisterEnvironment {
        name: "x".into(),
        url: "https://h".into(),
        ca_pem: ca.map(str::to_string),
        insecure_skip_tls_verify: insecure,
        credential: sealed("c"),
        credential_kind: CredentialKind::Token,
    };
    assert!(invalid(decide(&state, &identity(), with(None, false))).contains("caCert is required"));
    assert!(invalid(decide(&state, &identity(), with(Some(CA), true))).contains("not both"));
    assert!(invalid(decide(&state, &identity(), with(Some("not a pem"), false))).starts_with("caCert:"));
    let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(invalid(decide(&state, &identity(), with(Some(key), false))).contains("only certificates"));
    let out = decide(&state, &identity(), with(None, true)).unwrap();
    let e = only_registration(&out);
    assert_eq!((e.ca_pem, e.insecure_skip_tls_verify), (None, true));
}

// ---- changes -----------------------------------------------------------------------------------

#[test]
fn given_an_environment_when_changing_everything_then_one_event_per_kind_of_change() {
    let state = given(vec![registered(1, "prod")]);
    let out = decide(
        &state,
        &identity(),
        Command::UpdateEnvironment {
            environment_id: 1,
            name: Some("production".into()),
            url: Some("https://new.example:6443".into()),
            ca_pem: None,
            insecure_skip_tls_verify: Some(true),
            credential: Some((sealed("two"), CredentialKind::ClientCertificate)),
        },
    )
    .unwrap();
    assert_eq!(
        events(&out),
        vec![
            EnvironmentEvent::EnvironmentRenamed(EnvironmentRenamed {
                environment_id: 1,
                name: "production".into()
            }),
            EnvironmentEvent::EnvironmentEndpointChanged(EnvironmentEndpointChanged {
                environment_id: 1,
                url: "https://new.example:6443".into(),
                ca_pem: None,
                insecure_skip_tls_verify: true,
            }),
            EnvironmentEvent::EnvironmentCredentialRotated(EnvironmentCredentialRotated {
                environment_id: 1,
                credential: sealed("two"),
                credential_kind: CredentialKind::ClientCertificate,
            }),
        ]
    );
    assert_eq!(out.decisions[0].expected, Some(1));
}

#[test]
fn given_a_change_with_one_bad_field_then_nothing_changes() {
    let state = given(vec![registered(1, "prod"), registered(2, "dev")]);
    let attempt = |f: &dyn Fn(&mut Command)| {
        let mut c = Command::UpdateEnvironment {
            environment_id: 1,
            name: Some("renamed".into()),
            url: Some("https://ok.example".into()),
            ca_pem: None,
            insecure_skip_tls_verify: None,
            credential: Some((sealed("x"), CredentialKind::Token)),
        };
        f(&mut c);
        decide(&state, &identity(), c)
    };
    let Err(DomainError::Conflict(_)) = attempt(&|c| {
        if let Command::UpdateEnvironment { name, .. } = c {
            *name = Some("DEV".into());
        }
    }) else {
        panic!("a taken name is a conflict")
    };
    invalid(attempt(&|c| {
        if let Command::UpdateEnvironment { url, .. } = c {
            *url = Some("http://plain".into());
        }
    }));
    invalid(attempt(&|c| {
        if let Command::UpdateEnvironment { ca_pem, .. } = c {
            *ca_pem = Some("garbage".into());
        }
    }));
}

#[test]
fn unchanged_values_record_nothing_and_case_only_renames_are_renames() {
    let state = given(vec![registered(1, "prod")]);
    let mut same = update(1);
    if let Command::UpdateEnvironment { name, url, .. } = &mut same {
        *name = Some("prod".into());
        *url = Some("https://cluster-1.example:6443/".into());
    }
    assert!(decide(&state, &identity(), same).unwrap().decisions.is_empty());
    let mut case = update(1);
    if let Command::UpdateEnvironment { name, .. } = &mut case {
        *name = Some("PROD".into());
    }
    assert_eq!(
        events(&decide(&state, &identity(), case).unwrap()),
        vec![EnvironmentEvent::EnvironmentRenamed(EnvironmentRenamed {
            environment_id: 1,
            name: "PROD".into()
        })]
    );
}

#[test]
fn a_new_ca_turns_verification_back_on_and_dropping_the_ca_needs_insecure() {
    let mut state = given(vec![registered(1, "prod")]);
    let mut insecure = update(1);
    if let Command::UpdateEnvironment { insecure_skip_tls_verify, .. } = &mut insecure {
        *insecure_skip_tls_verify = Some(true);
    }
    let out = decide(&state, &identity(), insecure).unwrap();
    then_apply(&mut state, &out);
    let e = state.get(1).unwrap();
    assert_eq!((e.ca_pem.is_none(), e.insecure_skip_tls_verify), (true, true));

    let mut verify_without_ca = update(1);
    if let Command::UpdateEnvironment { insecure_skip_tls_verify, .. } = &mut verify_without_ca {
        *insecure_skip_tls_verify = Some(false);
    }
    assert!(invalid(decide(&state, &identity(), verify_without_ca)).contains("caCert is required"));

    let mut with_ca = update(1);
    if let Command::UpdateEnvironment { ca_pem, .. } = &mut with_ca {
        *ca_pem = Some(CA.into());
    }
    let out = decide(&state, &identity(), with_ca).unwrap();
    then_apply(&mut state, &out);
    let e = state.get(1).unwrap();
    assert_eq!((e.ca_pem.is_some(), e.insecure_skip_tls_verify), (true, false));
}

#[test]
fn unknown_environments_are_not_found() {
    let state = given(vec![registered(1, "prod")]);
    assert!(matches!(decide(&state, &identity(), update(7)), Err(DomainError::NotFound(_))));
    assert!(matches!(
        decide(&state, &identity(), Command::RemoveEnvironment { environment_id: 7 }),
        Err(DomainError::NotFound(_))
    ));
    let set = Command::SetAccessPolicy { environment_id: 7, users: vec![], teams: vec![] };
    assert!(matches!(decide(&state, &identity(), set), Err(DomainError::NotFound(_))));
}

#[test]
fn given_a_removed_environment_then_its_name_is_free_again() {
    let mut state = given(vec![registered(1, "prod")]);
    let out = decide(&state, &identity(), Command::RemoveEnvironment { environment_id: 1 }).unwrap();
    then_apply(&mut state, &out);
    assert!(state.get(1).is_none());
    assert_eq!(decide(&state, &identity(), register("prod")).unwrap().created_id, Some(2));
}

// ---- access policies ---------------------------------------------------------------------------

#[test]
fn a_policy_replaces_the_previous_one_with_namespaces_sorted() {
    let state = given(vec![registered(1, "prod")]);
    let out = decide(
        &state,
        &identity(),
        Command::SetAccessPolicy {
            environment_id: 1,
            users: vec![entry(2, EnvironmentRole::Standard, &["web", "dev", "web"])],
            teams: vec![entry(1, EnvironmentRole::Operator, &[])],
        },
    )
    .unwrap();
    assert_eq!(
        events(&out),
        vec![policy(
            1,
            vec![entry(2, EnvironmentRole::Standard, &["dev", "web"])],
            vec![entry(1, EnvironmentRole::Operator, &[])]
        )]
    );
    let mut state = state;
    then_apply(&mut state, &out);
    let same = Command::SetAccessPolicy {
        environment_id: 1,
        users: vec![entry(2, EnvironmentRole::Standard, &["web", "dev"])],
        teams: vec![entry(1, EnvironmentRole::Operator, &[])],
    };
    assert!(decide(&state, &identity(), same).unwrap().decisions.is_empty(), "no change, no event");
}

#[test]
fn policies_name_known_users_and_teams_only() {
    let state = given(vec![registered(1, "prod")]);
    let refused = decide(
        &state,
        &identity(),
        Command::SetAccessPolicy {
            environment_id: 1,
            users: vec![
                entry(2, EnvironmentRole::Helpdesk, &[]),
                entry(9, EnvironmentRole::Helpdesk, &[]),
                entry(12, EnvironmentRole::Helpdesk, &[]),
            ],
            teams: vec![entry(5, EnvironmentRole::Helpdesk, &[])],
        },
    );
    assert_eq!(refused, Err(DomainError::UnknownIds("unknown user ids: 9, 12; unknown team ids: 5".into())));
}

#[test]
fn namespaces_are_required_for_scoped_roles_and_refused_for_the_others() {
    let state = given(vec![registered(1, "prod")]);
    let set = |users| {
        decide(&state, &identity(), Command::SetAccessPolicy { environment_id: 1, users, teams: vec![] })
    };
    for role in [EnvironmentRole::Standard, EnvironmentRole::ReadOnly] {
        assert!(invalid(set(vec![entry(2, role, &[])])).contains("needs at least one namespace"));
        for bad in ["Dev", "-dev", "dev-", "d_v", "a.b", "", &"a".repeat(64), "dév"] {
            assert!(
                invalid(set(vec![entry(2, role, &[bad])])).contains("not a valid namespace name"),
                "{bad:?}"
            );
        }
        assert!(set(vec![entry(2, role, &["dev", &"a".repeat(63)])]).is_ok());
    }
    for role in [EnvironmentRole::EnvironmentAdmin, EnvironmentRole::Operator, EnvironmentRole::Helpdesk] {
        assert!(invalid(set(vec![entry(2, role, &["dev"])])).contains("takes no namespaces"), "{role}");
        assert!(set(vec![entry(2, role, &[])]).is_ok());
    }
    assert!(
        invalid(set(vec![
            entry(2, EnvironmentRole::Helpdesk, &[]),
            entry(2, EnvironmentRole::Operator, &[])
        ]))
        .contains("listed more than once")
    );
}

// ---- who reaches what, and downloads -------------------------------------------------------------

fn catalogue() -> EnvironmentsState {
    given(vec![
        registered(1, "prod"),
        registered(2, "staging"),
        registered(3, "lab"),
        policy(
            1,
            vec![
                entry(2, EnvironmentRole::Standard, &["web", "dev"]),
                entry(3, EnvironmentRole::Operator, &[]),
            ],
            vec![],
        ),
        policy(
            2,
            vec![entry(2, EnvironmentRole::ReadOnly, &["qa"])],
            vec![entry(1, EnvironmentRole::Helpdesk, &[])],
        ),
    ])
}

fn chosen(id: u64, name: &str, namespace: Option<&str>) -> Chosen {
    Chosen { id, name: name.into(), namespace: namespace.map(str::to_string) }
}

#[test]
fn admins_reach_everything_as_environment_admin_without_namespace() {
    let state = catalogue();
    let out = choose(&state, &identity(), 1, &Selection::All).unwrap();
    assert_eq!(out, vec![chosen(1, "prod", None), chosen(2, "staging", None), chosen(3, "lab", None)]);
    assert_eq!(
        grant_for(&identity(), 1, state.get(3).unwrap()).unwrap().role,
        EnvironmentRole::EnvironmentAdmin
    );
}

#[test]
fn a_scoped_user_gets_their_first_namespace_and_never_an_environment_not_granted() {
    let state = catalogue();
    let out = choose(&state, &identity(), 2, &Selection::All).unwrap();
    assert_eq!(out, vec![chosen(1, "prod", Some("dev")), chosen(2, "staging", Some("qa"))]);
    let err = choose(&state, &identity(), 2, &Selection::Only(vec![3, 1, 2])).unwrap_err();
    assert_eq!(err, DomainError::Forbidden("you have no access to environment 3".into()));
    let out = choose(&state, &identity(), 2, &Selection::Except(vec![1, 3])).unwrap();
    assert_eq!(out, vec![chosen(2, "staging", Some("qa"))]);
}

#[test]
fn teams_grant_access_and_disabled_users_reach_nothing() {
    let state = catalogue();
    let out = choose(&state, &identity(), 4, &Selection::All).unwrap();
    assert_eq!(out, vec![chosen(2, "staging", None)], "carol is helpdesk through platform");
    assert!(
        reachable(&state, &identity(), 3).is_empty(),
        "bob is disabled: his operator grant gives nothing"
    );
}

#[test]
fn the_order_asked_for_is_kept_and_repeats_collapse() {
    let state = catalogue();
    let out = choose(&state, &identity(), 1, &Selection::Only(vec![3, 1, 3])).unwrap();
    assert_eq!(out, vec![chosen(3, "lab", None), chosen(1, "prod", None)]);
}

#[test]
fn unknown_ids_are_404_before_403_and_nothing_left_is_400() {
    let state = catalogue();
    assert_eq!(
        choose(&state, &identity(), 2, &Selection::Only(vec![3, 9, 8])).unwrap_err(),
        DomainError::NotFound("environments 9, 8 not found".into())
    );
    assert_eq!(
        choose(&state, &identity(), 2, &Selection::Except(vec![9])).unwrap_err(),
        DomainError::NotFound("environment 9 not found".into())
    );
    assert!(matches!(choose(&state, &identity(), 2, &Selection::Only(vec![])), Err(DomainError::Invalid(_))));
    assert!(matches!(
        choose(&state, &identity(), 2, &Selection::Except(vec![1, 2])),
        Err(DomainError::Invalid(_))
    ));
    assert!(matches!(choose(&state, &identity(), 3, &Selection::All), Err(DomainError::Invalid(_))));
}

#[test]
fn renames_and_policy_changes_show_in_the_next_choice() {
    let mut state = catalogue();
    let mut rename = update(1);
    if let Command::UpdateEnvironment { name, .. } = &mut rename {
        *name = Some("production".into());
    }
    let out = decide(&state, &identity(), rename).unwrap();
    then_apply(&mut state, &out);
    let out = decide(
        &state,
        &identity(),
        Command::SetAccessPolicy {
            environment_id: 1,
            users: vec![entry(2, EnvironmentRole::ReadOnly, &["ops"])],
            teams: vec![],
        },
    )
    .unwrap();
    then_apply(&mut state, &out);
    assert_eq!(
        choose(&state, &identity(), 2, &Selection::Only(vec![1])).unwrap(),
        vec![chosen(1, "production", Some("ops"))]
    );
}

#[test]
fn a_download_is_recorded_on_its_own_stream_without_a_version_check() {
    let state = catalogue();
    let downloaded = KubeconfigDownloaded {
        user_id: 2,
        username: "alice".into(),
        environment_ids: vec![1, 2],
        token_id: "t".into(),
        expires_at: None,
        client_address: "127.0.0.1".into(),
    };
    let out = decide(&state, &identity(), Command::RecordDownload(downloaded.clone())).unwrap();
    assert_eq!(out.decisions[0].stream, "downloads");
    assert_eq!(out.decisions[0].expected, None);
    assert_eq!(events(&out), vec![EnvironmentEvent::KubeconfigDownloaded(downloaded)]);
}
