//! The download's HTTP details, without I/O: which environments the query asks for, which format
//! the `Accept` header wants, and the `Content-Disposition` that names the file.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::Selection;

/// Most ids one query may name.
pub const MAX_IDS: usize = 10_000;

const IDS_HELP: &str = "a list of environment ids, like ids=[1,3] or ids=1&ids=3";

/// Reads `ids=[1,3]`, `ids=1&ids=3`, `ids=1,3` (and `ids[]=`), or the same with `excludeIds`.
/// Both at once, malformed ids and unknown parameters are refused with a message for a 400.
pub fn parse_selection(query: Option<&str>) -> Result<Selection, String> {
    let mut ids: Option<Vec<u64>> = None;
    let mut excluded: Option<Vec<u64>> = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let (target, name) = match key.as_ref() {
            "ids" | "ids[]" => (&mut ids, "ids"),
            "excludeIds" | "excludeIds[]" => (&mut excluded, "excludeIds"),
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(format!("unknown query parameter {shown:?}; use ids or excludeIds"));
            }
        };
        let list = target.get_or_insert_with(Vec::new);
        list.extend(parse_ids(&value).map_err(|()| format!("{name} must be {IDS_HELP}"))?);
        if list.len() > MAX_IDS {
            return Err(format!("{name} names more than {MAX_IDS} environments"));
        }
    }
    match (ids, excluded) {
        (Some(_), Some(_)) => Err("give ids or excludeIds, not both".into()),
        (Some(ids), None) => Ok(Selection::Only(ids)),
        (None, Some(excluded)) => Ok(Selection::Except(excluded)),
        (None, None) => Ok(Selection::All),
    }
}

fn parse_ids(value: &str) -> Result<Vec<u64>, ()> {
    let value = value.trim();
    if value.starts_with('[') {
        return serde_json::from_str::<Vec<u64>>(value).map_err(|_| ());
    }
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value.split(',').map(|part| part.trim().parse::<u64>().map_err(|_| ())).collect()
}

/// The format of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// YAML with this `Content-Type`.
    Yaml(&'static str),
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml(ct) => ct,
        }
    }
}

/// YAML when `Accept` asks for it (`text/yaml`, `application/yaml`, or their `x-` forms) at
/// least as much as for JSON; JSON otherwise.
pub fn negotiate(accept: Option<&str>) -> Format {
    let mut yaml: Option<(f32, &'static str)> = None;
    let mut json = 0.0f32;
    for range in accept.unwrap_or_default().split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let content_type = match media.as_str() {
            "text/yaml" | "text/x-yaml" => "text/yaml; charset=utf-8",
            "application/yaml" | "application/x-yaml" => "application/yaml",
            "application/json" => {
                json = json.max(q);
                continue;
            }
            _ => continue,
        };
        if q > 0.0 && yaml.is_none_or(|(best, _)| q > best) {
            yaml = Some((q, content_type));
        }
    }
    match yaml {
        Some((q, content_type)) if q >= json => Format::Yaml(content_type),
        _ => Format::Json,
    }
}

