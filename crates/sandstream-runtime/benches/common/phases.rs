//! The `oci` backend's phase timings, for the benchmarks: every `*_ms` field of the
//! runtime's debug events (`sandbox create timings`, `sandbox destroy timings`),
//! collected by a tracing subscriber of its own and printed as medians.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Installs the collector as the global subscriber.
pub fn collect() {
    tracing::subscriber::set_global_default(PhaseCollector).expect("no other subscriber");
}

/// Prints the median of each collected phase, and forgets them.
pub fn report() {
    let phases = std::mem::take(&mut *PHASES.lock().unwrap_or_else(|p| p.into_inner()));
    for (message, by_field) in phases {
        let line: Vec<String> = by_field
            .into_iter()
            .map(|(name, mut v)| {
                v.sort_by(f64::total_cmp);
                format!("{}={:.1}", name.trim_end_matches("_ms"), v[v.len() / 2])
            })
            .collect();
        say!("  {message}, p50 of each (ms): {}", line.join("  "));
    }
}

/// Every `*_ms` field of the runtime's debug events, by event message and field name.
static PHASES: Mutex<BTreeMap<String, BTreeMap<String, Vec<f64>>>> = Mutex::new(BTreeMap::new());

/// A tracing subscriber that only collects [`PHASES`].
struct PhaseCollector;

#[derive(Default)]
struct Fields {
    message: String,
    ms: Vec<(String, f64)>,
}

impl tracing::field::Visit for Fields {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name().ends_with("_ms") {
            self.ms.push((field.name().to_string(), value));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for PhaseCollector {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target().starts_with("sandstream_runtime")
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.ms.is_empty() {
            return;
        }
        let mut phases = PHASES.lock().unwrap_or_else(|p| p.into_inner());
        let by_field = phases.entry(fields.message).or_default();
        for (name, v) in fields.ms {
            by_field.entry(name).or_default().push(v);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
