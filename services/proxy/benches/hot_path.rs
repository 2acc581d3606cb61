//! Micro-benchmarks of the proxy's hot path, in ns per operation:
//!
//! - `token/check_cached`: `Cache::authenticate` of a token whose signature is already verified
//!   (hash, cache lookup, claims, revocation and user checks) — every request pays this.
//! - `token/check_uncached`: the first use of a token on a replica (Ed25519 verification, then
//!   the same checks, and the insertion into the verified-token cache).
//! - `authz/<request>`: `request_info::classify` of the path and query plus
//!   `authz::authorize` for a standard user, for representative requests.
//!
//! `make bench` runs them with `cargo bench -p kubegate-proxy --bench hot_path`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::Method;
use kubegate_events::SealedSecret;
use kubegate_events::access::{EnvironmentRole, Grant};
use kubegate_events::identity::{GlobalRole, IdentityEvent, SigningKeyAdded, UserCreated};
use kubegate_proxy::authz;
use kubegate_proxy::cache::Cache;
use kubegate_proxy::request_info::classify;
use kubegate_token::{Claims, Scope, SigningKey};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A cache that knows one signing key and one user, as after replaying the identity stream.
fn cache(key: &SigningKey) -> Cache {
    let (_, fleet) = kubegate_seal::generate_fleet_key();
    let cache = Cache::new(fleet);
    cache.apply_identity(&IdentityEvent::SigningKeyAdded(SigningKeyAdded {
        kid: key.kid().into(),
        public_key: key.public_key(),
        private_key: SealedSecret("sealed".into()),
    }));
    cache.apply_identity(&IdentityEvent::UserCreated(UserCreated {
        user_id: 7,
        username: "alice".into(),
        role: GlobalRole::User,
        password: SealedSecret("sealed".into()),
    }));
    cache
}

fn token(key: &SigningKey, jti: &str) -> String {
    let iat = now() - 60;
    key.mint(&Claims {
        sub: "7".into(),
        name: "alice".into(),
        jti: jti.into(),
        iat,
        exp: Some(iat + 30 * 86400),
        scope: Scope::Kubeconfig,
    })
    .unwrap()
}

fn tokens(c: &mut Criterion) {
    let key = SigningKey::from_seed("bench-k1", &[7u8; 32]).unwrap();
    let t = token(&key, "0190a5c3-0000-7000-8000-000000000001");
    let warm = cache(&key);
    assert!(warm.authenticate(&t, now()).is_ok());
    let at = now();
    let mut group = c.benchmark_group("token");
    group.bench_function("check_cached", |b| {
        b.iter(|| black_box(warm.authenticate(black_box(&t), at)).is_ok())
    });
    // A fresh cache per iteration (built outside the measurement), so every check verifies.
    group.bench_function("check_uncached", |b| {
        b.iter_batched_ref(
            || cache(&key),
            |cold| black_box(cold.authenticate(black_box(&t), at)).is_ok(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Representative requests: (name, method, path after `/kubernetes`, query).
const REQUESTS: &[(&str, Method, &str, Option<&str>)] = &[
    ("list_pods", Method::GET, "/api/v1/namespaces/dev/pods", None),
    ("get_deployment", Method::GET, "/apis/apps/v1/namespaces/dev/deployments/web", None),
    ("watch_pods", Method::GET, "/api/v1/namespaces/dev/pods", Some("watch=true&resourceVersion=12345")),
    ("exec", Method::POST, "/api/v1/namespaces/dev/pods/web-0/exec", Some("command=sh&stdin=true&tty=true")),
    ("list_nodes", Method::GET, "/api/v1/nodes", None),
    ("denied_secret_other_ns", Method::GET, "/api/v1/namespaces/prod/secrets/db", None),
    ("discovery", Method::GET, "/apis/apps/v1", None),
];

fn authorization(c: &mut Criterion) {
    let grant = Grant { role: EnvironmentRole::Standard, namespaces: vec!["dev".into(), "qa".into()] };
    let mut group = c.benchmark_group("authz");
    for (name, method, path, query) in REQUESTS {
        let decided = classify(method, path, *query).map(|c| authz::authorize(&c.info, &grant).is_allowed());
        assert!(decided.is_ok(), "{name}: {decided:?}");
        group.bench_function(*name, |b| {
            b.iter(|| {
                let classified = classify(black_box(method), black_box(path), black_box(*query)).unwrap();
                black_box(authz::authorize(&classified.info, &grant).is_allowed())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tokens, authorization);
criterion_main!(benches);
