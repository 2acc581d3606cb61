//! Golden files, real kubectl and round-trip properties for the kubeconfig renderer.
//!
//! The golden files in `tests/golden/` are compared byte for byte. After an intended change of
//! the output, rewrite them and review the diff:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p kubegate-kubeconfig --test kubeconfig_file
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubegate_kubeconfig::kubeconfig_file::{
    BearerToken, CaBundle, Environment, Kubeconfig, KubeconfigRequest, PublicEndpoint, RenderedKubeconfig,
    ServerTrust, render,
};
use proptest::prelude::*;
use serde_json::Value;

/// kubectl minors checked for every rendered file; the odd-names file is checked with all.
const KUBECTL_MINORS: [u32; 2] = [27, 33];
const ALL_KUBECTL_MINORS: std::ops::RangeInclusive<u32> = 27..=33;

const TOKEN: &str =
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiIxIiwic2NvcGUiOiJrdWJlY29uZmlnIn0.c2lnbmF0dXJl";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn ca() -> CaBundle {
    let pem = std::fs::read(golden_dir().join("ca.pem")).unwrap();
    CaBundle::from_pem(&pem).unwrap()
}

fn endpoint(trust: ServerTrust) -> PublicEndpoint {
    PublicEndpoint::new("https://127.0.0.1:9443", trust).unwrap()
}

fn env(id: u32, name: &str, namespace: Option<&str>) -> Environment {
    Environment { id, name: name.to_owned(), namespace: namespace.map(str::to_owned) }
}

/// Names that break naive YAML writers or readers, each with a namespace that a YAML 1.1
/// reader would turn into a bool, null or number if it were written plain.
fn odd_environments() -> Vec<Environment> {
    let names: Vec<String> = [
        "prod 🚀",
        "Ünïcödé",
        "生产环境",
        "本番",
        "it's",
        "say \"hi\"",
        "both ' and \"",
        "colon: here",
        "a:b",
        "line\nbreak",
        "crlf\r\nend",
        "tab\there",
        "# hash",
        "x #not a comment",
        "-leading-dash",
        "- list item",
        "--",
        "yes",
        "no",
        "null",
        "~",
        "true",
        "1e3",
        "0x10",
        "012",
        "1_000",
        "2001-12-14",
        " leading and trailing ",
        "[flow]",
        "{map: 1}",
        "&anchor",
        "*alias",
        "!tag",
        "|literal",
        ">folded",
        "%directive",
        "@at",
        "`tick`",
        "...",
        "---",
        "back\\slash",
        "nul\0byte",
        "bell\u{7}esc\u{1b}[31m",
        "del\u{7f}",
        "nel\u{85}nbsp\u{a0}",
        "ls\u{2028}ps\u{2029}",
        "bom\u{feff}",
        "emoji 👩‍💻 zwj",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("very long {}", "ab cd ".repeat(80))])
    .collect();
    let namespaces = [
        None,
        Some("yes"),
        Some("no"),
        Some("null"),
        Some("true"),
        Some("1e3"),
        Some("0x10"),
        Some("012"),
        Some("y"),
        Some("on"),
        Some("off"),
        Some("2001"),
        Some("dev"),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let namespace = namespaces[i % namespaces.len()];
            env(u32::try_from(i).unwrap() + 1, name, namespace)
        })
        .collect()
}

struct Case {
    name: &'static str,
    user: String,
    trust: ServerTrust,
    environments: Vec<Environment>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "single",
            user: "alice".into(),
            trust: ServerTrust::CertificateAuthority(ca()),
            environments: vec![env(1, "demo", None)],
        },
        Case {
            name: "namespaced",
            user: "bob".into(),
            trust: ServerTrust::CertificateAuthority(ca()),
            environments: vec![
                env(3, "production", Some("dev")),
                env(1, "staging", None),
                env(12, "qa", Some("qa")),
            ],
        },
        Case {
            name: "duplicate-names",
            user: "carol".into(),
            trust: ServerTrust::CertificateAuthority(ca()),
            environments: vec![env(3, "prod", None), env(4, "prod", Some("team-a")), env(7, "prod-3", None)],
        },
        Case {
            name: "insecure",
            user: "dave".into(),
            trust: ServerTrust::InsecureSkipTlsVerify,
            environments: vec![env(2, "lab", None)],
        },
        Case {
            name: "odd-names",
            user: "o'brien \"the: admin\" #1\n🚀".into(),
            trust: ServerTrust::CertificateAuthority(ca()),
            environments: odd_environments(),
        },
    ]
}

