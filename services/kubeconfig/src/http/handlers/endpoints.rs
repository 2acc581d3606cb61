//! Environments ("endpoints" on the wire, as users of the original UI know them): register,
//! list, read, change, remove. Credentials are sealed to the proxy fleet's key here, before
//! anything else sees them; only the sealed form goes further.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use kubegate_events::access::{EnvironmentRole, Grant};
use kubegate_events::environments::{CredentialKind, SealedCredential};
use kubegate_seal::{SecretString, UpstreamCredential};
use serde::{Deserialize, Serialize};

use super::origin;
use crate::domain::{Command, Environment, grant_for, reachable};
use crate::http::extract::{Admin, ApiJson, Correlation, EnvId, Session};
use crate::http::{ApiError, AppState};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    id: u64,
    name: String,
    url: String,
    insecure_skip_tls_verify: bool,
    has_ca_cert: bool,
    /// Admins only: what kind of credential kubegate holds (never the credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<CredentialView>,
    /// The caller's role here, and their namespaces when the role is limited to some.
    role: EnvironmentRole,
    namespaces: Vec<String>,
}

#[derive(Serialize)]
pub struct CredentialView {
    kind: CredentialKind,
}

fn view(e: &Environment, grant: Grant, admin: bool) -> EnvironmentView {
    EnvironmentView {
        id: e.id,
        name: e.name.clone(),
        url: e.url.clone(),
        insecure_skip_tls_verify: e.insecure_skip_tls_verify,
        has_ca_cert: e.ca_pem.is_some(),
        credential: admin.then_some(CredentialView { kind: e.credential_kind }),
        role: grant.role,
        namespaces: grant.namespaces,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewEnvironment {
    name: String,
    url: String,
    ca_cert: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    token: Option<SecretString>,
    client_cert: Option<String>,
    client_key: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvironmentChange {
    name: Option<String>,
    url: Option<String>,
    ca_cert: Option<String>,
    insecure_skip_tls_verify: Option<bool>,
    token: Option<SecretString>,
    client_cert: Option<String>,
    client_key: Option<SecretString>,
}

/// Validates the credential form and seals it at once. `None` when no credential was given.
fn seal(
    state: &AppState,
    token: Option<SecretString>,
    client_cert: Option<String>,
    client_key: Option<SecretString>,
) -> Result<Option<(SealedCredential, CredentialKind)>, ApiError> {
    let credential = match (token, client_cert, client_key) {
        (None, None, None) => return Ok(None),
        (Some(token), None, None) => UpstreamCredential::token(token.expose_secret().to_string())
            .map_err(|e| ApiError::BadRequest(format!("token: {e}")))?,
        (None, Some(cert), Some(key)) => {
            UpstreamCredential::client_certificate(cert, key.expose_secret().to_string())
                .map_err(|e| ApiError::BadRequest(format!("clientCert/clientKey: {e}")))?
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(ApiError::BadRequest("clientCert and clientKey go together".into()));
        }
        (Some(_), _, _) => {
            return Err(ApiError::BadRequest(
                "give one credential: token, or clientCert with clientKey, not both".into(),
            ));
        }
    };
    let kind = match &credential {
        UpstreamCredential::Token { .. } => CredentialKind::Token,
        UpstreamCredential::ClientCertificate { .. } => CredentialKind::ClientCertificate,
    };
    let sealed = kubegate_seal::seal(&state.fleet, &credential)
        .map_err(|e| ApiError::Internal(format!("cannot seal the credential: {e}")))?;
    Ok(Some((SealedCredential(sealed.into_string()), kind)))
}

pub async fn create(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<NewEnvironment>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let NewEnvironment { name, url, ca_cert, insecure_skip_tls_verify, token, client_cert, client_key } =
        body;
    let (credential, credential_kind) = seal(&state, token, client_cert, client_key)?.ok_or_else(|| {
        ApiError::BadRequest("a credential is required: token, or clientCert with clientKey".into())
    })?;
    let command = Command::RegisterEnvironment {
        name,
        url,
        ca_pem: ca_cert,
        insecure_skip_tls_verify,
        credential,
        credential_kind,
    };
    let executed = state.engine.execute(command, origin(&session, correlation)).await?;
    let id = executed.outcome.created_id.ok_or_else(|| ApiError::Internal("no id allocated".into()))?;
    Ok(Json(serde_json::json!({ "id": id })))
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    let admin = session.is_admin();
    let views = state
        .engine
        .read(move |m| {
            reachable(&m.environments, &m.identity.state, session.user_id)
                .into_iter()
                .map(|(e, g)| view(e, g, admin))
                .collect()
        })
        .await?;
    Ok(Json(views))
}

/// The environment as `session` may see it: 404 when unknown, 403 when out of reach.
pub(crate) async fn visible(
    state: &AppState,
    session: Session,
    id: u64,
) -> Result<EnvironmentView, ApiError> {
    state
        .engine
        .read(move |m| {
            let e = m
                .environments
                .get(id)
                .ok_or_else(|| ApiError::NotFound(format!("environment {id} not found")))?;
            let grant = grant_for(&m.identity.state, session.user_id, e)
                .ok_or_else(|| ApiError::Forbidden(format!("you have no access to environment {id}")))?;
            Ok(view(e, grant, session.is_admin()))
        })
        .await?
}

pub async fn get_one(
    State(state): State<AppState>,
    session: Session,
    EnvId(id): EnvId,
) -> Result<Json<EnvironmentView>, ApiError> {
    visible(&state, session, id).await.map(Json)
}

pub async fn update(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    EnvId(id): EnvId,
    ApiJson(body): ApiJson<EnvironmentChange>,
) -> Result<Json<EnvironmentView>, ApiError> {
    let EnvironmentChange { name, url, ca_cert, insecure_skip_tls_verify, token, client_cert, client_key } =
        body;
    let credential = seal(&state, token, client_cert, client_key)?;
    let command = Command::UpdateEnvironment {
        environment_id: id,
        name,
        url,
        ca_pem: ca_cert,
        insecure_skip_tls_verify,
        credential,
    };
    state.engine.execute(command, origin(&session, correlation)).await?;
    visible(&state, session, id).await.map(Json)
}

pub async fn remove(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    EnvId(id): EnvId,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .execute(Command::RemoveEnvironment { environment_id: id }, origin(&session, correlation))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
