//! `GET /api/audit` (admins): the audit timeline — domain events and the proxies' audit records,
//! merged by time, oldest first — with the filters of `kubegate audit` as query parameters, a
//! page at a time. Read from the streams themselves (`kubegate_audit`), never from a copy.

use axum::Json;
use axum::extract::{RawQuery, State};
use kubegate_audit::{AuditError, DEFAULT_PAGE, FilterSpec, MAX_PAGE, Page};

use crate::http::extract::Admin;
use crate::http::{ApiError, AppState};

pub async fn list(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<Page>, ApiError> {
    let mut spec = FilterSpec::default();
    let mut limit = DEFAULT_PAGE;
    let mut cursor: Option<String> = None;
    for (key, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::BadRequest(format!("limit: must be 1 to {MAX_PAGE}")))?;
            }
            "cursor" => cursor = Some(value.into_owned()),
            other => {
                let known =
                    spec.set(other, value.into_owned()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                if !known {
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter {:?}; the filters are {}, with limit and cursor",
                        other.chars().take(64).collect::<String>(),
                        kubegate_audit::filter::PARAMETERS.join(", ")
                    )));
                }
            }
        }
    }
    match kubegate_audit::page(&state.bus, &spec, cursor.as_deref(), limit).await {
        Ok(page) => Ok(Json(page)),
        Err(e @ (AuditError::Filter(_) | AuditError::Cursor)) => Err(ApiError::BadRequest(e.to_string())),
        Err(e @ AuditError::Nats { .. }) => {
            tracing::warn!(error = %e, "audit log unreadable");
            Err(ApiError::Unavailable(format!("the audit log cannot be read now: {e}")))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
