//! The kubeconfig download: HTTPS only; the environments chosen from what the user may reach; a
//! token issued by identity over NATS request/reply; the download recorded as an event; the
//! file rendered as YAML or JSON.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kubegate_events::environments::KubeconfigDownloaded;
use kubegate_identity::rpc::{ISSUE_TOKEN_SUBJECT, IssueTokenRequest, IssuedToken};

use super::origin;
use crate::domain::{Chosen, Command, choose};
use crate::http::download::{Format, content_disposition, negotiate, parse_selection};
use crate::http::extract::{ClientAddr, Correlation, Https, Session, SessionToken, session_of};
use crate::http::{ApiError, AppState};
use crate::kubeconfig_file::{BearerToken, Environment, KubeconfigRequest, render};

pub async fn download(
    State(state): State<AppState>,
    // First: a request that did not arrive over TLS is refused before anything else is looked at.
    _: Https,
    token: SessionToken,
    ClientAddr(client): ClientAddr,
    Correlation(correlation): Correlation,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Checked after the session: who asks is answered before what they asked for.
    let selection = parse_selection(query.as_deref()).map_err(ApiError::BadRequest);
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));

    // Who is asking and what they may have, in one look at the model.
    let now = chrono::Utc::now().timestamp();
    let (session, chosen): (Session, Vec<Chosen>) = state
        .engine
        .read(move |m| {
            let session = session_of(m, &token, now)?;
            let selection = selection?;
            let chosen = choose(&m.environments, &m.identity.state, session.user_id, &selection)?;
            Ok::<_, ApiError>((session, chosen))
        })
        .await??;
    let user_id = session.user_id;
    let environments: Vec<Environment> = chosen
        .iter()
        .map(|c| {
            let id = u32::try_from(c.id).map_err(|_| {
                ApiError::Internal(format!("environment id {} does not fit a kubeconfig", c.id))
            })?;
            Ok(Environment { id, name: c.name.clone(), namespace: c.namespace.clone() })
        })
        .collect::<Result<_, ApiError>>()?;
    let environment_ids: Vec<u64> = chosen.iter().map(|c| c.id).collect();

    let issued: IssuedToken = state
        .bus
        .request(
            ISSUE_TOKEN_SUBJECT,
            &IssueTokenRequest {
                user_id,
                username: session.username.clone(),
                environment_ids: environment_ids.clone(),
            },
            &correlation,
            state.token_timeout,
        )
        .await
        .map_err(crate::http::error::token_request_failed)?;
    let IssuedToken { token, token_id, expires_at, .. } = issued;
    let token = BearerToken::new(token);

    let rendered = render(&KubeconfigRequest {
        user_name: &session.username,
        token: &token,
        endpoint: &state.endpoint,
        environments: &environments,
    })
    .map_err(|e| ApiError::Internal(format!("cannot render the kubeconfig: {e}")))?;
    let body = match format {
        Format::Json => rendered.kubeconfig.to_json(),
        Format::Yaml(_) => rendered.kubeconfig.to_yaml(),
    }
    .map_err(|e| ApiError::Internal(format!("cannot write the kubeconfig: {e}")))?;

    // No record, no file: every download is in the log.
    let downloaded = KubeconfigDownloaded {
        user_id,
        username: session.username.clone(),
        environment_ids,
        token_id,
        expires_at,
        client_address: client.to_string(),
    };
    state.engine.execute(Command::RecordDownload(downloaded), origin(&session, correlation)).await?;
    metrics::counter!("kubegate_kubeconfig_downloads_total").increment(1);

    let disposition = HeaderValue::from_str(&content_disposition(&session.username))
        .map_err(|e| ApiError::Internal(format!("cannot name the file: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response())
}
