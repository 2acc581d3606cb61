//! Request classification on any method, path and query: never panics, and what it authorizes
//! is what is forwarded — the forwarded path is the classified one byte for byte, survives
//! being put into the upstream URI unchanged, and classifies to the same request again.
#![no_main]

use http::Method;
use kubegate_fuzz::request_info::classify;
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let method: Method = METHODS[usize::from(first) % METHODS.len()].parse().expect("method");
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let Ok(classified) = classify(&method, path, query) else { return };
    let forwarded = classified.forward_path;
    assert_eq!(forwarded, if path.is_empty() { "/" } else { path }, "forwarded another path");
    // The upstream URI (environment base + path + query) must carry exactly that path.
    let uri = match query {
        Some(q) => format!("https://upstream.example:6443{forwarded}?{q}"),
        None => format!("https://upstream.example:6443{forwarded}"),
    };
    if let Ok(uri) = uri.parse::<http::Uri>() {
        assert_eq!(uri.path(), forwarded, "the URI changed the forwarded path");
        let again = classify(&method, uri.path(), uri.query()).expect("forwarded path classifies");
        assert_eq!(format!("{:?}", again.info), format!("{:?}", classified.info), "classified differently");
    }
});
