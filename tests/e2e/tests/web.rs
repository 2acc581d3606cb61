//! The web page in a real browser: headless Chromium (Debian's `chromium`), driven over WebDriver
//! by `chromedriver`, against the whole stack through the public origin. Chromium trusts the
//! stack's server certificate by its public key (`--ignore-certificate-errors-spki-list`, which
//! Chromium honours with its own `--user-data-dir`): only that key is accepted, every other
//! certificate error still fails. Screenshots go to `<target dir>/web-screenshots/`;
//! `KUBEGATE_UPDATE_SCREENSHOTS=1` also refreshes the README's copy in `tests/e2e/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt as _;
use kubegate_e2e::*;
use serde_json::{Value, json};
use sha2::Digest as _;

/// How long anything may take before the test gives up (generous: CI runs tests side by side).
const WAIT: Duration = Duration::from_secs(30);
const ESCAPE: &str = "\u{E00C}";
const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";

/// chromedriver (a child of this test) and the Chromium session it runs, with their own profile
/// and download folders.
struct Browser {
    driver: Child,
    client: Option<Client>,
    profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

fn executable(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: `make deps` installs chromium and chromium-driver",
        path.display()
    );
    path
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in `pem`.
fn spki_hash(pem: &str) -> String {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(cert.tbs_certificate.subject_pki.raw))
}

