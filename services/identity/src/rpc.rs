//! Identity's answers over NATS request/reply: kubeconfig tokens for the kubeconfig service.

use kubegate_bus::{Bus, RpcFailure};
use kubegate_events::Actor;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::domain::{Command, DomainError};
use crate::engine::{Engine, EngineError, ModelError, Origin};

/// Subject of the token request. Only the kubeconfig service may publish on it.
pub const ISSUE_TOKEN_SUBJECT: &str = "kubegate.rpc.identity.kubeconfig-token.issue";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssueTokenRequest {
    pub user_id: u64,
    /// The user's name as the caller knows it: recorded as who asked, checked against the user.
    pub username: String,
    pub environment_ids: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    pub token: String,
    pub token_id: String,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token_id", &self.token_id)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn failure(e: EngineError) -> RpcFailure {
    let status = match &e {
        EngineError::Domain(ModelError::Domain(DomainError::Invalid(_))) => 400,
        EngineError::Domain(ModelError::Domain(DomainError::NotFound(_))) => 404,
        EngineError::Domain(ModelError::Domain(DomainError::Conflict(_))) | EngineError::Contended => 409,
        EngineError::Unavailable(_) | EngineError::Stopped => 503,
        EngineError::Domain(ModelError::Key(_)) => 500,
    };
    RpcFailure { status, message: e.to_string() }
}

/// Serves token requests until `shutdown`.
pub async fn serve(bus: Bus, engine: Engine, shutdown: CancellationToken) {
    let result = bus
        .serve(
            ISSUE_TOKEN_SUBJECT,
            "kubegate-identity",
            shutdown,
            move |req: IssueTokenRequest, correlation: String| {
                let engine = engine.clone();
                async move {
                    let token_id = uuid::Uuid::now_v7().to_string();
                    let actor = Actor::User { id: req.user_id, name: req.username.clone() };
                    let executed = engine
                        .execute(
                            Command::IssueKubeconfigToken {
                                token_id: token_id.clone(),
                                user_id: req.user_id,
                                username: req.username,
                                environment_ids: req.environment_ids,
                            },
                            Origin { actor, correlation_id: correlation },
                        )
                        .await
                        .map_err(failure)?;
                    let (iat, exp) = executed.outcome.token_times.unwrap_or_default();
                    let token = executed
                        .outcome
                        .token
                        .ok_or_else(|| RpcFailure { status: 500, message: "no token minted".to_string() })?;
                    Ok(IssuedToken {
                        token,
                        token_id,
                        issued_at: chrono::DateTime::from_timestamp(iat, 0).unwrap_or_default(),
                        expires_at: exp.and_then(|e| chrono::DateTime::from_timestamp(e, 0)),
                    })
                }
            },
        )
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "token request service stopped");
    }
}
