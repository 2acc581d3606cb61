//! The hot path: `/api/endpoints/{id}/kubernetes/*`. Authenticate the token from the cache,
//! find the environment and the user's grant, classify the request as the API server will,
//! decide, then forward it with kubegate's credential and the user's impersonation headers —
//! streaming both ways, upgrading when the upstream agrees — and audit it exactly once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, USER_AGENT};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use kubegate_events::Actor;
use kubegate_events::audit::{
    AuditEvent, AuditSubject, AuditTarget, Decision as AuditDecision, RequestAudited,
};

use crate::authz::{self, Decision};
use crate::body::{BoxError, CountingBody, Ending, ProxyBody};
use crate::cache::sessions::Holder;
use crate::cache::{Authenticated, Environment, Trust};
use crate::headers::{self, Impersonation, ImpersonationHeaders};
use crate::request_info::{self, RequestInfo, Verb};
use crate::status::Refusal;
use crate::upgrade;
use crate::{Peer, Proxy, filter};

/// Everything the audit record of one request needs, filled in as the request goes.
#[derive(Clone)]
pub(crate) struct Draft {
    pub request_id: String,
    pub started: Instant,
    pub subject: AuditSubject,
    pub target: AuditTarget,
    pub user_agent: Option<String>,
    pub bytes_in: Arc<AtomicU64>,
    client: SocketAddr,
    /// Who the token named, once it is verified.
    user: Option<Actor>,
}

/// `s` cut to at most `max` characters (on a character boundary).
fn at_most(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    match s.char_indices().nth(max) {
        Some((end, _)) => s[..end].to_string(),
        None => s.to_string(),
    }
}

impl Draft {
    fn new(request_id: String, client: &Peer, environment_id: Option<u64>, req: &Request<Incoming>) -> Draft {
        Draft {
            request_id,
            started: Instant::now(),
            subject: AuditSubject { client_address: client.text.to_string(), ..Default::default() },
            target: AuditTarget {
                environment_id,
                verb: req.method().as_str().to_ascii_lowercase(),
                path: at_most(req.uri().path(), 2048),
                ..Default::default()
            },
            user_agent: req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| at_most(s, 256)),
            bytes_in: Arc::new(AtomicU64::new(0)),
            client: client.addr,
            user: None,
        }
    }

    /// Who the record names as the actor: the token's user, or an anonymous caller by address.
    pub fn actor(&self) -> Actor {
        self.user.clone().unwrap_or_else(|| Actor::Anonymous { address: Some(self.client.ip().to_string()) })
    }

    fn authenticated(&mut self, who: &Authenticated) {
        self.subject.user_id = Some(who.user_id);
        self.subject.username = Some(who.user.username.clone());
        self.subject.token_id = Some(who.claims.jti.clone());
        self.user = Some(Actor::User { id: who.user_id, name: who.user.username.clone() });
    }

    fn classified(&mut self, info: &RequestInfo<'_>) {
        match info {
            RequestInfo::Resource(r) => {
                self.target.verb = r.verb.as_str().to_string();
                self.target.api_group = (!r.group.is_empty()).then(|| r.group.to_string());
                self.target.namespace = r.namespace.as_ref().map(|n| n.to_string());
                self.target.resource = Some(r.resource.to_string());
                self.target.subresource = r.subresource.as_ref().map(|s| s.to_string());
                self.target.name = r.name.as_ref().map(|n| n.to_string());
            }
            RequestInfo::NonResource(n) => self.target.verb = n.verb.as_str().to_string(),
        }
    }

    /// The finished record (the draft stays for more records of the same request).
    pub fn record(&self, status: u16, allowed: bool, reason: Option<String>, bytes_out: u64) -> AuditEvent {
        self.clone().finish(status, allowed, reason, bytes_out).0
    }

    /// The finished record, its actor and its correlation id, taking the draft's strings.
    pub fn finish(
        self,
        status: u16,
        allowed: bool,
        reason: Option<String>,
        bytes_out: u64,
    ) -> (AuditEvent, Actor, String) {
        let actor = self.actor();
        let event = AuditEvent::RequestAudited(RequestAudited {
            request_id: self.request_id.clone(),
            subject: self.subject,
            target: self.target,
            decision: if allowed { AuditDecision::Allowed } else { AuditDecision::Denied },
            reason,
            status,
            duration_us: self.started.elapsed().as_micros() as u64,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            user_agent: self.user_agent,
        });
        (event, actor, self.request_id)
    }
}

