//! An environment-admin through the whole stack (two proxy replicas behind HAProxy, two
//! environments): kubectl works, the cluster sees the real person, and nothing the client
//! sends about identity ever reaches the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reaches_both_environments_as_themselves() {
    let stack = Stack::start(Options::default()).await;
    let one = stack.register(0, "prod 🚀").await;
    let two = stack.register(1, "staging").await;
    let kc = stack.kubeconfig_file(&stack.admin, &[one, two], "admin").await;
    stack.wait_environment_everywhere(&kc).await;

    let pods = ok(kubectl(33, &kc, &["get", "pods"]));
    assert!(pods.contains("nginx"), "{pods}");
    let all = ok(kubectl(33, &kc, &["get", "pods", "-A"]));
    assert!(all.contains("kube-system") && all.contains("dev"), "{all}");
    let ns = ok(kubectl(33, &kc, &["get", "ns"]));
    assert!(ns.contains("kube-system"), "{ns}");
    let second = ok(kubectl(33, &kc, &["--context", "kubegate-staging", "get", "pods", "-n", "dev"]));
    assert!(!second.is_empty());

    let whoami = ok(kubectl(33, &kc, &["auth", "whoami", "-o", "json"]));
    let who: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "kubegate:admin", "{whoami}");
    let groups = who["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("kubegate:role:environment-admin") && groups.contains("system:authenticated"),
        "{groups}"
    );

    // Client-sent identity headers are dropped: --as changes nothing.
    let whoami = ok(kubectl(
        33,
        &kc,
        &["auth", "whoami", "-o", "json", "--as", "evil", "--as-group", "system:masters"],
    ));
    let who: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "kubegate:admin");
    assert!(!who["status"]["userInfo"]["groups"].to_string().contains("system:masters"));

    let requests = stack.sims[0].requests();
    assert!(requests.len() > 5);
    for r in &requests {
        let auths: Vec<&str> =
            r.headers.iter().filter(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()).collect();
        assert_eq!(auths, vec![format!("Bearer {UPSTREAM_TOKEN}").as_str()], "{} {}", r.method, r.path);
        let users: Vec<&str> =
            r.headers.iter().filter(|(k, _)| k == "impersonate-user").map(|(_, v)| v.as_str()).collect();
        assert_eq!(users, vec!["kubegate:admin"], "{} {}", r.method, r.path);
        assert!(!r.headers.iter().any(|(k, v)| k == "impersonate-group" && v == "system:masters"));
        assert_eq!(r.effective.as_ref().unwrap().name, "kubegate:admin");
    }
}
