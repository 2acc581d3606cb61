//! Rewrites headers between client and API server: the client's hop-by-hop and identity headers are stripped first, then kubegate's credential and impersonation headers are added.
//!
//! Order matters. Hop-by-hop stripping (RFC 9110 §7.6.1) runs on the CLIENT's headers only,
//! before kubegate adds its own, so `Connection: Impersonate-User, Authorization` removes
//! nothing but the client's copies (capsule-proxy CVE-2022-23652 ran requests as the proxy's
//! own account that way). Dropped from the client, in any letter case: `Connection` and every
//! header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`
//! (kept with `Connection: Upgrade` on an upgrade), `Authorization`, `Impersonate-*`,
//! `X-Remote-*` (request-header authentication), `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, and
//! `Host` (the forwarder sets it).
//!
//! Impersonation values are sent verbatim, one header per value: the API server reads them
//! as they are (`%`, `/`, upper case and UTF-8 included) and never splits on commas. A value
//! that HTTP cannot carry unchanged (empty, control characters, surrounding whitespace) is an
//! error, never sent. `Impersonate-Extra-<key>` keys are percent-encoded, because header names
//! allow few characters and lose their case: the API server lower-cases the key and then
//! percent-decodes it, so kubegate escapes every byte that is not a lower-case token character.

use http::StatusCode;
use http::header::{AUTHORIZATION, CONNECTION, HeaderMap, HeaderName, HeaderValue, UPGRADE};
use thiserror::Error;

#[cfg(test)]
mod tests;

/// Prefix of every impersonated user name, so a kubegate user can never be mistaken for a
/// Kubernetes system user or service account.
pub const USER_PREFIX: &str = "kubegate:";

/// The Kubernetes user name a kubegate user is impersonated as.
pub fn impersonated_user(username: &str) -> String {
    [USER_PREFIX, username].concat()
}

const IMPERSONATE_USER: HeaderName = HeaderName::from_static("impersonate-user");
const IMPERSONATE_UID: HeaderName = HeaderName::from_static("impersonate-uid");
const IMPERSONATE_GROUP: HeaderName = HeaderName::from_static("impersonate-group");
const IMPERSONATE_EXTRA_PREFIX: &str = "impersonate-extra-";

/// The only `system:` group kubegate sends; others (`system:masters`…) would grant the
/// cluster's built-in powers.
const ALLOWED_SYSTEM_GROUP: &str = "system:authenticated";

/// Who the upstream request runs as.
#[derive(Debug, Clone, Copy)]
pub struct Impersonation<'a> {
    /// The kubegate user name; sent as `kubegate:<username>`.
    pub username: &'a str,
    pub uid: Option<&'a str>,
    /// Sent one `Impersonate-Group` header each (see `authz::groups_for`).
    pub groups: &'a [String],
    /// `(key, value)` pairs, one `Impersonate-Extra-<key>` header each; a key may repeat.
    pub extra: &'a [(String, String)],
}

/// Validated impersonation headers, built once per identity (cacheable) and applied to each
/// request by cheap clones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpersonationHeaders {
    user: HeaderValue,
    uid: Option<HeaderValue>,
    groups: Vec<HeaderValue>,
    extra: Vec<(HeaderName, HeaderValue)>,
}

/// Why headers could not be prepared. An identity error is kubegate's fault (500); a client
/// header error is the client's (400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("the impersonated {field} is empty")]
    Empty { field: &'static str },
    #[error(
        "the impersonated {field} contains the control byte 0x{byte:02x} at position {position}; it cannot be sent in a header"
    )]
    ControlCharacter { field: &'static str, byte: u8, position: usize },
    #[error(
        "the impersonated {field} starts or ends with whitespace, which HTTP would strip and so change the identity"
    )]
    SurroundingWhitespace { field: &'static str },
    #[error(
        "the impersonation group \"{0}\" is reserved by Kubernetes; only system:authenticated may be sent"
    )]
    ReservedGroup(String),
    #[error("the upstream credential contains a control character")]
    InvalidCredential,
    #[error("the client header {0} contains NUL, CR, LF or another control character")]
    ClientHeaderControl(HeaderName),
    #[error("an upgrade was requested but the client sent no Upgrade header")]
    MissingUpgrade,
}

