//! The kubeconfig renderer on any names: whatever the environment and user names contain, the
//! YAML it writes parses (as kubectl's YAML reader and as kubegate's own model) back to the same
//! names, context by context.
#![no_main]

use kubegate_fuzz::kubeconfig_file::{
    BearerToken, Environment, Kubeconfig, KubeconfigRequest, PublicEndpoint, ServerTrust, render,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{0}');
    let user = parts.next().unwrap_or_default().to_string();
    let environments: Vec<Environment> = parts
        .take(8)
        .enumerate()
        .map(|(i, name)| Environment { id: i as u32 + 1, name: name.to_string(), namespace: None })
        .collect();
    if environments.is_empty() {
        return;
    }
    let endpoint = PublicEndpoint::new("https://127.0.0.1:9443", ServerTrust::InsecureSkipTlsVerify).expect("endpoint");
    let token = BearerToken::new("header.payload.signature");
    let request = KubeconfigRequest { user_name: &user, token: &token, endpoint: &endpoint, environments: &environments };
    let Ok(rendered) = render(&request) else { return };
    let yaml = rendered.kubeconfig.to_yaml().expect("renders to YAML");
    let back = Kubeconfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("the YAML does not parse back: {e}\n{yaml}"));
    assert_eq!(back, rendered.kubeconfig, "the YAML parses to another kubeconfig:\n{yaml}");
    let generic: serde_json::Value = serde_saphyr::from_str(&yaml).expect("plain YAML");
    assert_eq!(generic["users"][0]["name"].as_str(), Some(format!("kubegate-{user}").as_str()));
    for (i, (environment, context)) in environments.iter().zip(&rendered.contexts).enumerate() {
        assert_eq!(generic["contexts"][i]["name"].as_str(), Some(context.context_name.as_str()));
        assert_eq!(generic["clusters"][i]["name"].as_str(), Some(context.context_name.as_str()));
        assert!(context.context_name.starts_with(&format!("kubegate-{}", environment.name)));
    }
    assert_eq!(generic["current-context"].as_str(), Some(rendered.contexts[0].context_name.as_str()));
});
