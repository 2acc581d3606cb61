//! W3C trace context across process boundaries: HTTP headers and NATS message headers.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HttpInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HttpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Adds the current span's trace context (`traceparent`, `tracestate`) to outgoing headers.
pub fn inject_http(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HttpInjector(headers)));
}

/// Makes `span` a child of the trace context found in incoming headers, if any.
pub fn adopt_http_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HttpExtractor(headers)));
    let _ = span.set_parent(parent);
}

/// The same for NATS headers, given as name/value pairs.
pub fn current_context_pairs() -> Vec<(String, String)> {
    let mut headers = http::HeaderMap::new();
    inject_http(&mut headers);
    headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect()
}

/// Makes `span` a child of the trace context in NATS header pairs.
pub fn adopt_pairs_parent(span: &tracing::Span, pairs: &[(String, String)]) {
    let mut headers = http::HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v))
        {
            headers.insert(name, value);
        }
    }
    adopt_http_parent(span, &headers);
}

/// A span for one request, child of the trace context in its headers; `None` when traces are off.
pub fn request_span(
    name: &'static str,
    method: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> Option<tracing::Span> {
    if !crate::tracing_enabled() {
        return None;
    }
    let span = tracing::info_span!("request", otel.name = name, http.method = %method, http.path = %path);
    adopt_http_parent(&span, headers);
    Some(span)
}

/// Adds `span`'s trace context to outgoing headers.
pub fn inject_span(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HttpInjector(headers)));
}
