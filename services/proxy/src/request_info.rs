//! Classifies a Kubernetes API request (verb, group, version, namespace, resource, subresource, name) as the API server does, refusing any path whose meaning could differ between kubegate and the API server.
//!
//! The rules mirror `k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`:
//!
//! * `/api/<version>/…` is the core group, `/apis/<group>/<version>/…` a named group; anything
//!   shorter (`/api`, `/api/v1`, `/apis/apps`, `/apis/apps/v1`) or under another prefix
//!   (`/version`, `/openapi/v3/…`) is a non-resource request whose verb is the lower-case method.
//! * After the version, a leading `watch` or `proxy` segment is a special verb.
//! * `namespaces/<ns>/<resource>…` is namespaced; `namespaces/<ns>` and
//!   `namespaces/<ns>/status|finalize` are the namespace object itself (with `namespace` = `<ns>`,
//!   as the API server reports it).
//! * The rest is `resource[/name[/subresource[/…]]]`; the `proxy` special verb takes no subresource.
//! * GET/HEAD without a name is `list`, or `watch` when the first `watch` query value is neither
//!   `0` nor `false` (any case; an empty value means true). For list/watch an exact
//!   `metadata.name` field selector fills in the name. DELETE without a name is `deletecollection`.
//!
//! # Path safety
//!
//! kubegate never normalizes a path: it forwards exactly the bytes it classified, so the only
//! question is whether the API server will read those bytes the same way. Go decodes every
//! `%XX` escape into `URL.Path` before classifying, so the path is accepted only when that
//! decoding cannot change its structure:
//!
//! * it starts with `/`; a single trailing `/` is allowed (the API server trims it too);
//! * no empty segment (`//`), no `.` or `..` segment;
//! * only the RFC 3986 path characters `A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , = : @` and `%`;
//!   so `;` parameters, `#`, `?`, `\`, spaces, control bytes and non-ASCII are refused;
//! * a `%XX` escape must decode to one of those characters other than `.`; so `%2F` (`/`),
//!   `%2E` (`.`), `%25` (double encoding), `%5C`, `%00`, `%3B`… are refused, malformed escapes too.
//!
//! A refused path is a [`RequestError`] (400): the client learns exactly what to fix, and
//! no path is ever authorized as one thing and forwarded as another.
//!
//! The query is forwarded unchanged. Only `watch` and `fieldSelector` influence the
//! classification; everything else (`dryRun=All`, `as=`, `impersonate-user=`, …) changes nothing.
//! A query containing `;` (which Go versions before 1.17 split on and later ones drop), a
//! malformed escape (Go silently drops that pair), `#`, control or non-ASCII bytes is refused,
//! for the same reason: the API server must see the parameters kubegate saw.

use std::borrow::Cow;
use std::fmt;

use http::{Method, StatusCode};
use thiserror::Error;

#[cfg(test)]
mod tests;

/// The Kubernetes verb of a resource request, as RBAC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// The legacy `/api/v1/proxy/…` special verb.
    Proxy,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Proxy => "proxy",
        }
    }

    /// `get`, `list` and `watch`: the verbs that only read.
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verb of a non-resource request: the lower-case HTTP method, as the API server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonResourceVerb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl NonResourceVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            NonResourceVerb::Get => "get",
            NonResourceVerb::Head => "head",
            NonResourceVerb::Post => "post",
            NonResourceVerb::Put => "put",
            NonResourceVerb::Patch => "patch",
            NonResourceVerb::Delete => "delete",
        }
    }
}

