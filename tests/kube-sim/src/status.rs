//! Kubernetes `Status` errors: every failure the API answers is built here, with the message,
//! reason and details shapes the real API server uses (`k8s.io/apimachinery/pkg/api/errors`).

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;

/// An API failure that becomes a `Status` body with the matching HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `resource` or `resource.group` as Kubernetes prints a GroupResource.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), Value::String(name.to_string()));
    }
    if !group.is_empty() {
        d.insert("group".into(), Value::String(group.to_string()));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), Value::String(kind.to_string()));
    }
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// 404 for a named object: `pods "x" not found`.
    pub fn not_found(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", qualified(def.group, def.plural)),
            details: Some(details(def.group, def.plural, name)),
        }
    }

    /// 404 for a namespace that does not exist.
    pub fn namespace_not_found(ns: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("namespaces \"{ns}\" not found"),
            details: Some(details("", "namespaces", ns)),
        }
    }

    /// 404 for a path nothing serves.
    pub fn path_not_found() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", qualified(def.group, def.plural)),
            details: Some(details(def.group, def.plural, name)),
        }
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(def.group, def.plural)
            ),
            details: Some(details(def.group, def.plural, name)),
        }
    }

    /// 422 with field causes: `Pod "x" is invalid: spec.containers: Required value`.
    pub fn invalid(def: &ResourceDef, name: &str, causes: Vec<FieldError>) -> ApiError {
        let joined = if causes.len() == 1 {
            causes[0].to_string()
        } else {
            format!("[{}]", causes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "))
        };
        let mut d = details(def.group, def.kind, name);
        if let Value::Object(m) = &mut d {
            m.insert(
                "causes".into(),
                Value::Array(
                    causes
                        .iter()
                        .map(|c| json!({"reason": c.kind.reason(), "message": c.detail_message(), "field": c.field}))
                        .collect(),
                ),
            );
        }
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{name}\" is invalid: {joined}", qualified_kind(def)),
            details: Some(d),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type})"
            ),
        )
    }

    pub fn not_acceptable() -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            code: 500,
            reason: "InternalError",
            message: format!("Internal error occurred: {message}"),
            details: Some(json!({"causes": [{"message": message}]})),
        }
    }

    /// 410 Expired, as a watch ERROR event or a stale `continue` token.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 403 in the shape of `responsewriters.Forbidden`.
    pub fn forbidden(group: &str, resource: &str, name: &str, message: String) -> ApiError {
        let full = if resource.is_empty() {
            format!("forbidden: {message}")
        } else if name.is_empty() {
            format!("{} is forbidden: {message}", qualified(group, resource))
        } else {
            format!("{} \"{name}\" is forbidden: {message}", qualified(group, resource))
        };
        let d = details(group, resource, name);
        let empty = d.as_object().is_some_and(|m| m.is_empty());
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: full,
            details: if empty { None } else { Some(d) },
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), Value::String(self.message.clone()));
        m.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

fn qualified_kind(def: &ResourceDef) -> String {
    if def.group.is_empty() { def.kind.to_string() } else { format!("{}.{}", def.kind, def.group) }
}

/// One field validation failure (`field.Error`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub value: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Duplicate,
    Forbidden,
    NotSupported,
}

impl FieldErrorKind {
    fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
        }
    }
    fn label(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::NotSupported => "Unsupported value",
        }
    }
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), kind: FieldErrorKind::Required, value: None, detail: detail.into() }
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate,
            value: Some(value.into()),
            detail: String::new(),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            value: None,
            detail: detail.into(),
        }
    }

    /// The cause message: `Invalid value: "Foo": detail`.
    fn detail_message(&self) -> String {
        let mut s = self.kind.label().to_string();
        if let Some(v) = &self.value {
            s.push_str(&format!(": {v:?}"));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    #[test]
    fn not_found_matches_kubernetes() {
        let pods = resources::find("", "pods").map(|(_, d)| d);
        let Some(pods) = pods else { panic!("pods registered") };
        let s = ApiError::not_found(pods, "nosuch").to_status();
        assert_eq!(s["message"], "pods \"nosuch\" not found");
        assert_eq!(s["details"], json!({"name": "nosuch", "kind": "pods"}));
        assert_eq!(s["code"], 404);
    }

    #[test]
    fn forbidden_shapes() {
        let e = ApiError::forbidden(
            "",
            "pods",
            "",
            "User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
                .into(),
        );
        assert_eq!(
            e.message,
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
        );
        let e = ApiError::forbidden("apps", "deployments", "web", "x".into());
        assert_eq!(e.message, "deployments.apps \"web\" is forbidden: x");
        let e = ApiError::forbidden("", "", "", "User \"x\" cannot get path \"/api\"".into());
        assert_eq!(e.message, "forbidden: User \"x\" cannot get path \"/api\"");
        assert!(e.details.is_none());
    }

    #[test]
    fn invalid_message() {
        let Some((_, pods)) = resources::find("", "pods") else { panic!("pods") };
        let e = ApiError::invalid(pods, "x", vec![FieldError::required("spec.containers", "")]);
        assert_eq!(e.message, "Pod \"x\" is invalid: spec.containers: Required value");
        assert_eq!(e.code, 422);
    }
}