impl Browser {
    async fn start(server_cert_pem: &str) -> Browser {
        let chromium = executable("KUBEGATE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = executable("KUBEGATE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let port = kubegate_testsupport::net::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", profile.path().join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let user_data = profile.path().join("chromium");
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--lang=en-US",
                    "--window-size=1280,860",
                    format!("--user-data-dir={}", user_data.display()),
                    format!("--ignore-certificate-errors-spki-list={}", spki_hash(server_cert_pem)),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let mut browser = Browser { driver, client: None, profile, downloads };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match client {
            Ok(c) => browser.client = Some(c),
            Err(e) => panic!("no Chromium session: {e}\n{}", browser.driver_log()),
        }
        browser
    }

    fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("chromedriver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Ends the session (chromedriver stops Chromium), then chromedriver.
    async fn stop(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
    }

    async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    async fn find(&self, css: &str) -> Element {
        self.c()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.c().find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    /// Waits until the element's text contains `needle`; returns the text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(e) = self.c().find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if t.contains(needle) {
                    return t;
                }
                last = t;
            }
            assert!(Instant::now() < deadline, "{css} never said {needle:?}; it says {last:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.c().find_all(Locator::Css(css)).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "{css} is still there");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, Vec::new()).await.unwrap()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Submits the sign-in form and waits for the answer: an error, or the signed-in page.
    async fn sign_in(&self, user: &str, password: &str) {
        self.type_into("#username", user).await;
        self.type_into("#password", password).await;
        self.click("#sign-in").await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.c().screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits for a finished download named `name`.
    async fn downloaded(&self, name: &str) -> PathBuf {
        let path = self.downloads.path().join(name);
        let deadline = Instant::now() + WAIT;
        loop {
            let partial = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
            if !partial && std::fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false) {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not downloaded into {}",
                self.downloads.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Whatever happened, nothing this test started outlives it: chromedriver by its id, and
        // any Chromium still running with this test's own profile folder.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let marker = format!("--user-data-dir={}", self.profile.path().join("chromium").display());
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.filter_map(|e| e.ok()) {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == marker) {
                    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                }
            }
        }
    }
}

/// `<target dir>/web-screenshots`, from this test binary's place (`<target>/debug/deps/web-…`).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("web-screenshots")
}

/// Retries kubectl until it succeeds (the proxies learn environments and grants from events).
async fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = kubectl(33, kubeconfig, args);
        if out.status.success() {
            return stdout(&out);
        }
        assert!(Instant::now() < deadline, "kubectl {args:?} failed: {}", stderr(&out));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_download_and_the_admin_screens() {
    let started = Instant::now();
    let options = Options {
        environments: 3,
        // A low limit, so the throttling message shows after a few tries.
        identity_env: vec![("KUBEGATE_SIGNIN_MAX_FAILURES_PER_USER".into(), "3".into())],
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    let one = stack.register(0, "one").await;
    let two = stack.register(1, "two").await;
    let three = stack.register(2, "three").await;
    let alice = stack.create_user("alice", "alice-password", "user").await;
    stack
        .set_access(one, json!([{"userId": alice, "role": "standard", "namespaces": ["dev"]}]), json!([]))
        .await;
    stack
        .set_access(
            two,
            json!([{"userId": alice, "role": "read-only", "namespaces": ["default"]}]),
            json!([]),
        )
        .await;
    let server_cert = std::fs::read_to_string(stack.ca_path.with_file_name("server.pem")).unwrap();

    let browser = Browser::start(&server_cert).await;
    let result = std::panic::AssertUnwindSafe(scenario(&stack, &browser, [one, two, three], alice))
        .catch_unwind()
        .await;
    if result.is_err() {
        // What the page showed when it went wrong.
        let shot = browser.screenshot("failure.png").await;
        let html = browser.c().source().await.unwrap_or_default();
        eprintln!("failure screenshot: {}\npage:\n{html}", shot.display());
        eprintln!("chromedriver log (tail):\n{}", browser.driver_log());
    }
    browser.stop().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    eprintln!("web: the whole scenario took {:?}", started.elapsed());
}

async fn scenario(stack: &Stack, b: &Browser, [one, two, three]: [u64; 3], alice: u64) {
    // The page and its assets come through the public origin with their security headers.
    let page = stack.client.get(stack.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let (status, body) = stack.api("GET", "/api/no-such-thing", None, None).await;
    assert_eq!(status, 404, "unknown API paths stay JSON: {body}");
    assert_eq!(body["message"], "no such route");

    // ---- Sign-in: failures show the server's message, throttling too; then success.
    // Chromium accepts the stack's certificate, and no other: the stand-in API server's own
    // certificate still gets the browser's error page.
    b.goto(&stack.sims[0].url()).await;
    let href = b.js("return location.href").await;
    assert!(
        href.as_str().unwrap().starts_with("chrome-error://"),
        "an unknown certificate was accepted: {href}"
    );
    b.goto(&stack.url("/")).await;
    b.find("#username").await;
    assert_eq!(
        b.js("return location.protocol").await,
        "https:",
        "the browser trusts the stack's certificate"
    );
    for _ in 0..3 {
        b.sign_in("mallory", "not-the-password").await;
        b.wait_text("#signin-error", "invalid username or password").await;
    }
    b.sign_in("mallory", "not-the-password").await;
    b.wait_text("#signin-error", "too many failed sign-ins; try again in").await;

    b.sign_in("alice", "wrong-password").await;
    b.wait_text("#signin-error", "invalid username or password").await;
    assert_eq!(
        b.find("#username").await.prop("value").await.unwrap().as_deref(),
        Some("alice"),
        "input kept"
    );
    b.sign_in("alice", "alice-password").await;
    b.wait_text("main h1", "Your environments").await;

    // ---- Home: exactly alice's environments, with role and namespaces.
    b.find("main tr[data-env-id]").await;
    assert_eq!(b.texts("main tbody .env-name").await, ["one", "two"]);
    let rows = b.texts("main tr[data-env-id]").await;
    assert!(rows[0].contains("standard") && rows[0].contains("dev"), "{rows:?}");
    assert!(rows[0].contains(&format!("/api/endpoints/{one}/kubernetes")), "{rows:?}");
    assert!(rows[1].contains("read-only") && rows[1].contains("default"), "{rows:?}");

    // ---- A standard user sees no admin screen, and the admin API refuses the page's session.
    assert_eq!(b.texts("#nav a").await, ["Home"]);
    b.goto(&stack.url("/#/tokens")).await;
    b.wait_text("#admin-only", "for administrators").await;
    assert!(b.c().find_all(Locator::Css("#token-list")).await.unwrap().is_empty());
    let session = b.js("return sessionStorage.getItem('kubegate.session')").await;
    let session = session.as_str().expect("the page keeps its session in sessionStorage");
    for (method, path, body) in [
        ("GET", "/api/settings".to_string(), None),
        ("PUT", "/api/settings".to_string(), Some(json!({"kubeconfigExpiry": "0"}))),
        ("GET", "/api/kubeconfig-tokens?userId=1".to_string(), None),
        ("POST", "/api/users".to_string(), Some(json!({"username": "eve", "password": "eve-password"}))),
        ("POST", "/api/endpoints".to_string(), Some(json!({"name": "x", "url": "https://x", "token": "t"}))),
        ("GET", format!("/api/endpoints/{one}/access"), None),
        ("DELETE", format!("/api/endpoints/{three}"), None),
        ("GET", "/api/audit?kind=token".to_string(), None),
    ] {
        let (status, answer) = stack.api(method, &path, Some(session), body).await;
        assert_eq!(status, 403, "{method} {path} as a standard user: {answer}");
        assert!(answer["message"].is_string(), "{answer}");
    }

    // ---- The dialog: exactly alice's environments, the current expiry, Download File.
    b.goto(&stack.url("/#/")).await;
    b.click("#kubeconfig-button").await;
    b.find("#kubeconfig-dialog").await;
    b.wait_text("#kc-expiry", "expires in 30 days").await;
    assert_eq!(b.texts("#kubeconfig-dialog .env-name").await, ["one", "two"]);
    assert_eq!(
        b.js("return document.activeElement.id").await,
        format!("kc-env-{one}"),
        "focus starts in the list"
    );
    b.click(&format!("#kc-env-{one}")).await;
    b.click(&format!("#kc-env-{two}")).await;
    assert_eq!(b.js("return document.getElementById('kc-all').checked").await, true, "select all follows");
    let dialog_png = b.screenshot("kubeconfig-dialog.png").await;
    if std::env::var_os("KUBEGATE_UPDATE_SCREENSHOTS").is_some() {
        let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots/kubeconfig-dialog.png");
        std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
        std::fs::copy(&dialog_png, keep).unwrap();
    }
    b.click("#kc-download").await;
    let file = b.downloaded("alice-kubeconfig.yaml").await;
    b.wait_gone("#kubeconfig-dialog").await;
    b.wait_text("#home-status", "Saved alice-kubeconfig.yaml").await;

    // Real kubectl reads it: two contexts, and pods are listed through kubegate.
    let contexts = kubectl_ok(&file, &["config", "get-contexts", "-o", "name"]).await;
    let mut contexts: Vec<&str> = contexts.lines().collect();
    contexts.sort();
    assert_eq!(contexts, ["kubegate-one", "kubegate-two"]);
    assert!(kubectl_ok(&file, &["get", "pods"]).await.contains("worker"), "dev's pods in context one");
    assert!(kubectl_ok(&file, &["--context", "kubegate-two", "get", "pods"]).await.contains("nginx"));
    let token_id = jti(&token_of(&file));

    // The home page now lists the file's token among alice's own.
    b.find(&format!("tr[data-token-id='{token_id}']")).await;
    b.screenshot("home.png").await;

    // ---- The admin: settings change what the dialog shows.
    b.click("#sign-out").await;
    b.find("#username").await;
    b.sign_in("admin", ADMIN_PASSWORD).await;
    b.wait_text("main h1", "Your environments").await;
    let nav = b.texts("#nav a").await;
    assert_eq!(nav, ["Home", "Settings", "Kubeconfig tokens", "Environments", "Users & teams", "Audit"]);
    b.goto(&stack.url("/#/settings")).await;
    b.find("#kubeconfig-expiry").await.select_by_value("8760h").await.unwrap();
    b.click("#settings-save").await;
    b.wait_text("#settings-status", "Saved").await;
    b.wait_text("#expiry-current", "expires in 1 year").await;
    b.screenshot("settings.png").await;
    // This time by keyboard: Enter on the button, Tab wraps inside the dialog, Escape closes it.
    b.goto(&stack.url("/#/")).await;
    b.find("#kubeconfig-button").await.send_keys(ENTER).await.unwrap();
    b.wait_text("#kc-expiry", "expires in 1 year").await;
    b.js("document.getElementById('kc-download').focus()").await;
    b.c().active_element().await.unwrap().send_keys(TAB).await.unwrap();
    assert_eq!(b.js("return document.activeElement.id").await, "kc-all", "focus stays in the dialog");
    assert_eq!(
        b.texts("#kubeconfig-dialog .env-name").await,
        ["one", "two", "three"],
        "admins reach every one"
    );
    // Escape closes the dialog and focus returns to the button.
    b.c().active_element().await.unwrap().send_keys(ESCAPE).await.unwrap();
    b.wait_gone("#kubeconfig-dialog").await;
    assert_eq!(b.js("return document.activeElement.id").await, "kubeconfig-button");

    // ---- A failed save shows the server's message and keeps what was typed.
    b.goto(&stack.url("/#/environments")).await;
    b.type_into("#reg-name", "plain-http").await;
    b.type_into("#reg-url", "http://127.0.0.1:1").await;
    b.type_into("#reg-token", "some-token").await;
    b.click("#reg-submit").await;
    let error = b.wait_text("#register-error", "https").await;
    assert!(!error.is_empty());
    assert_eq!(b.find("#reg-name").await.prop("value").await.unwrap().as_deref(), Some("plain-http"));
    assert_eq!(b.find("#reg-url").await.prop("value").await.unwrap().as_deref(), Some("http://127.0.0.1:1"));
    b.screenshot("environments.png").await;

    // The access editor shows the policy as stored and saves it back unchanged.
    b.click(&format!("tr[data-env-id='{one}'] button[aria-label='Access to one']")).await;
    b.find("#access-save").await;
    b.screenshot("access.png").await;
    b.click("#access-save").await;
    b.wait_text("#access-status", "Saved who may reach one").await;
    let (_, policy) =
        stack.api("GET", &format!("/api/endpoints/{one}/access"), Some(&stack.admin), None).await;
    assert_eq!(policy["users"], json!([{"userId": alice, "role": "standard", "namespaces": ["dev"]}]));

    // Renaming an environment sends just the new name.
    b.click(&format!("tr[data-env-id='{three}'] button[aria-label='Edit three']")).await;
    b.type_into("#edit-name", "three-renamed").await;
    b.click("#edit-save").await;
    b.wait_text("#edit-status", "Saved three-renamed").await;
    b.wait_text(&format!("tr[data-env-id='{three}']"), "three-renamed").await;

    // Users and teams: a new user, a new team, alice added to it.
    b.goto(&stack.url("/#/users")).await;
    b.find("#user-list table").await;
    b.type_into("#new-user-name", "bob").await;
    b.type_into("#new-user-password", "bob-password").await;
    b.click("#new-user-submit").await;
    b.wait_text("#new-user-status", "Created bob").await;
    b.wait_text("#user-list", "bob").await;
    b.type_into("#new-team-name", "qa").await;
    b.click("#new-team-submit").await;
    b.wait_text("#new-team-status", "Created team qa").await;
    b.click("#team-list button[aria-label='Edit team qa']").await;
    b.find("#team-candidate").await.select_by_label("alice").await.unwrap();
    b.click("#team-add-member").await;
    b.wait_text("#team-members", "alice").await;
    b.wait_text("#team-list", "alice").await;
    let (_, teams) = stack.api("GET", "/api/teams", Some(&stack.admin), None).await;
    assert_eq!(teams[0]["name"], "qa");
    assert_eq!(teams[0]["memberIds"], json!([alice]));
    let users = b.texts("#user-list tr[data-user-id] td:first-child").await;
    assert!(users.contains(&"admin".to_string()) && users.contains(&"alice".to_string()), "{users:?}");
    b.screenshot("users.png").await;

    // ---- Tokens: alice's token is listed; revoking it makes kubectl get 401.
    b.goto(&stack.url(&format!("/#/tokens?user={alice}"))).await;
    let row = format!("tr[data-token-id='{token_id}']");
    let text = b.wait_text(&row, "active").await;
    assert!(text.contains("alice") && text.contains("one") && text.contains("two"), "{text}");
    b.screenshot("tokens.png").await;
    b.click(&format!("{row} button.revoke")).await;
    b.click("#confirm-ok").await;
    b.wait_text(&format!("{row} .status-cell"), "revoked").await;
    b.wait_text("#tokens-status", "Revoked token").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let out = kubectl(33, &file, &["get", "pods"]);
        // kubectl's words for a 401.
        if !out.status.success() && stderr(&out).contains("You must be logged in to the server") {
            break;
        }
        assert!(Instant::now() < deadline, "the revoked file still works: {}{}", stdout(&out), stderr(&out));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, answer) = stack
        .api(
            "GET",
            &format!("/api/endpoints/{one}/kubernetes/api/v1/namespaces/dev/pods"),
            Some(&token_of(&file)),
            None,
        )
        .await;
    assert_eq!(status, 401, "{answer}");

    // ---- Audit: the same filters as the CLI; the settings change and the revocation are there.
    b.goto(&stack.url("/#/audit?kind=settings")).await;
    audit_shows(b, "changed the kubeconfig expiry from 720h to 8760h").await;
    b.goto(&stack.url("/#/audit?kind=token&user=alice")).await;
    audit_shows(b, &format!("revoked kubeconfig token {token_id} of alice")).await;
    b.screenshot("audit.png").await;
}

/// Searches again until the audit results show `needle` (events reach the streams through the
/// outbox, a moment after the change).
async fn audit_shows(b: &Browser, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = b.texts("#audit-results").await.join("\n");
        if shown.contains(needle) {
            return;
        }
        let errors = b.texts("main .error").await.join("\n");
        assert!(Instant::now() < deadline, "the audit view never showed {needle:?}: {shown}\n{errors}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.click("#audit-search").await;
    }
}