/// Where a refused request stands: before the decision (denied) or after (allowed, then failed).
struct Failure {
    refusal: Refusal,
    allowed: bool,
    close: bool,
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        Failure { refusal, allowed: false, close: false }
    }
}

fn failed_after_decision(refusal: Refusal) -> Failure {
    Failure { refusal, allowed: true, close: false }
}

/// Serves one Kubernetes API request for environment `env_segment`.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
    client: Peer,
    env_segment: String,
    k8s_path: String,
    request_id: String,
) -> Response<ProxyBody> {
    let environment_id = env_segment.parse::<u64>().ok().filter(|id| *id > 0 && env_segment.len() <= 20);
    let mut draft = Draft::new(request_id, &client, environment_id, &req);
    let id_header = HeaderValue::from_str(&draft.request_id).ok();
    let mut response = match serve(&proxy, req, &mut draft, environment_id, &env_segment, &k8s_path).await {
        Ok(response) => response,
        Err(failure) => {
            let status = failure.refusal.status().as_u16();
            let reason = failure.refusal.to_string();
            let (event, actor, correlation) = draft.finish(status, failure.allowed, Some(reason), 0);
            proxy.auditor.record(event, actor, correlation);
            metrics::counter!("kubegate_proxy_requests_total", "outcome" => if failure.allowed { "failed" } else { "denied" })
                .increment(1);
            let mut response = failure.refusal.response();
            if failure.close {
                response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    // The id of the request's audit record, for the user and for the cluster's audit log.
    if let Some(id) = id_header {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// Header naming the audit record of a request, sent to the client and to the cluster.
pub(crate) const REQUEST_ID: http::header::HeaderName =
    http::header::HeaderName::from_static("x-kubegate-request-id");

async fn serve(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    draft: &mut Draft,
    environment_id: Option<u64>,
    env_segment: &str,
    k8s_path: &str,
) -> Result<Response<ProxyBody>, Failure> {
    let upgrade = headers::is_upgrade_request(req.headers());
    // Answers on a failed upgrade must end the client connection too (CVE-2018-1002105).
    let close_on_failure = |mut f: Failure| {
        f.close = upgrade;
        f
    };
    if let Some(conflict) = headers::authority_conflict(req.uri(), req.headers()) {
        return Err(Failure { refusal: Refusal::BadRequest(conflict), allowed: false, close: true });
    }
    match proxy.cache.trust() {
        Trust::Current => {}
        Trust::CatchingUp => {
            return Err(close_on_failure(
                Refusal::Unavailable("kubegate is still loading its state; try again in a moment".into())
                    .into(),
            ));
        }
        Trust::Untrusted => {
            return Err(close_on_failure(
                Refusal::Unavailable("kubegate cannot trust its state right now; try again shortly".into())
                    .into(),
            ));
        }
    }
    if let Some(max) = proxy.limits.max_staleness
        && let kubegate_bus::ConnectionState::Disconnected { since } = proxy.bus.state()
        && since.elapsed() > max
    {
        return Err(close_on_failure(
            Refusal::Unavailable(format!(
                "kubegate has not heard from its event bus for {}s; refusing until it has",
                since.elapsed().as_secs()
            ))
            .into(),
        ));
    }
    let token = bearer(&req).ok_or_else(|| {
        close_on_failure(
            Refusal::Unauthorized("no bearer token: use the token of your kubegate kubeconfig".into()).into(),
        )
    })?;
    let now = chrono::Utc::now().timestamp();
    let who = proxy
        .cache
        .authenticate(token, now)
        .map_err(|m| close_on_failure(Refusal::Unauthorized(m).into()))?;
    draft.authenticated(&who);
    let Some(environment_id) = environment_id else {
        return Err(close_on_failure(
            Refusal::NotFound(format!("environment {env_segment:?} does not exist")).into(),
        ));
    };
    let env = proxy.cache.environment(environment_id).ok_or_else(|| {
        close_on_failure(Refusal::NotFound(format!("environment {environment_id} does not exist")).into())
    })?;
    let grant = proxy.cache.grant(&who.user, who.user_id, &env);
    draft.subject.role = grant.as_ref().map(|g| g.role);
    // Who the request runs (or would have run) as upstream: named in the record of a denial too.
    let groups = grant.as_ref().map(|g| authz::groups_for(g.role, &proxy.cache.team_names(&who.user)));
    draft.subject.impersonated_user = Some(headers::impersonated_user(&who.user.username));
    draft.subject.impersonated_groups = groups.clone().unwrap_or_default();
    let query = req.uri().query().map(str::to_string);
    let classified = request_info::classify(req.method(), k8s_path, query.as_deref()).map_err(|e| {
        close_on_failure(
            match e.status_code() {
                StatusCode::METHOD_NOT_ALLOWED => Refusal::MethodNotAllowed(e.to_string()),
                _ => Refusal::BadRequest(e.to_string()),
            }
            .into(),
        )
    })?;
    draft.classified(&classified.info);
    let decision = authz::authorize_in_environment(&classified.info, grant.as_ref(), environment_id);
    let filtered: Option<Vec<String>> = match &decision {
        Decision::Allow => None,
        Decision::AllowNamespacesFiltered { namespaces } => Some(namespaces.to_vec()),
        Decision::Deny { reason } => return Err(close_on_failure(Refusal::Forbidden(reason.clone()).into())),
    };
    if grant.is_none() {
        return Err(close_on_failure(Refusal::Forbidden("no grant".into()).into()));
    }
    let resource = classified.info.as_resource();
    let verb = resource.map(|r| r.verb);
    let is_watch = verb == Some(Verb::Watch);
    let is_stream = is_watch
        || (resource.map(|r| r.subresource.as_deref() == Some("log")).unwrap_or(false)
            && query
                .as_deref()
                .map(|q| q.split('&').any(|p| p == "follow=true" || p == "follow=1"))
                .unwrap_or(false));
    let forward_path = classified.forward_path.to_string();

    // Who the request runs as upstream.
    let groups = groups.unwrap_or_default();
    let identity = ImpersonationHeaders::new(&Impersonation {
        username: &who.user.username,
        uid: None,
        groups: &groups,
        extra: &[],
    })
    .map_err(|e| {
        close_on_failure(
            Refusal::Forbidden(format!("your identity cannot be sent to Kubernetes: {e}")).into(),
        )
    })?;

    let upstream = env
        .upstream(&proxy.cache.fleet)
        .map_err(|m| close_on_failure(failed_after_decision(Refusal::Unavailable(m))))?;
    let mut headers =
        headers::prepare_upstream_headers(req.headers(), upgrade, &identity, upstream.authorization.as_ref())
            .map_err(|e| close_on_failure(failed_after_decision(Refusal::BadRequest(e.to_string()))))?;
    if filtered.is_some() {
        filter::prepare_request_headers(&mut headers);
    }
    if let Ok(id) = HeaderValue::from_str(&draft.request_id) {
        headers.insert(REQUEST_ID, id);
    }
    if kubegate_telemetry::tracing_enabled() {
        kubegate_telemetry::propagation::inject_http(&mut headers);
    }
    // Ordinary requests go on the pool's connections in origin form; upgrades and long-lived
    // streams through the general client, which takes the absolute URI.
    let uri = if upgrade || is_stream {
        upstream.uri(&forward_path, query.as_deref())
    } else {
        upstream.origin_uri(&forward_path, query.as_deref())
    }
    .map_err(|e| close_on_failure(failed_after_decision(Refusal::BadRequest(e.to_string()))))?;

    if upgrade {
        return upgrade::forward(proxy, req, headers, uri, &env, &upstream, &who, draft)
            .await
            .map_err(|r| Failure { refusal: r, allowed: true, close: true });
    }

    if let Some(len) =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > proxy.limits.max_body_bytes
    {
        return Err(failed_after_decision(Refusal::BadRequest(format!(
            "request body of {len} bytes is larger than the {} bytes kubegate accepts",
            proxy.limits.max_body_bytes
        ))));
    }
    let watch_slot = if is_watch {
        if !proxy.cache.sessions.try_start_watch(who.user_id, proxy.limits.max_watches_per_user) {
            return Err(failed_after_decision(Refusal::TooManyRequests(format!(
                "you already have {} open watches; close some before starting more",
                proxy.limits.max_watches_per_user
            ))));
        }
        Some(who.user_id)
    } else {
        None
    };
    let end_watch = WatchSlot { proxy: proxy.clone(), user: watch_slot };

    let (req_parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(
        CountingBody::new(body, draft.bytes_in.clone()),
        proxy.limits.max_body_bytes as usize,
    );
    // A request body that breaks on the way in (bad chunk framing, over the size limit) is the
    // client's fault: it gets a 400 and its connection is closed, not a 502.
    let body_error: Arc<std::sync::OnceLock<String>> = Arc::default();
    let body_failed = body_error.clone();
    let limited = limited.map_err(move |e| -> BoxError {
        let _ = body_failed.set(e.to_string());
        e
    });
    let mut upstream_req =
        Request::builder().method(req_parts.method).uri(uri).version(http::Version::HTTP_11);
    if let Some(h) = upstream_req.headers_mut() {
        *h = headers;
    }
    let upstream_req = upstream_req
        .body(limited.boxed())
        .map_err(|e| failed_after_decision(Refusal::BadRequest(e.to_string())))?;
    let body_failure = |upstream_failure: Refusal| match body_error.get() {
        Some(reason) => Failure {
            refusal: Refusal::BadRequest(format!("the request body could not be read: {reason}")),
            allowed: true,
            close: true,
        },
        None => failed_after_decision(upstream_failure),
    };
    let (response, connection) = if is_stream {
        // Long-lived streams go on connections of their own (see `Upstream::stream_client`).
        let (client, lease) = upstream.stream_client();
        let response =
            client.request(upstream_req).await.map_err(|e| body_failure(upstream_error(&env, &e)))?;
        (response, Held::Stream(lease))
    } else {
        match tokio::time::timeout(proxy.limits.request_timeout, upstream.pool().send(upstream_req)).await {
            Ok(Ok((response, lease))) => (response, Held::Pooled(lease)),
            Ok(Err(e)) => return Err(body_failure(upstream_refusal(&env, e.is_connect(), &e.to_string()))),
            Err(_) => {
                return Err(failed_after_decision(Refusal::GatewayTimeout(format!(
                    "environment {environment_id} did not answer within {}s",
                    proxy.limits.request_timeout.as_secs()
                ))));
            }
        }
    };
    let (mut parts, body) = response.into_parts();
    headers::strip_response_hop_by_hop(parts.status, &mut parts.headers);
    let status = parts.status.as_u16();

    let body = match (&filtered, is_watch) {
        (Some(namespaces), false) if parts.status.is_success() => {
            let collected = http_body_util::Limited::new(body, filter::MAX_FILTERED_LIST)
                .collect()
                .await
                .map_err(|e| {
                    failed_after_decision(Refusal::BadGateway(format!("cannot read the namespace list: {e}")))
                })?
                .to_bytes();
            let allowed: HashSet<&str> = namespaces.iter().map(String::as_str).collect();
            let out = filter::filter_list(&collected, &allowed).ok_or_else(|| {
                failed_after_decision(Refusal::BadGateway(
                    "the namespace list could not be read to filter it".into(),
                ))
            })?;
            parts.headers.remove(CONTENT_LENGTH);
            parts.headers.remove(http::header::CONTENT_ENCODING);
            ProxyBody::full(Bytes::from(out))
        }
        (Some(namespaces), true) => {
            parts.headers.remove(CONTENT_LENGTH);
            ProxyBody::stream(filter::WatchFilter::new(body, namespaces))
        }
        _ => ProxyBody::stream(body),
    };

    // Streams are registered so a revocation closes them.
    let session = is_stream.then(|| {
        proxy.cache.open_stream(Holder {
            token_id: who.claims.jti.as_str().into(),
            kid: who.kid.clone(),
            user_id: who.user_id,
            iat: who.claims.iat,
            environment_id,
        })
    });
    let body = match &session {
        Some((_, cancel)) => body.cut_by(cancel.clone()),
        None => body,
    };
    let audit = proxy.auditor.clone();
    let record = DraftRecord::from(draft);
    let session_id = session.map(|(id, _)| id);
    let cache = proxy.cache.clone();
    let body = body.on_done(move |bytes_out, ending| {
        drop(end_watch);
        match connection {
            // Read to its end: the connection can carry the next request.
            Held::Pooled(lease) if ending == Ending::Complete => lease.release(),
            Held::Pooled(lease) => drop(lease),
            Held::Stream(lease) => drop(lease),
        }
        if let Some(id) = session_id {
            cache.sessions.close(id);
        }
        let reason = (ending != Ending::Complete).then(|| format!("stream ended: {}", ending.as_str()));
        let (event, actor, correlation) = record.draft.finish(status, true, reason, bytes_out);
        audit.record(event, actor, correlation);
    });
    metrics::counter!("kubegate_proxy_requests_total", "outcome" => "allowed").increment(1);
    Ok(Response::from_parts(parts, body))
}

/// A draft moved into the body's completion callback (the request is answered: nothing else
/// reads the draft it was taken from).
struct DraftRecord {
    draft: Draft,
}

impl From<&mut Draft> for DraftRecord {
    fn from(d: &mut Draft) -> Self {
        DraftRecord {
            draft: Draft {
                request_id: std::mem::take(&mut d.request_id),
                started: d.started,
                subject: std::mem::take(&mut d.subject),
                target: std::mem::take(&mut d.target),
                user_agent: d.user_agent.take(),
                bytes_in: d.bytes_in.clone(),
                client: d.client,
                user: d.user.take(),
            },
        }
    }
}

/// Gives a watch slot back when dropped.
struct WatchSlot {
    proxy: Arc<Proxy>,
    user: Option<u64>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if let Some(u) = self.user {
            self.proxy.cache.sessions.end_watch(u);
        }
    }
}

/// The bearer token of the `Authorization` header; never from the query string.
pub(crate) fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The upstream connection a request's answer is read from, held until the answer ends.
enum Held {
    /// From the pool: given back when the answer was read to its end.
    Pooled(crate::upstream::Lease),
    /// A place on a long-lived streams' connection.
    Stream(crate::upstream::StreamLease),
}

pub(crate) fn upstream_error(env: &Environment, e: &hyper_util::client::legacy::Error) -> Refusal {
    upstream_refusal(env, e.is_connect(), &crate::upstream::error_chain(e))
}

fn upstream_refusal(env: &Environment, connect: bool, detail: &str) -> Refusal {
    if connect {
        Refusal::BadGateway(format!("environment {} ({}) is unreachable: {detail}", env.id, env.url))
    } else {
        Refusal::BadGateway(format!("environment {} ({}) failed: {detail}", env.id, env.url))
    }
}

#[cfg(test)]
mod tests {
    use super::at_most;

    #[test]
    fn at_most_cuts_on_characters_not_bytes() {
        assert_eq!(at_most("/api/v1/pods", 2048), "/api/v1/pods");
        assert_eq!(at_most("abcdef", 3), "abc");
        assert_eq!(at_most("", 3), "");
        // Four characters of two bytes each: eight bytes, none of them cut.
        assert_eq!(at_most("éééé", 4), "éééé");
        assert_eq!(at_most("éééé", 3), "ééé");
        assert_eq!(at_most("aé€😀b", 4), "aé€😀");
    }
}