fn render_case(case: &Case) -> RenderedKubeconfig {
    let token = BearerToken::new(TOKEN);
    let endpoint = endpoint(case.trust.clone());
    render(&KubeconfigRequest {
        user_name: &case.user,
        token: &token,
        endpoint: &endpoint,
        environments: &case.environments,
    })
    .unwrap()
}

fn check_golden(file: &str, actual: &str) {
    let path = golden_dir().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    assert!(
        expected == actual,
        "{file} differs from the rendered output; run with UPDATE_GOLDEN=1 and review the diff\n\
         --- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn golden_files() {
    for case in cases() {
        let rendered = render_case(&case);
        let yaml = rendered.kubeconfig.to_yaml().unwrap();
        let json = rendered.kubeconfig.to_json().unwrap();
        check_golden(&format!("{}.yaml", case.name), &yaml);
        check_golden(&format!("{}.json", case.name), &json);
        // The fixtures parse back to exactly the model they were rendered from.
        assert_eq!(Kubeconfig::from_yaml(&yaml).unwrap(), rendered.kubeconfig);
        assert_eq!(Kubeconfig::from_json(&json).unwrap(), rendered.kubeconfig);
    }
}

#[test]
fn rendered_shape() {
    let case = &cases()[1];
    let rendered = render_case(case);
    let config = &rendered.kubeconfig;
    assert_eq!(config.api_version, "v1");
    assert_eq!(config.kind, "Config");
    assert_eq!(config.current_context, "kubegate-production");
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.users[0].name, "kubegate-bob");
    assert_eq!(config.users[0].user.token.as_ref().unwrap().expose_secret(), TOKEN);
    let servers: Vec<_> =
        config.clusters.iter().map(|c| (c.name.as_str(), c.cluster.server.as_str())).collect();
    assert_eq!(
        servers,
        [
            ("kubegate-production", "https://127.0.0.1:9443/api/endpoints/3/kubernetes"),
            ("kubegate-staging", "https://127.0.0.1:9443/api/endpoints/1/kubernetes"),
            ("kubegate-qa", "https://127.0.0.1:9443/api/endpoints/12/kubernetes"),
        ]
    );
    for cluster in &config.clusters {
        assert!(!cluster.cluster.insecure_skip_tls_verify);
        assert_eq!(
            cluster.cluster.certificate_authority_data.as_deref(),
            Some(ca().kubeconfig_data().as_str())
        );
    }
    assert_eq!(rendered.context_for(12), Some("kubegate-qa"));
    assert_eq!(rendered.context_for(99), None);
    assert_eq!(config.contexts[0].context.namespace.as_deref(), Some("dev"));
    assert_eq!(config.contexts[1].context.namespace, None);
}

#[test]
fn debug_never_shows_the_token() {
    let rendered = render_case(&cases()[0]);
    let debug = format!("{rendered:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("[redacted]"));
}

#[test]
fn ca_data_is_base64_of_the_pem() {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(golden_dir().join("ca.pem")).unwrap();
    let data = ca().kubeconfig_data();
    let decoded = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), pem);
}

#[test]
fn ca_bundle_accepts_generated_chains_and_drops_other_text() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["kubegate.test".into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let first = params.self_signed(&key).unwrap().pem();
    let second = std::fs::read_to_string(golden_dir().join("ca.pem")).unwrap();
    let bundle = format!("# operator's note\n{first}\nsome text\n{second}");
    let parsed = CaBundle::from_pem(bundle.as_bytes()).unwrap();
    assert_eq!(parsed.pem(), format!("{first}{second}").replace("\r\n", "\n"));

    let with_key = format!("{first}{}", key.serialize_pem());
    assert!(CaBundle::from_pem(with_key.as_bytes()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Real kubectl

/// What kubectl must give back for a rendered kubeconfig.
struct Expected {
    clusters: BTreeMap<String, (String, Option<String>, bool)>,
    contexts: BTreeMap<String, (String, String, Option<String>)>,
    users: BTreeMap<String, String>,
    current: String,
}

fn expected(config: &Kubeconfig) -> Expected {
    Expected {
        clusters: config
            .clusters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    (
                        c.cluster.server.clone(),
                        c.cluster.certificate_authority_data.clone(),
                        c.cluster.insecure_skip_tls_verify,
                    ),
                )
            })
            .collect(),
        contexts: config
            .contexts
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    (c.context.cluster.clone(), c.context.user.clone(), c.context.namespace.clone()),
                )
            })
            .collect(),
        users: config
            .users
            .iter()
            .map(|u| {
                let token = u.user.token.as_ref().unwrap().expose_secret().to_owned();
                (u.name.clone(), token)
            })
            .collect(),
        current: config.current_context.clone(),
    }
}

