//! Query strings and percent-decoding, decoded once per request.

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). Invalid escapes are kept.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hi = (bytes[i + 1] as char).to_digit(16);
                let lo = (bytes[i + 2] as char).to_digit(16);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decoded `key=value` pairs in order.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let mut pairs = Vec::new();
        for part in raw.split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(k, true), percent_decode(v, true)));
        }
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// A boolean parameter decoded as Kubernetes' parameter codec does: absent is `None`;
    /// `0`, `f` and `false` (any case) are false; anything else, even empty, is true.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| !(v == "0" || v.eq_ignore_ascii_case("f") || v.eq_ignore_ascii_case("false")))
    }

    /// A boolean with a default when absent.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.bool(key).unwrap_or(default)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let q = Query::parse("fieldSelector=metadata.name%3Dnginx&command=echo&command=hi+there&watch=");
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=nginx"));
        assert_eq!(q.all("command"), vec!["echo", "hi there"]);
        assert_eq!(q.bool("watch"), Some(true));
        assert_eq!(q.bool("nope"), None);
        assert_eq!(Query::parse("watch=0").bool("watch"), Some(false));
        assert_eq!(Query::parse("watch=False").bool("watch"), Some(false));
        assert_eq!(Query::parse("watch=1").bool("watch"), Some(true));
        assert_eq!(percent_decode("a%2Fb%zz%", false), "a/b%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }
}
