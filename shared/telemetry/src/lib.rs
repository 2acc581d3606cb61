//! Observability for kubegate's services: logs (human or JSON), Prometheus metrics, OpenTelemetry
//! traces exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (with W3C trace context
//! carried in HTTP and NATS headers), and the plain-HTTP admin listener.

pub mod admin;
pub mod propagation;
mod setup;
pub mod signals;

pub use admin::{Readiness, admin_router, serve_admin};
pub use setup::{LogFormat, TelemetryConfig, TelemetryError, TelemetryGuard, init, tracing_enabled};
