//! Label and field selectors: the query-string forms (`labelSelector`, `fieldSelector`) and the
//! object form (`matchLabels` / `matchExpressions`), with Kubernetes' parsing rules.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEquals | Op::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(v), Some(bound)) = (v, self.values.first()) else { return false };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else { return false };
                if self.op == Op::Gt { v > bound } else { v < bound }
            }
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
    /// A selector that matches nothing (a nil object selector).
    nothing: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1;
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1;
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::DoubleEq);
                    i += 2;
                } else {
                    out.push(Tok::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::NotEq);
                    i += 2;
                } else {
                    out.push(Tok::Bang);
                    i += 1;
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r,()<>=!".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                });
            }
        }
    }
    Ok(out)
}

fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn validate_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!("invalid label key \"{k}\": prefix part must be a DNS subdomain"));
        }
    }
    if !valid_name_part(name) {
        return Err(format!(
            "invalid label key \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() || valid_name_part(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: \"{v}\": at key: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

impl LabelSelector {
    /// Everything.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Parses the `labelSelector` query form: `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let toks = lex(s)?;
        let mut reqs = Vec::new();
        let mut i = 0;
        let err = |m: &str| format!("unable to parse requirement: {m}");
        while i < toks.len() {
            let negate = if toks[i] == Tok::Bang {
                i += 1;
                true
            } else {
                false
            };
            let key = match toks.get(i) {
                Some(Tok::Ident(k)) => k.clone(),
                other => return Err(err(&format!("found '{other:?}', expected: identifier"))),
            };
            validate_key(&key).map_err(|e| err(&e))?;
            i += 1;
            if negate {
                reqs.push(Requirement { key, op: Op::DoesNotExist, values: vec![] });
            } else {
                match toks.get(i) {
                    None | Some(Tok::Comma) => reqs.push(Requirement { key, op: Op::Exists, values: vec![] }),
                    Some(t @ (Tok::Eq | Tok::DoubleEq | Tok::NotEq | Tok::Gt | Tok::Lt)) => {
                        let op = match t {
                            Tok::Eq | Tok::DoubleEq => Op::Equals,
                            Tok::NotEq => Op::NotEquals,
                            Tok::Gt => Op::Gt,
                            _ => Op::Lt,
                        };
                        i += 1;
                        let value = match toks.get(i) {
                            Some(Tok::Ident(v)) => {
                                i += 1;
                                v.clone()
                            }
                            None | Some(Tok::Comma) if op == Op::Equals || op == Op::NotEquals => {
                                String::new()
                            }
                            other => return Err(err(&format!("found '{other:?}', expected: identifier"))),
                        };
                        if matches!(op, Op::Gt | Op::Lt) {
                            value
                                .parse::<i64>()
                                .map_err(|_| err(&format!("invalid integer value: {value}")))?;
                        } else {
                            validate_value(&value).map_err(|e| err(&e))?;
                        }
                        reqs.push(Requirement { key, op, values: vec![value] });
                    }
                    Some(t @ (Tok::In | Tok::NotIn)) => {
                        let op = if *t == Tok::In { Op::In } else { Op::NotIn };
                        i += 1;
                        if toks.get(i) != Some(&Tok::Open) {
                            return Err(err("found no '(' after set operator"));
                        }
                        i += 1;
                        let mut values = Vec::new();
                        let mut expect_value = true;
                        loop {
                            match toks.get(i) {
                                Some(Tok::Close) => {
                                    if expect_value && !values.is_empty() {
                                        values.push(String::new());
                                    }
                                    i += 1;
                                    break;
                                }
                                Some(Tok::Comma) => {
                                    if expect_value {
                                        values.push(String::new());
                                    }
                                    expect_value = true;
                                    i += 1;
                                }
                                Some(Tok::Ident(v)) if expect_value => {
                                    validate_value(v).map_err(|e| err(&e))?;
                                    values.push(v.clone());
                                    expect_value = false;
                                    i += 1;
                                }
                                other => return Err(err(&format!("found '{other:?}' in value set"))),
                            }
                        }
                        if values.is_empty() {
                            return Err(err("for 'in', 'notin' operators, values set can't be empty"));
                        }
                        reqs.push(Requirement { key, op, values });
                    }
                    Some(other) => {
                        return Err(err(&format!(
                            "found '{other:?}', expected: '=', '!=', '==', 'in', notin'"
                        )));
                    }
                }
            }
            match toks.get(i) {
                None => break,
                Some(Tok::Comma) => {
                    i += 1;
                    if i == toks.len() {
                        return Err(err("found '', expected: identifier after ','"));
                    }
                }
                Some(other) => {
                    return Err(err(&format!("found '{other:?}', expected: ',' or 'end of string'")));
                }
            }
        }
        Ok(LabelSelector { reqs, nothing: false })
    }

    /// The object form (`metav1.LabelSelector`); `None` (absent) matches nothing.
    pub fn from_object(v: Option<&Value>) -> Result<LabelSelector, String> {
        let Some(v) = v else { return Ok(LabelSelector { reqs: vec![], nothing: true }) };
        if v.is_null() {
            return Ok(LabelSelector { reqs: vec![], nothing: true });
        }
        let mut reqs = Vec::new();
        if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in ml {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![val.as_str().unwrap_or_default().to_string()],
                });
            }
        }
        if let Some(exprs) = v.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                    "In" => Op::In,
                    "NotIn" => Op::NotIn,
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    other => return Err(format!("{other:?} is not a valid label selector operator")),
                };
                reqs.push(Requirement { key, op, values });
            }
        }
        Ok(LabelSelector { reqs, nothing: false })
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(labels))
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.is_everything() {
            return true;
        }
        self.matches(&labels_of(obj))
    }
}

