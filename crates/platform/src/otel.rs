//! Distributed traces (OpenTelemetry).
//!
//! Off unless an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): then no OpenTelemetry layer is installed and a span
//! costs what a `tracing` span costs. On, every `tracing` span becomes an OpenTelemetry span,
//! exported in batches over OTLP `http/protobuf`; the standard variables configure it
//! (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`).
//!
//! The context travels as W3C `traceparent`/`tracestate`: read from incoming HTTP requests
//! ([`crate::http`]), written into outgoing ones ([`inject_headers`]) and into events (a
//! [`Carrier`] kept with each outbox row, then in the message's AMQP headers).

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The only OTLP protocol the services speak.
pub const PROTOCOL: &str = "http/protobuf";

const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// The exporting side of traces: kept by the process until it ends, then [`Traces::shutdown`]
/// sends what is still buffered.
#[derive(Clone)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// From the environment: `None` when no OTLP endpoint is set. `service` names the process
    /// unless `OTEL_SERVICE_NAME` does.
    pub fn from_env(service: &str) -> Result<Option<Self>, String> {
        if !ENDPOINT_VARS.iter().any(|v| is_set(v)) {
            return Ok(None);
        }
        for var in PROTOCOL_VARS {
            if let Some(protocol) = value_of(var)
                && protocol != PROTOCOL
            {
                return Err(format!(
                    "{var}={protocol} is not supported: traces are exported over {PROTOCOL}"
                ));
            }
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| format!("the OTLP trace exporter: {e}"))?;
        let name = value_of("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_string());
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(name)
            .build();
        // The sampler is the SDK's default, which reads OTEL_TRACES_SAMPLER.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider }))
    }

    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("mfe")
    }

    /// Sends the spans still buffered; later spans are dropped.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "traces: the last spans could not be exported");
        }
    }
}

fn value_of(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn is_set(var: &str) -> bool {
    value_of(var).is_some()
}

/// A trace context as text fields (`traceparent`, `tracestate`): what an outbox row keeps and an
/// event's headers carry.
pub type Carrier = HashMap<String, String>;

/// The current span's context as a [`Carrier`] (empty when traces are off).
pub fn current_carrier() -> Carrier {
    let mut carrier = Carrier::new();
    propagator().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier
}

/// Writes the current span's context into `headers` of an outgoing HTTP request.
pub fn inject_headers(headers: &mut HeaderMap) {
    propagator().inject_context(
        &tracing::Span::current().context(),
        &mut HeaderInjector(headers),
    );
}

/// The current span's context as the headers of an outgoing HTTP request.
pub fn outgoing_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject_headers(&mut headers);
    headers
}

/// Sends `request` in a client span named `name` (`"POST /charges"`), with the trace context in
/// its headers: the callee's spans join the caller's trace.
pub async fn send(
    name: &'static str,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    let span = tracing::info_span!(
        "call",
        otel.name = name,
        otel.kind = "client",
        http.response.status_code = tracing::field::Empty,
    );
    let request = {
        let _in = span.enter();
        request.headers(outgoing_headers())
    };
    let response = request.send().instrument(span.clone()).await;
    if let Ok(response) = &response {
        span.record("http.response.status_code", response.status().as_u16());
    }
    response
}

/// A span for work that outlives the current span (a task left running after the answer): in
/// the same trace, the current span's child in OpenTelemetry's terms, yet not its child in
/// `tracing`'s, which would keep the current span open (and unexported) until the work ends.
pub fn detached(name: &'static str) -> tracing::Span {
    let span = tracing::info_span!(parent: None, "background", otel.name = name);
    let parent = tracing::Span::current().context();
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// Makes `span` continue the trace whose context `headers` carry (no-op without one).
pub fn continue_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    let parent = propagator().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` continue the trace whose context `carrier` holds (no-op without one).
pub fn continue_from(span: &tracing::Span, carrier: &Carrier) {
    let parent = propagator().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span`, the handling of an event whose headers are `carrier`, continue the event's
/// trace, linked to the span that published it (the messaging conventions' creation context).
pub fn continue_linked(span: &tracing::Span, carrier: &Carrier) {
    let parent = propagator().extract(carrier);
    let producer: SpanContext = parent.span().span_context().clone();
    if producer.is_valid() {
        let _ = span.set_parent(parent);
        span.add_link(producer);
    }
}

/// The trace and span ids of the current span, as hex, when it is being traced.
pub fn current_ids() -> Option<(String, String)> {
    ids_of(&tracing::Span::current().context())
}

/// The trace and span ids of the span of `cx`, as hex, when it is being traced.
pub fn ids_of(cx: &opentelemetry::Context) -> Option<(String, String)> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// W3C trace context. Traces off, a span has no context: nothing is injected, and one extracted
/// has no span to continue.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
