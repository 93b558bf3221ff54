//! The Prometheus text exposition format, version 0.0.4: each family opens with its
//! `# HELP` and `# TYPE` lines, then one `name{label="value"} number` line per sample;
//! a histogram is its cumulative `_bucket` lines (the last one `le="+Inf"`), `_sum` and
//! `_count`. Label values and help text are escaped as the format says, so no value can
//! end a line or a label early.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram of durations in seconds, lock-free: one count per bucket (not
/// cumulative; summed when written), the overflow last, and the sum in nanoseconds.
/// Its count is the sum of its buckets, so `_count` always equals the `+Inf` bucket.
pub(crate) struct Histogram {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// `bounds.len() + 1` counts: observations in (previous bound, bound], then above
    /// the last bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One exposition being written.
#[derive(Default)]
pub(crate) struct Text {
    out: String,
}

impl Text {
    /// Opens a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample of a counter or gauge.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.line(name, labels, None, value);
    }

    /// A histogram's samples: cumulative buckets ending in `+Inf`, the sum, the count.
    pub(crate) fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = match h.bounds.get(i) {
                Some(bound) => bound.to_string(),
                None => "+Inf".to_string(),
            };
            self.line(&bucket, labels, Some(("le", &le)), cumulative);
        }
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.line(&format!("{name}_sum"), labels, None, sum);
        self.line(&format!("{name}_count"), labels, None, cumulative);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, value: impl Display) {
        self.out.push_str(name);
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (i, (key, value)) in all.enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_and_type_and_its_samples_follow() {
        let mut t = Text::default();
        t.family("x_total", Kind::Counter, "Things, counted.");
        t.sample("x_total", &[("outcome", "success")], 3);
        t.sample("x_total", &[], 0);
        t.family("up", Kind::Gauge, "One.");
        t.sample("up", &[("a", "1"), ("b", "2")], 1);
        assert_eq!(
            t.finish(),
            "# HELP x_total Things, counted.\n# TYPE x_total counter\nx_total{outcome=\"success\"} 3\nx_total 0\n\
             # HELP up One.\n# TYPE up gauge\nup{a=\"1\",b=\"2\"} 1\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut t = Text::default();
        t.family("x", Kind::Gauge, "a \\ b\nc");
        t.sample("x", &[("v", "q\"uote\\back\nline} y=\"1")], 1);
        assert_eq!(t.finish(), "# HELP x a \\\\ b\\nc\n# TYPE x gauge\nx{v=\"q\\\"uote\\\\back\\nline} y=\\\"1\"} 1\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf_with_the_count() {
        let h = Histogram::new(&[0.1, 1.0, 2.5]);
        for ms in [50, 100, 700, 3000, 4000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 5);
        let mut t = Text::default();
        t.family("d_seconds", Kind::Histogram, "Durations.");
        t.histogram("d_seconds", &[("route", "/a/{id}")], &h);
        let text = t.finish();
        let expected = "# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n\
            d_seconds_bucket{route=\"/a/{id}\",le=\"0.1\"} 2\n\
            d_seconds_bucket{route=\"/a/{id}\",le=\"1\"} 3\n\
            d_seconds_bucket{route=\"/a/{id}\",le=\"2.5\"} 3\n\
            d_seconds_bucket{route=\"/a/{id}\",le=\"+Inf\"} 5\n\
            d_seconds_sum{route=\"/a/{id}\"} 7.85\n\
            d_seconds_count{route=\"/a/{id}\"} 5\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn an_empty_histogram_is_all_zeros() {
        let h = Histogram::new(&[0.5]);
        let mut t = Text::default();
        t.histogram("h", &[], &h);
        assert_eq!(t.finish(), "h_bucket{le=\"0.5\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
    }
}
