//! How to reach NATS: servers, credentials and TLS. Parsed once by each service's config.

use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Default)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// Connection name shown by the server (`kubegate-identity`, …).
    pub name: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT + nkey seed), for operator-mode deployments.
    pub creds_file: Option<PathBuf>,
    /// CA bundle that the server's certificate must chain to; enables TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Subject prefix of this connection's reply inboxes (default `_INBOX`). Each service has
    /// its own (`_INBOX_kubegate_<service>`) so the bus permissions can let it read only its
    /// own replies: a stolen proxy credential cannot read kubeconfig's token answers.
    pub inbox_prefix: Option<String>,
    /// Subject prefix of the replies to this connection's RPC requests (`Bus::request`), when
    /// they must not go to its inbox: `kubegate.rpc.replies.<service>`. The bus permissions let
    /// the asked service publish there, and only there, rather than grant it `allow_responses`.
    /// `None`: replies come to the inbox.
    pub rpc_reply_prefix: Option<String>,
}

/// The subject prefix of the answers to a kubegate service's RPC requests: the permissions in
/// `deploy/` let the answering service publish there and only `service` subscribe there.
pub fn service_rpc_reply_prefix(service: &str) -> String {
    format!("kubegate.rpc.replies.{service}")
}

/// The reply-inbox prefix of a kubegate service (`identity`, `kubeconfig`, `proxy`, `audit`):
/// what the NATS permissions in `deploy/` allow that service's user to subscribe to.
pub fn service_inbox_prefix(service: &str) -> String {
    format!("_INBOX_kubegate_{service}")
}

impl NatsConfig {
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> NatsConfig {
        NatsConfig { url: url.into(), name: name.into(), ..Default::default() }
    }

    /// Uses `service`'s own reply-inbox prefix unless one is configured already, and its own
    /// subjects for the answers to its RPC requests.
    pub fn with_service_inbox(mut self, service: &str) -> NatsConfig {
        if self.inbox_prefix.is_none() {
            self.inbox_prefix = Some(service_inbox_prefix(service));
        }
        self.rpc_reply_prefix = Some(service_rpc_reply_prefix(service));
        self
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("creds_file", &self.creds_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("rpc_reply_prefix", &self.rpc_reply_prefix)
            .finish()
    }
}