/// `metadata.labels` as a map.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// One `field=value` / `field!=value` term.
#[derive(Debug, Clone, PartialEq)]
struct FieldTerm {
    field: String,
    negate: bool,
    value: String,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                Some(n) => return Err(format!("invalid escape sequence: \\{n}")),
                None => return Err("unterminated escape sequence".to_string()),
            }
        } else if c == ',' || c == '=' {
            return Err(format!("invalid field selector value: unescaped {c}"));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `metadata.name=x,status.phase!=Running` (with `\,` `\=` `\\` escapes).
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for raw in split_unescaped(s, ',') {
            if raw.is_empty() {
                continue;
            }
            let mut found = None;
            for (i, _) in raw.char_indices() {
                let rest = &raw[i..];
                for op in ["!=", "==", "="] {
                    if rest.starts_with(op) {
                        found = Some((i, op));
                        break;
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            let Some((i, op)) = found else {
                return Err(format!("invalid selector: '{s}'; can't understand '{raw}'"));
            };
            let field = raw[..i].trim().to_string();
            let value = unescape_value(&raw[i + op.len()..])?;
            terms.push(FieldTerm { field, negate: op == "!=", value });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value `field` must equal, when the selector pins it (`RequiresExactMatch`).
    pub fn requires_exact_match(&self, field: &str) -> Option<String> {
        self.terms.iter().find(|t| t.field == field && !t.negate).map(|t| t.value.clone())
    }

    /// Fails with Kubernetes' message when a field is not selectable for this resource.
    pub fn check_fields(&self, allowed: &[&str]) -> Result<(), String> {
        for t in &self.terms {
            if t.field != "metadata.name"
                && t.field != "metadata.namespace"
                && !allowed.contains(&t.field.as_str())
            {
                return Err(format!("field label not supported: {}", t.field));
            }
        }
        Ok(())
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let v = field_value(obj, &t.field);
            (v == t.value) != t.negate
        })
    }
}

/// The string value a field selector compares for `field` of `obj`.
pub fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        "source" => "source.component",
        f => f,
    };
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(x) => x,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn label_equality() {
        let l = labels(&[("app", "nginx"), ("tier", "web")]);
        assert!(sel("").matches(&l));
        assert!(sel("app=nginx").matches(&l));
        assert!(sel("app==nginx").matches(&l));
        assert!(!sel("app=busybox").matches(&l));
        assert!(sel("app!=busybox").matches(&l));
        assert!(sel("missing!=x").matches(&l));
        assert!(sel("app=nginx, tier = web").matches(&l));
        assert!(!sel("app=nginx,tier=db").matches(&l));
        assert!(sel("empty=").matches(&labels(&[("empty", "")])));
        assert!(!sel("empty=").matches(&l));
    }

    #[test]
    fn label_sets_and_existence() {
        let l = labels(&[("app", "nginx"), ("example.com/owner", "me")]);
        assert!(sel("app in (nginx,busybox)").matches(&l));
        assert!(!sel("app in (busybox)").matches(&l));
        assert!(sel("app notin (busybox)").matches(&l));
        assert!(!sel("app notin (nginx, x)").matches(&l));
        assert!(sel("other notin (nginx)").matches(&l));
        assert!(sel("app").matches(&l));
        assert!(!sel("other").matches(&l));
        assert!(sel("!other").matches(&l));
        assert!(!sel("!app").matches(&l));
        assert!(sel("example.com/owner=me").matches(&l));
        assert!(sel("n>3").matches(&labels(&[("n", "4")])));
        assert!(!sel("n<3").matches(&labels(&[("n", "4")])));
    }

    #[test]
    fn label_errors() {
        for bad in ["=x", "app in ()", "app in nginx", "a=b,", "app in (a b)", "-bad=x", "a=-x-", "a b"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn object_selectors() {
        let s = LabelSelector::from_object(Some(&json!({
            "matchLabels": {"app": "nginx"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}, {"key": "x", "operator": "DoesNotExist"}]
        })));
        let Ok(s) = s else { panic!("parse") };
        assert!(s.matches(&labels(&[("app", "nginx"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("app", "nginx"), ("tier", "db")])));
        let Ok(none) = LabelSelector::from_object(None) else { panic!("nil") };
        assert!(!none.matches(&labels(&[])));
        let Ok(all) = LabelSelector::from_object(Some(&json!({}))) else { panic!("empty") };
        assert!(all.matches(&labels(&[])));
    }

    #[test]
    fn fields() {
        let pod = json!({"metadata": {"name": "nginx", "namespace": "default"}, "status": {"phase": "Running"}, "spec": {"hostNetwork": false}});
        let Ok(f) = FieldSelector::parse("metadata.name=nginx") else { panic!() };
        assert!(f.matches_object(&pod));
        assert_eq!(f.requires_exact_match("metadata.name").as_deref(), Some("nginx"));
        let Ok(f) = FieldSelector::parse("status.phase!=Running") else { panic!() };
        assert!(!f.matches_object(&pod));
        assert_eq!(f.requires_exact_match("status.phase"), None);
        let Ok(f) = FieldSelector::parse("status.phase==Running,metadata.namespace=default") else {
            panic!()
        };
        assert!(f.matches_object(&pod));
        let Ok(f) = FieldSelector::parse("spec.hostNetwork=false") else { panic!() };
        assert!(f.matches_object(&pod));
        let Ok(f) = FieldSelector::parse(r"metadata.name=a\,b") else { panic!() };
        assert_eq!(f.requires_exact_match("metadata.name").as_deref(), Some("a,b"));
        assert!(FieldSelector::parse("nonsense").is_err());
        let Ok(f) = FieldSelector::parse("spec.foo=x") else { panic!() };
        assert_eq!(f.check_fields(&["status.phase"]), Err("field label not supported: spec.foo".to_string()));
        let Ok(f) = FieldSelector::parse("") else { panic!() };
        assert!(f.is_everything());
    }
}
