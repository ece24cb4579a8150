//! Logs: human-readable in a terminal, one JSON object per line with `LOG_FORMAT=json`; with
//! traces on ([`crate::otel`]), every line written inside a traced span carries its `trace_id`
//! and `span_id`.
//!
//! Secrets are kept out by construction: request bodies are never logged, URLs are masked with
//! [`crate::config::mask_url`], and services log ids, not passwords, tokens or hashes.

use std::sync::{Arc, OnceLock};

use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Layer;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;
use crate::otel::{self, Traces};

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. With `traces`,
/// spans are exported too. Calling it twice is harmless (the second call keeps the first
/// subscriber), which tests rely on.
pub fn init(format: LogFormat, traces: Option<&Traces>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let spans = traces.map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer()));
    let dispatch = DispatchCell::default();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(spans)
        .with(dispatch.layer());
    let result = match format {
        LogFormat::Json => registry.with(json_layer(dispatch)).try_init(),
        LogFormat::Text => registry
            .with(
                fmt::layer().event_format(WithTraceIds(dispatch, fmt::format().with_target(false))),
            )
            .try_init(),
    };
    // Already initialised (tests spawn several apps in one process): keep the first.
    let _ = result;
}

/// One JSON object per line, the fields of the event and of its span at the top level.
fn json_layer<S>(dispatch: DispatchCell) -> JsonLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(WithTraceIds(
            dispatch,
            fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false),
        ))
}

type JsonLayer<S> = fmt::Layer<S, JsonFields, WithTraceIds<fmt::format::Format<fmt::format::Json>>>;

/// For command-line tools: human-readable logs on stderr (stdout carries the tool's output, e.g.
/// JSON reports), `warn` unless `RUST_LOG` says otherwise.
pub fn init_for_cli() {
    // lapin logs at ERROR what it also returns as an error, which the CLI reports itself: e.g. the
    // passive declare of a queue that does not exist yet, which `mfe migrate dashboard` asks about
    // every few seconds.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,lapin=off"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
        .try_init();
}

/// A log line format with the ids of the trace and span it is written in, when traced: JSON
/// gets `trace_id` and `span_id` fields, text starts with them.
struct WithTraceIds<F>(DispatchCell, F);

/// The subscriber the logs are written by, as its layers see it when it is made: inside an
/// event's formatting `Span::current()` answers nothing (tracing does not enter a subscriber
/// from within itself), so the span's trace context is asked of the subscriber directly.
#[derive(Clone, Default)]
struct DispatchCell(Arc<OnceLock<WeakDispatch>>);

impl DispatchCell {
    fn layer(&self) -> Registered {
        Registered(self.clone())
    }

    /// The trace and span ids of the span `id`, when it is traced.
    fn ids_of(&self, id: &tracing::span::Id) -> Option<(String, String)> {
        let dispatch = self.0.get()?.upgrade()?;
        otel::ids_of(&tracing_opentelemetry::get_otel_context(id, &dispatch)?)
    }
}

/// Keeps the subscriber in its [`DispatchCell`] when it is registered.
struct Registered(DispatchCell);

impl<S: Subscriber> Layer<S> for Registered {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.0.set(subscriber.downgrade());
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N> + IsJson,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx
            .lookup_current()
            .and_then(|span| self.0.ids_of(&span.id()));
        let Some((trace_id, span_id)) = ids else {
            return self.1.format_event(ctx, writer, event);
        };
        if !self.1.is_json() {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.1.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.1.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}

/// Whether a line format writes JSON objects.
trait IsJson {
    fn is_json(&self) -> bool;
}

impl<T> IsJson for fmt::format::Format<fmt::format::Json, T> {
    fn is_json(&self) -> bool {
        true
    }
}

impl<T> IsJson for fmt::format::Format<fmt::format::Full, T> {
    fn is_json(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The lines `log` writes in JSON, with spans traced (no exporter: ids only).
    fn json_lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let dispatch = DispatchCell::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(dispatch.layer())
            .with(json_layer(dispatch).with_writer(lines.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    #[test]
    fn a_line_inside_a_traced_span_carries_its_trace_and_span_ids() {
        let mut ids = None;
        let lines = json_lines(|| {
            tracing::info!("outside any span");
            let span = tracing::info_span!("request");
            let _in = span.enter();
            ids = otel::current_ids();
            tracing::info!(n = 1, "inside");
        });
        let (trace_id, span_id) = ids.expect("the span is traced");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["n"], 1);
        assert_eq!(trace_id.len(), 32);
        assert_eq!(span_id.len(), 16);
    }

    #[test]
    fn a_context_carried_out_is_continued_by_the_receiving_span() {
        let mut seen = (None, None);
        json_lines(|| {
            let sender = tracing::info_span!("sender");
            let carrier = sender.in_scope(otel::current_carrier);
            let headers = sender.in_scope(otel::outgoing_headers);
            seen.0 = sender.in_scope(otel::current_ids);
            assert!(carrier["traceparent"].starts_with("00-"), "{carrier:?}");
            assert_eq!(
                headers["traceparent"].to_str().unwrap(),
                carrier["traceparent"]
            );
            let receiver = tracing::info_span!(parent: None, "receiver");
            otel::continue_from_headers(&receiver, &headers);
            seen.1 = receiver.in_scope(otel::current_ids);
        });
        let (sent, received) = (seen.0.unwrap(), seen.1.unwrap());
        assert_eq!(sent.0, received.0, "one trace");
        assert_ne!(sent.1, received.1, "two spans");
    }

    #[test]
    fn without_traces_nothing_is_carried() {
        let span = tracing::info_span!("untraced");
        let _in = span.enter();
        assert!(otel::current_carrier().is_empty());
        assert!(otel::outgoing_headers().is_empty());
        assert!(otel::current_ids().is_none());
    }
}