/// RFC 8187 `attr-char`: everything else is percent-encoded in `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="<user>-kubeconfig.yaml"`, safe for a header whatever the user name:
/// quotes, backslashes, path separators, `%`, controls and non-ASCII become `_` in `filename`,
/// and when that changed anything the exact name follows as RFC 6266 `filename*=UTF-8''…`.
pub fn content_disposition(user: &str) -> String {
    let file = format!("{user}-kubeconfig.yaml");
    // Path separators never belong in a file name, not even the exact one.
    let exact: String = file.chars().map(|c| if matches!(c, '/' | '\\') { '_' } else { c }).collect();
    let fallback: String = exact
        .chars()
        .map(|c| if c == ' ' || (c.is_ascii_graphic() && !matches!(c, '"' | '%')) { c } else { '_' })
        .collect();
    if fallback == exact {
        format!("attachment; filename=\"{fallback}\"")
    } else {
        format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
            utf8_percent_encode(&exact, ATTR_CHAR)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_way_of_naming_ids() {
        assert_eq!(parse_selection(None), Ok(Selection::All));
        assert_eq!(parse_selection(Some("")), Ok(Selection::All));
        assert_eq!(parse_selection(Some("ids=[1,3]")), Ok(Selection::Only(vec![1, 3])));
        assert_eq!(parse_selection(Some("ids=%5B1%2C%203%5D")), Ok(Selection::Only(vec![1, 3])));
        assert_eq!(parse_selection(Some("ids=3&ids=1")), Ok(Selection::Only(vec![3, 1])));
        assert_eq!(parse_selection(Some("ids[]=3&ids[]=1")), Ok(Selection::Only(vec![3, 1])));
        assert_eq!(parse_selection(Some("ids=1,3")), Ok(Selection::Only(vec![1, 3])));
        assert_eq!(parse_selection(Some("ids=[]")), Ok(Selection::Only(vec![])));
        assert_eq!(parse_selection(Some("excludeIds=[2]")), Ok(Selection::Except(vec![2])));
    }

    #[test]
    fn malformed_or_conflicting_queries_are_refused() {
        assert_eq!(
            parse_selection(Some("ids=[1]&excludeIds=[2]")),
            Err("give ids or excludeIds, not both".into())
        );
        for bad in [
            "ids=abc",
            "ids=[1,",
            "ids=-1",
            "ids=[1.5]",
            "ids=1;2",
            "excludeIds=[\"1\"]",
            "ids=99999999999999999999",
        ] {
            let err = parse_selection(Some(bad)).unwrap_err();
            assert!(err.contains("must be a list of environment ids"), "{bad}: {err}");
        }
        let err = parse_selection(Some("token=abc")).unwrap_err();
        assert!(err.contains("unknown query parameter \"token\""), "{err}");
    }

    #[test]
    fn yaml_only_when_asked() {
        assert_eq!(negotiate(None), Format::Json);
        assert_eq!(negotiate(Some("*/*")), Format::Json);
        assert_eq!(negotiate(Some("application/json")), Format::Json);
        assert_eq!(negotiate(Some("text/yaml")), Format::Yaml("text/yaml; charset=utf-8"));
        assert_eq!(negotiate(Some("application/yaml")), Format::Yaml("application/yaml"));
        assert_eq!(negotiate(Some("Application/X-YAML")), Format::Yaml("application/yaml"));
        assert_eq!(negotiate(Some("application/json, text/yaml;q=0.5")), Format::Json);
        assert_eq!(
            negotiate(Some("application/json;q=0.5, text/yaml")),
            Format::Yaml("text/yaml; charset=utf-8")
        );
        assert_eq!(negotiate(Some("text/yaml, */*")), Format::Yaml("text/yaml; charset=utf-8"));
        assert_eq!(negotiate(Some("text/yaml;q=0")), Format::Json);
    }

    #[test]
    fn file_names_are_safe_in_a_header() {
        assert_eq!(content_disposition("alice"), "attachment; filename=\"alice-kubeconfig.yaml\"");
        assert_eq!(content_disposition("o brien"), "attachment; filename=\"o brien-kubeconfig.yaml\"");
        assert_eq!(
            content_disposition("say \"hi\""),
            "attachment; filename=\"say _hi_-kubeconfig.yaml\"; filename*=UTF-8''say%20%22hi%22-kubeconfig.yaml"
        );
        assert_eq!(
            content_disposition("Jürgen"),
            "attachment; filename=\"J_rgen-kubeconfig.yaml\"; filename*=UTF-8''J%C3%BCrgen-kubeconfig.yaml"
        );
        assert_eq!(content_disposition("../etc\\x"), "attachment; filename=\".._etc_x-kubeconfig.yaml\"");
        for user in ["a;b", "100%", "é\"\\/;:,", "🚀", "a\tb"] {
            let value = content_disposition(user);
            assert!(http::HeaderValue::from_str(&value).is_ok(), "{value}");
            assert!(value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()), "{value}");
        }
    }
}