impl HeaderError {
    /// The HTTP status the proxy answers with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            HeaderError::ClientHeaderControl(_) | HeaderError::MissingUpgrade => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ImpersonationHeaders {
    pub fn new(identity: &Impersonation<'_>) -> Result<Self, HeaderError> {
        check_identity_value("user name", identity.username)?;
        let user = header_value(impersonated_user(identity.username), "user name")?;
        let uid = identity
            .uid
            .map(|uid| {
                check_identity_value("uid", uid)?;
                header_value(uid.to_string(), "uid")
            })
            .transpose()?;
        let groups = identity
            .groups
            .iter()
            .map(|group| {
                check_identity_value("group", group)?;
                if group.starts_with("system:") && group != ALLOWED_SYSTEM_GROUP {
                    return Err(HeaderError::ReservedGroup(group.clone()));
                }
                header_value(group.clone(), "group")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let extra = identity
            .extra
            .iter()
            .map(|(key, value)| {
                check_identity_value("extra key", key)?;
                check_identity_value("extra value", value)?;
                Ok((extra_header_name(key)?, header_value(value.clone(), "extra value")?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImpersonationHeaders { user, uid, groups, extra })
    }

    /// The `Impersonate-User` value, `kubegate:<username>`.
    pub fn user(&self) -> &HeaderValue {
        &self.user
    }

    fn header_count(&self) -> usize {
        1 + usize::from(self.uid.is_some()) + self.groups.len() + self.extra.len()
    }

    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(IMPERSONATE_USER, self.user.clone());
        if let Some(uid) = &self.uid {
            headers.insert(IMPERSONATE_UID, uid.clone());
        }
        for group in &self.groups {
            headers.append(IMPERSONATE_GROUP, group.clone());
        }
        for (name, value) in &self.extra {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Build the headers of the upstream request from the client's.
///
/// `upgrade` says the request is an upgrade kubegate forwards (exec, attach, port-forward over
/// WebSocket or SPDY; see [`is_upgrade_request`]): then `Connection: Upgrade` and the client's
/// `Upgrade` are kept, and nothing else `Connection` names. `credential` is the environment's
/// `Authorization` value (`Bearer …`), or `None` when kubegate authenticates with a client
/// certificate; it is marked sensitive so it is never logged or HPACK-indexed.
pub fn prepare_upstream_headers(
    client: &HeaderMap,
    upgrade: bool,
    identity: &ImpersonationHeaders,
    credential: Option<&HeaderValue>,
) -> Result<HeaderMap, HeaderError> {
    let mut out = HeaderMap::with_capacity(client.len() + identity.header_count() + 3);
    let has_connection = client.contains_key(CONNECTION);
    for (name, value) in client {
        if is_dropped_request_header(name) || (has_connection && named_by_connection(client, name)) {
            continue;
        }
        if has_control_bytes(value) {
            return Err(HeaderError::ClientHeaderControl(name.clone()));
        }
        out.append(name.clone(), value.clone());
    }
    if upgrade {
        let mut offered = false;
        for value in client.get_all(UPGRADE) {
            if has_control_bytes(value) {
                return Err(HeaderError::ClientHeaderControl(UPGRADE));
            }
            out.append(UPGRADE, value.clone());
            offered = true;
        }
        if !offered {
            return Err(HeaderError::MissingUpgrade);
        }
        out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    if let Some(credential) = credential {
        if has_control_bytes(credential) {
            return Err(HeaderError::InvalidCredential);
        }
        let mut credential = credential.clone();
        credential.set_sensitive(true);
        out.insert(AUTHORIZATION, credential);
    }
    identity.apply(&mut out);
    Ok(out)
}

/// Why a request's target authority and its `Host` header disagree, if they do: h2
/// `:authority` (or an HTTP/1.1 absolute-form target) naming one host while `Host` names
/// another, or several `Host` headers. Such a request is refused (400) rather than routed by
/// one name and logged or checked by the other.
pub fn authority_conflict(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some("the request has more than one Host header".into());
    }
    let (Some(authority), Some(host)) = (uri.authority(), host) else { return None };
    if host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()) {
        return None;
    }
    Some(format!(
        "the request names two hosts: {:?} in its target and {:?} in its Host header",
        authority.as_str(),
        String::from_utf8_lossy(host.as_bytes())
    ))
}

/// Whether the client asks for a protocol upgrade: `Connection` lists `upgrade` and an
/// `Upgrade` header is present.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && connection_tokens(headers).any(|token| token.eq_ignore_ascii_case(b"upgrade"))
}

/// Strip hop-by-hop headers from an upstream response, except on a `101 Switching Protocols`,
/// whose `Connection`, `Upgrade` and `Sec-WebSocket-*` headers the client needs unchanged.
pub fn strip_response_hop_by_hop(status: StatusCode, headers: &mut HeaderMap) {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    // One pass over the names present (an answer usually has none to remove), rather than a
    // lookup for every name that could be.
    let has_connection = headers.contains_key(CONNECTION);
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(&name.as_str())
                || name.as_str().starts_with("proxy-")
                || (has_connection && named_by_connection(headers, name))
        })
        .cloned()
        .collect();
    for name in named {
        headers.remove(name);
    }
}

const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn is_dropped_request_header(name: &HeaderName) -> bool {
    // `HeaderName` is always lower case, whatever the client sent.
    let name = name.as_str();
    HOP_BY_HOP.contains(&name)
        || matches!(name, "authorization" | "forwarded" | "x-real-ip" | "host")
        || name.starts_with("proxy-")
        || name.starts_with("impersonate-")
        || name.starts_with("x-remote-")
        || name.starts_with("x-forwarded-")
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|token| !token.is_empty())
}

fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    connection_tokens(headers).any(|token| token.eq_ignore_ascii_case(name))
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// NUL, CR, LF and the other control bytes (HTAB is legal in a field value).
fn has_control_bytes(value: &HeaderValue) -> bool {
    value.as_bytes().iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

fn check_identity_value(field: &'static str, value: &str) -> Result<(), HeaderError> {
    if value.is_empty() {
        // An empty Impersonate-User would make the API server skip impersonation entirely and
        // run the request as kubegate itself.
        return Err(HeaderError::Empty { field });
    }
    if let Some((position, &byte)) =
        value.as_bytes().iter().enumerate().find(|(_, b)| **b < 0x20 || **b == 0x7f)
    {
        return Err(HeaderError::ControlCharacter { field, byte, position });
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(HeaderError::SurroundingWhitespace { field });
    }
    Ok(())
}

fn header_value(value: String, field: &'static str) -> Result<HeaderValue, HeaderError> {
    // Checked already; a failure here would mean a byte `check_identity_value` let through.
    HeaderValue::try_from(value).map_err(|_| HeaderError::ControlCharacter { field, byte: 0, position: 0 })
}

/// RFC 9110 `tchar`, minus upper case (header names are case-insensitive) and `%` (the escape).
fn is_plain_key_byte(b: u8) -> bool {
    b.is_ascii_lowercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// `impersonate-extra-<key>` with the key percent-encoded so that the API server's
/// lower-case-then-`PathUnescape` gives back exactly `key`.
fn extra_header_name(key: &str) -> Result<HeaderName, HeaderError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = Vec::with_capacity(IMPERSONATE_EXTRA_PREFIX.len() + key.len() * 3);
    name.extend_from_slice(IMPERSONATE_EXTRA_PREFIX.as_bytes());
    for &b in key.as_bytes() {
        if is_plain_key_byte(b) {
            name.push(b);
        } else {
            name.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    HeaderName::from_bytes(&name).map_err(|_| HeaderError::ControlCharacter {
        field: "extra key",
        byte: 0,
        position: 0,
    })
}