impl fmt::Display for NonResourceVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/api` (the core group) or `/apis` (named groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiPrefix {
    Api,
    Apis,
}

impl ApiPrefix {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiPrefix::Api => "api",
            ApiPrefix::Apis => "apis",
        }
    }
}

impl fmt::Display for ApiPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request for an API resource or one of its subresources. Text fields are decoded
/// (`%3A` → `:`) and borrow from the request unless decoding was needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest<'a> {
    pub verb: Verb,
    pub api_prefix: ApiPrefix,
    /// Empty for the core group.
    pub group: Cow<'a, str>,
    pub version: Cow<'a, str>,
    /// `None` for cluster-scoped and all-namespaces requests. For the namespace object itself
    /// (`namespaces/<ns>`) this is `<ns>`, as the API server reports it.
    pub namespace: Option<Cow<'a, str>>,
    pub resource: Cow<'a, str>,
    pub subresource: Option<Cow<'a, str>>,
    /// From the path, or for list/watch from an exact `metadata.name` field selector.
    pub name: Option<Cow<'a, str>>,
    /// The path segments from the resource on: `resource/name/subresource/…`.
    pub parts: Parts<'a>,
}

impl ResourceRequest<'_> {
    pub fn is_core_group(&self) -> bool {
        self.group.is_empty()
    }
}

/// A request outside the resource API (discovery, `/version`, `/openapi/…`, health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonResourceRequest<'a> {
    pub verb: NonResourceVerb,
    /// The decoded path, trailing slash included, exactly as the API server matches it.
    pub path: Cow<'a, str>,
}

/// What a request is, in the API server's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInfo<'a> {
    Resource(ResourceRequest<'a>),
    NonResource(NonResourceRequest<'a>),
}

impl<'a> RequestInfo<'a> {
    pub fn as_resource(&self) -> Option<&ResourceRequest<'a>> {
        match self {
            RequestInfo::Resource(r) => Some(r),
            RequestInfo::NonResource(_) => None,
        }
    }
}

/// A classified request and the exact path to forward: the bytes that were classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    pub info: RequestInfo<'a>,
    /// The path to append to the environment's API server URL. It is the path that was
    /// classified, byte for byte; forward nothing else. The query is forwarded unchanged.
    pub forward_path: &'a str,
}

/// The path segments of a resource request from the resource on, kept as the validated raw
/// text so classification allocates nothing; iterate to get decoded segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a>(&'a str);

impl<'a> Parts<'a> {
    /// The raw (still percent-encoded) segments joined by `/`.
    pub fn raw(&self) -> &'a str {
        self.0
    }

    /// The decoded segments.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        self.0.split('/').map(decode_segment)
    }

    pub fn len(&self) -> usize {
        self.0.split('/').count()
    }

    /// Never true for a classified request: a resource request has at least a resource.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a request was refused before authorization. Each becomes a 400 (405 for the method).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("method {0} is not supported by the Kubernetes API")]
    UnsupportedMethod(Method),
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains an empty segment ('//'); send the path without repeated slashes")]
    EmptySegment,
    #[error(
        "the path contains a '{segment}' segment; kubegate does not resolve dot segments, send the resolved path"
    )]
    DotSegment { segment: &'static str },
    #[error(
        "the path contains {found} at byte {position}; only letters, digits and - . _ ~ ! $ & ' ( ) * + , = : @ are allowed in a path"
    )]
    ForbiddenCharacter { found: String, position: usize },
    #[error(
        "the path contains the escape {escape} ({meaning}) at byte {position}; it could be read differently upstream, send the character unencoded or not at all"
    )]
    ForbiddenEscape { escape: String, meaning: &'static str, position: usize },
    #[error("the path contains a malformed percent-escape at byte {position}")]
    MalformedEscape { position: usize },
    #[error("the query contains {found}; {hint}")]
    MalformedQuery { found: String, hint: &'static str },
    #[error("unable to determine kind and namespace from the path: '{0}' needs a resource after it")]
    Incomplete(&'static str),
}

impl RequestError {
    /// The HTTP status the proxy answers with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            RequestError::UnsupportedMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Classify a request. `path` is what follows `/api/endpoints/<id>/kubernetes` (empty means
/// `/`); `query` is the raw query string without `?`.
pub fn classify<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&'a str>,
) -> Result<Classified<'a>, RequestError> {
    let method = NonResourceVerb::of(method)?;
    let path = if path.is_empty() { "/" } else { path };
    validate_path(path)?;
    let query = Query::parse(query.unwrap_or(""))?;
    let info = classify_validated(method, path, &query)?;
    Ok(Classified { info, forward_path: path })
}

impl NonResourceVerb {
    fn of(method: &Method) -> Result<Self, RequestError> {
        Ok(match *method {
            Method::GET => NonResourceVerb::Get,
            Method::HEAD => NonResourceVerb::Head,
            Method::POST => NonResourceVerb::Post,
            Method::PUT => NonResourceVerb::Put,
            Method::PATCH => NonResourceVerb::Patch,
            Method::DELETE => NonResourceVerb::Delete,
            // The API server serves nothing under other methods; refusing them keeps the verb
            // set closed (it would classify them with an empty verb).
            _ => return Err(RequestError::UnsupportedMethod(method.clone())),
        })
    }

    /// The verb of a resource request before the list/watch/deletecollection refinements.
    fn resource_verb(self) -> Verb {
        match self {
            NonResourceVerb::Get | NonResourceVerb::Head => Verb::Get,
            NonResourceVerb::Post => Verb::Create,
            NonResourceVerb::Put => Verb::Update,
            NonResourceVerb::Patch => Verb::Patch,
            NonResourceVerb::Delete => Verb::Delete,
        }
    }
}

/// Characters allowed verbatim in a path (besides `/` and `%`): RFC 3986 `pchar` without `;`.
fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_escape(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(at + 1)?)?;
    let lo = hex_value(*bytes.get(at + 2)?)?;
    Some(hi << 4 | lo)
}

fn describe_char(text: &str, position: usize) -> String {
    match text.get(position..).and_then(|rest| rest.chars().next()) {
        Some(c) if c.is_ascii_graphic() => format!("'{c}'"),
        Some(c) => format!("{:?} (U+{:04X})", c, c as u32),
        None => "an invalid character".to_string(),
    }
}

fn validate_path(path: &str) -> Result<(), RequestError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RequestError::NotAbsolute);
    };
    let bytes = rest.as_bytes();
    // Offsets below are into `rest`; errors report them as offsets into `path`.
    let mut segment_start = 0;
    let mut i = 0;
    loop {
        match bytes.get(i).copied() {
            None | Some(b'/') => {
                let is_last = i == bytes.len();
                match &bytes[segment_start..i] {
                    // Only the final segment may be empty: the one trailing slash the API
                    // server trims as well.
                    [] if !is_last => return Err(RequestError::EmptySegment),
                    [b'.'] => return Err(RequestError::DotSegment { segment: "." }),
                    [b'.', b'.'] => return Err(RequestError::DotSegment { segment: ".." }),
                    _ => {}
                }
                if is_last {
                    return Ok(());
                }
                segment_start = i + 1;
                i += 1;
            }
            Some(b'%') => {
                let Some(decoded) = decode_escape(bytes, i) else {
                    return Err(RequestError::MalformedEscape { position: i + 1 });
                };
                if decoded == b'.' || !is_path_char(decoded) {
                    return Err(RequestError::ForbiddenEscape {
                        escape: rest[i..i + 3].to_string(),
                        meaning: escape_meaning(decoded),
                        position: i + 1,
                    });
                }
                i += 3;
            }
            Some(b) if is_path_char(b) => i += 1,
            Some(_) => {
                return Err(RequestError::ForbiddenCharacter {
                    found: describe_char(path, i + 1),
                    position: i + 1,
                });
            }
        }
    }
}

fn escape_meaning(decoded: u8) -> &'static str {
    match decoded {
        b'/' => "an encoded '/'",
        b'.' => "an encoded '.'",
        b'%' => "a double encoding",
        b'\\' => "an encoded backslash",
        b';' => "an encoded ';'",
        b'?' | b'#' => "an encoded query or fragment delimiter",
        0..=0x1f | 0x7f => "an encoded control character",
        0x80..=0xff => "an encoded non-ASCII byte",
        _ => "a character not allowed in a path",
    }
}

/// Decode one validated path segment. Validation guarantees every escape is well formed
/// and decodes to an ASCII path character, so this cannot fail.
fn decode_segment(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(decoded) = decode_escape(bytes, i)
        {
            out.push(char::from(decoded));
            i += 3;
            continue;
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    Cow::Owned(out)
}

/// A cursor over validated path segments that can hand back the untouched remainder.
struct Segments<'a> {
    rest: &'a str,
    remaining: usize,
}

impl<'a> Segments<'a> {
    fn new(path: &'a str) -> Self {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let remaining =
            if trimmed.is_empty() { 0 } else { trimmed.bytes().filter(|&b| b == b'/').count() + 1 };
        Segments { rest: trimmed, remaining }
    }

    fn peek(&self) -> Option<&'a str> {
        (self.remaining > 0).then(|| first_segment(self.rest))
    }

    fn peek_nth(&self, n: usize) -> Option<&'a str> {
        if n >= self.remaining {
            return None;
        }
        let mut rest = self.rest;
        for _ in 0..n {
            rest = after_first_segment(rest);
        }
        Some(first_segment(rest))
    }

    fn next(&mut self) -> Option<&'a str> {
        let head = self.peek()?;
        self.rest = after_first_segment(self.rest);
        self.remaining -= 1;
        Some(head)
    }
}

/// `s` up to its first `/` (segments are short: a plain scan beats a searcher's set-up).
fn first_segment(s: &str) -> &str {
    match s.bytes().position(|b| b == b'/') {
        Some(end) => &s[..end],
        None => s,
    }
}

/// `s` after its first segment and the `/` that ends it (empty after the last).
fn after_first_segment(s: &str) -> &str {
    s.get(first_segment(s).len() + 1..).unwrap_or("")
}

fn segment_is(raw: &str, expected: &str) -> bool {
    decode_segment(raw) == expected
}

fn classify_validated<'a>(
    method: NonResourceVerb,
    path: &'a str,
    query: &Query<'_>,
) -> Result<RequestInfo<'a>, RequestError> {
    let non_resource =
        || RequestInfo::NonResource(NonResourceRequest { verb: method, path: decode_segment(path) });
    let mut segments = Segments::new(path);
    if segments.remaining < 3 {
        return Ok(non_resource());
    }
    let api_prefix = match segments.peek().map(decode_segment).as_deref() {
        Some("api") => ApiPrefix::Api,
        Some("apis") => ApiPrefix::Apis,
        _ => return Ok(non_resource()),
    };
    segments.next();
    let group = match api_prefix {
        ApiPrefix::Api => Cow::Borrowed(""),
        ApiPrefix::Apis => {
            // `/apis/<group>/<version>` is group-version discovery, not a resource.
            if segments.remaining < 3 {
                return Ok(non_resource());
            }
            segments.next().map(decode_segment).unwrap_or_default()
        }
    };
    let version = segments.next().map(decode_segment).unwrap_or_default();

    let mut verb = method.resource_verb();
    if let Some(first) = segments.peek() {
        let special = match decode_segment(first).as_ref() {
            "watch" => Some((Verb::Watch, "watch")),
            "proxy" => Some((Verb::Proxy, "proxy")),
            _ => None,
        };
        if let Some((special_verb, word)) = special {
            if segments.remaining < 2 {
                return Err(RequestError::Incomplete(word));
            }
            verb = special_verb;
            segments.next();
        }
    }

    let mut namespace = None;
    if segments.peek().is_some_and(|s| segment_is(s, "namespaces"))
        && let Some(ns) = segments.peek_nth(1)
    {
        namespace = Some(decode_segment(ns));
        // `namespaces/<ns>/<resource>…` is namespaced; `namespaces/<ns>[/status|/finalize]`
        // is the namespace object itself and keeps `namespaces` as its resource.
        let namespaced = segments.peek_nth(2).is_some_and(|s| {
            let s = decode_segment(s);
            s != "status" && s != "finalize"
        });
        if namespaced {
            segments.next();
            segments.next();
        }
    }

    let parts = Parts(segments.rest);
    let mut iter = segments.rest.split('/').map(decode_segment);
    let resource = iter.next().unwrap_or_default();
    let mut name = iter.next();
    let subresource = match verb {
        // The proxy special verb takes everything after the name as the proxied path.
        Verb::Proxy => None,
        _ => iter.next(),
    };

    if name.is_none() && verb == Verb::Get {
        verb = if query.watch()? { Verb::Watch } else { Verb::List };
        name = query.selected_name()?.map(Cow::Owned);
    }
    if name.is_none() && verb == Verb::Delete {
        verb = Verb::DeleteCollection;
    }

    Ok(RequestInfo::Resource(ResourceRequest {
        verb,
        api_prefix,
        group,
        version,
        namespace,
        resource,
        subresource,
        name,
        parts,
    }))
}

/// The query parameters that influence classification, as raw text; they are interpreted
/// only for a GET or HEAD without a name, the one case where the API server reads them.
struct Query<'q> {
    watch: Option<&'q str>,
    field_selector: Option<&'q str>,
}

impl<'q> Query<'q> {
    fn parse(raw: &'q str) -> Result<Self, RequestError> {
        validate_query(raw)?;
        let mut query = Query { watch: None, field_selector: None };
        for pair in raw.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Like Go's url.Values, the first value of a key is the one that counts.
            let slot = match query_unescape(key).as_ref() {
                b"watch" => &mut query.watch,
                b"fieldSelector" => &mut query.field_selector,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        Ok(query)
    }

    /// Any value but `0` and `false` (in any case) means watch; an empty value too.
    fn watch(&self) -> Result<bool, RequestError> {
        let Some(raw) = self.watch else {
            return Ok(false);
        };
        let value = query_unescape(raw);
        // Go compares with Unicode case folding; refusing non-ASCII keeps ours identical.
        if !value.is_ascii() {
            return Err(RequestError::MalformedQuery {
                found: "a non-ASCII watch value".to_string(),
                hint: "use watch=true or watch=false",
            });
        }
        Ok(!(value.as_ref() == b"0" || value.eq_ignore_ascii_case(b"false")))
    }

    fn selected_name(&self) -> Result<Option<String>, RequestError> {
        let Some(raw) = self.field_selector else {
            return Ok(None);
        };
        let selector = String::from_utf8(query_unescape(raw).into_owned()).map_err(|_| {
            RequestError::MalformedQuery {
                found: "a fieldSelector that is not UTF-8".to_string(),
                hint: "percent-encode UTF-8 text only",
            }
        })?;
        Ok(exact_name_from_field_selector(&selector))
    }
}

fn validate_query(raw: &str) -> Result<(), RequestError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                return Err(RequestError::MalformedQuery {
                    found: "';'".to_string(),
                    hint: "separate parameters with '&' and encode ';' as %3B",
                });
            }
            b'#' => {
                return Err(RequestError::MalformedQuery {
                    found: "'#'".to_string(),
                    hint: "a fragment is never sent to a server; encode '#' as %23",
                });
            }
            b'%' => {
                if decode_escape(bytes, i).is_none() {
                    return Err(RequestError::MalformedQuery {
                        found: format!("a malformed percent-escape at byte {i}"),
                        hint: "'%' must be followed by two hexadecimal digits",
                    });
                }
                i += 3;
                continue;
            }
            0x21..=0x7e => {}
            _ => {
                return Err(RequestError::MalformedQuery {
                    found: describe_char(raw, i),
                    hint: "percent-encode spaces, control and non-ASCII characters",
                });
            }
        }
        i += 1;
    }
    Ok(())
}

/// Go's `url.QueryUnescape` on validated text: `+` is a space, `%XX` a byte.
fn query_unescape(raw: &str) -> Cow<'_, [u8]> {
    let bytes = raw.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let Some(decoded) = decode_escape(bytes, i) {
                    out.push(decoded);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// What `fields.ParseSelector(s).RequiresExactMatch("metadata.name")` yields, kept only when
/// the API server would copy it into the request's name (a valid path segment name).
fn exact_name_from_field_selector(selector: &str) -> Option<String> {
    let mut terms = split_selector_terms(selector);
    // The API server sorts the terms before building the selector; the first match wins.
    terms.sort_unstable();
    let mut found: Option<String> = None;
    for term in terms {
        if term.is_empty() {
            continue;
        }
        // Any malformed term makes the whole selector (and so the name) unusable.
        let (field, op, value) = split_selector_term(term)?;
        let value = unescape_selector_value(value)?;
        if found.is_none() && op != "!=" && field == "metadata.name" {
            found = Some(value);
        }
    }
    let name = found?;
    let valid_segment = name != "." && name != ".." && !name.contains('/') && !name.contains('%');
    (valid_segment && !name.is_empty()).then_some(name)
}

fn split_selector_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    if selector.is_empty() {
        return terms;
    }
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn split_selector_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_selector_value(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return None;
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return None,
            c => out.push(c),
        }
    }
    (!escaped).then_some(out)
}