fn kubectl(minor: u32, args: &[&str], file: &Path) -> String {
    let (mut command, _cache) = kubegate_testsupport::kubectl::command(minor);
    command.args(args).arg("--kubeconfig").arg(file);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "kubectl.1.{minor} {args:?} on {} failed: {}\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    String::from_utf8(output.stdout).unwrap()
}

fn without_padding(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}')).collect()
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn assert_kubectl_reads(minor: u32, file: &Path, config: &Kubeconfig) {
    let expected = expected(config);
    let view: Value =
        serde_json::from_str(&kubectl(minor, &["config", "view", "--raw", "-o", "json"], file)).unwrap();
    let what = format!("kubectl.1.{minor} config view {}", file.display());

    let clusters: BTreeMap<String, (String, Option<String>, bool)> = view["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let cluster = &c["cluster"];
            (
                str_field(c, "name").unwrap().to_owned(),
                (
                    str_field(cluster, "server").unwrap().to_owned(),
                    str_field(cluster, "certificate-authority-data").map(str::to_owned),
                    cluster.get("insecure-skip-tls-verify").and_then(Value::as_bool).unwrap_or(false),
                ),
            )
        })
        .collect();
    assert_eq!(clusters, expected.clusters, "{what}: clusters");

    let contexts: BTreeMap<String, (String, String, Option<String>)> = view["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let context = &c["context"];
            (
                str_field(c, "name").unwrap().to_owned(),
                (
                    str_field(context, "cluster").unwrap().to_owned(),
                    str_field(context, "user").unwrap().to_owned(),
                    str_field(context, "namespace").map(str::to_owned),
                ),
            )
        })
        .collect();
    assert_eq!(contexts, expected.contexts, "{what}: contexts");

    let users: BTreeMap<String, String> = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (str_field(u, "name").unwrap().to_owned(), str_field(&u["user"], "token").unwrap().to_owned())
        })
        .collect();
    assert_eq!(users, expected.users, "{what}: users");
    assert_eq!(
        str_field(&view, "current-context"),
        Some(expected.current.as_str()),
        "{what}: current-context"
    );

    // kubectl prints the names sorted (Go compares bytes, as Rust's `str` ordering does),
    // through a tab-aligning writer that pads `\t`, `\v` and `\f` with spaces: that is display
    // only (`config view` above and `--context` get the exact name), so padding is ignored here.
    let names: String = expected.contexts.keys().map(|n| format!("{n}\n")).collect();
    assert_eq!(
        without_padding(&kubectl(minor, &["config", "get-contexts", "-o", "name"], file)),
        without_padding(&names),
        "kubectl.1.{minor} config get-contexts {}",
        file.display()
    );
    assert_eq!(
        kubectl(minor, &["config", "current-context"], file),
        format!("{}\n", expected.current),
        "kubectl.1.{minor} config current-context {}",
        file.display()
    );
}

/// Writes both formats the REST API serves; kubectl reads JSON kubeconfigs too.
fn write_both(dir: &Path, stem: &str, config: &Kubeconfig) -> [PathBuf; 2] {
    let yaml = dir.join(format!("{stem}.yaml"));
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&yaml, config.to_yaml().unwrap()).unwrap();
    std::fs::write(&json, config.to_json().unwrap()).unwrap();
    [yaml, json]
}

#[test]
fn kubectl_reads_every_rendered_case() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let rendered = render_case(&case);
        for file in write_both(dir.path(), case.name, &rendered.kubeconfig) {
            for minor in KUBECTL_MINORS {
                assert_kubectl_reads(minor, &file, &rendered.kubeconfig);
            }
        }
    }
}

#[test]
fn every_kubectl_version_reads_odd_names() {
    let dir = tempfile::tempdir().unwrap();
    let case = cases().into_iter().find(|c| c.name == "odd-names").unwrap();
    let rendered = render_case(&case);
    let [yaml, _] = write_both(dir.path(), "odd", &rendered.kubeconfig);
    for minor in ALL_KUBECTL_MINORS {
        assert_kubectl_reads(minor, &yaml, &rendered.kubeconfig);
    }
}

/// Users type context names on the command line (`kubectl --context NAME`): each rendered
/// name must select its own context, cluster server and namespace.
#[test]
fn kubectl_selects_each_odd_context_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let case = cases().into_iter().find(|c| c.name == "odd-names").unwrap();
    let rendered = render_case(&case);
    let [yaml, _] = write_both(dir.path(), "odd", &rendered.kubeconfig);
    for (i, mapping) in rendered.contexts.iter().enumerate() {
        let minor = KUBECTL_MINORS[i % KUBECTL_MINORS.len()];
        let name = mapping.context_name.as_str();
        // A command line cannot carry a NUL byte, so nobody can type that one.
        if name.contains('\0') {
            continue;
        }
        let minified: Value = serde_json::from_str(&kubectl(
            minor,
            &["config", "view", "--minify", "--context", name, "-o", "json"],
            &yaml,
        ))
        .unwrap();
        let environment = case.environments.iter().find(|e| e.id == mapping.environment_id).unwrap();
        assert_eq!(str_field(&minified, "current-context"), Some(name));
        assert_eq!(
            str_field(&minified["clusters"][0]["cluster"], "server"),
            Some(format!("https://127.0.0.1:9443/api/endpoints/{}/kubernetes", environment.id).as_str())
        );
        assert_eq!(
            str_field(&minified["contexts"][0]["context"], "namespace"),
            environment.namespace.as_deref()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

fn any_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 1..=128).prop_map(String::from_iter)
}

/// Up to six environments whose names often collide, to exercise the uniqueness rule.
fn any_environments() -> impl Strategy<Value = Vec<Environment>> {
    let pool = proptest::collection::vec(any_name(), 1..=3);
    (pool, proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..=6)).prop_map(
        |(pool, picks)| {
            picks
                .into_iter()
                .enumerate()
                .map(|(i, (pick, scoped))| Environment {
                    id: u32::try_from(i).unwrap() * 7 + 1,
                    name: pool[pick.index(pool.len())].clone(),
                    namespace: scoped.then(|| "dev".to_owned()),
                })
                .collect()
        },
    )
}

fn assert_names_unique_and_mapped(rendered: &RenderedKubeconfig, environments: &[Environment]) {
    let config = &rendered.kubeconfig;
    let names: std::collections::HashSet<_> = config.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), environments.len());
    assert_eq!(rendered.contexts.len(), environments.len());
    for ((mapping, environment), (context, cluster)) in
        rendered.contexts.iter().zip(environments).zip(config.contexts.iter().zip(&config.clusters))
    {
        assert_eq!(mapping.environment_id, environment.id);
        assert_eq!(mapping.context_name, context.name);
        assert_eq!(context.name, cluster.name);
        assert_eq!(context.context.cluster, cluster.name);
        assert!(context.name.starts_with(&format!("kubegate-{}", environment.name)));
    }
    assert_eq!(config.current_context, rendered.contexts[0].context_name);
}

proptest! {
    // Failures print their minimal input; nothing is written to the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn yaml_and_json_round_trip_any_names(user in any_name(), environments in any_environments()) {
        let token = BearerToken::new(TOKEN);
        let endpoint = endpoint(ServerTrust::CertificateAuthority(ca()));
        let rendered = render(&KubeconfigRequest {
            user_name: &user,
            token: &token,
            endpoint: &endpoint,
            environments: &environments,
        })
        .unwrap();
        assert_names_unique_and_mapped(&rendered, &environments);
        let yaml = rendered.kubeconfig.to_yaml().unwrap();
        prop_assert_eq!(&Kubeconfig::from_yaml(&yaml).unwrap(), &rendered.kubeconfig, "{}", yaml);
        let json = rendered.kubeconfig.to_json().unwrap();
        prop_assert_eq!(&Kubeconfig::from_json(&json).unwrap(), &rendered.kubeconfig);
        // Every value stays on its line: no block scalar (`|`, `>`) ever folds a name.
        for line in yaml.lines() {
            if let Some((_, value)) = line.split_once(": ") {
                prop_assert!(!value.starts_with(['|', '>']), "{}", yaml);
            }
        }
    }
}

proptest! {
    // Each case runs kubectl, so fewer cases; failures are not persisted to the source tree.
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn kubectl_reads_any_names(
        user in any_name(),
        environments in any_environments(),
        newer in any::<bool>(),
        as_json in any::<bool>(),
    ) {
        let token = BearerToken::new(TOKEN);
        let endpoint = endpoint(ServerTrust::CertificateAuthority(ca()));
        let rendered = render(&KubeconfigRequest {
            user_name: &user,
            token: &token,
            endpoint: &endpoint,
            environments: &environments,
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let [yaml, json] = write_both(dir.path(), "any", &rendered.kubeconfig);
        let minor = if newer { 33 } else { 27 };
        assert_kubectl_reads(minor, if as_json { &json } else { &yaml }, &rendered.kubeconfig);
    }
}
