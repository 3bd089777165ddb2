//! `/metrics` in the Prometheus text exposition format (version 0.0.4):
//! the API's request counter, and the counters, gauges and histograms the
//! server sets.
//!
//! The server owns its figures (atomics on its hot paths) and copies them
//! here on a timer; this module only keeps the latest values and renders
//! them, so a scrape never touches the broker.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// `tributary_http_requests_total{route,status}`: requests answered, by
/// matched route pattern (never the raw path, so that the label set stays
/// bounded) and status code.
pub const HTTP_REQUESTS_TOTAL: &str = "tributary_http_requests_total";
/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Counters, gauges and histograms; cheap to update (one mutex, short
/// critical sections), rendered on scrape.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// By name, so a scrape lists them in a stable order.
    families: Mutex<BTreeMap<&'static str, Family>>,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    value: Value,
}

#[derive(Debug)]
enum Value {
    Gauge(f64),
    Counter(u64),
    Histogram(Histogram),
}

/// A histogram as its owner last read it.
///
/// `counts` has one entry per bucket, *not* cumulative: `counts[i]` is the
/// number of observations in `(bounds[i-1], bounds[i]]`, and the last entry
/// (index `bounds.len()`) those above the largest bound. Rendering adds them
/// up into Prometheus's cumulative `le` buckets; the total is `_count`, so
/// `_count` always equals the `+Inf` bucket even when the owner's atomics
/// were read while being updated.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending, without `+Inf`.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    /// Sum of all observed values.
    pub sum: f64,
}

impl Metrics {
    pub(crate) fn count_request(&self, route: &str, status: u16) {
        let mut requests = lock(&self.requests);
        *requests.entry((route.to_owned(), status)).or_insert(0) += 1;
    }

    /// Sets a gauge, created on first use: the hook through which the
    /// server reports its own figures (connections, log end offset, …).
    /// `name` must be a valid Prometheus metric name, `help` one line.
    pub fn set_gauge(&self, name: &'static str, help: &'static str, value: f64) {
        self.set(name, help, Value::Gauge(value));
    }

    /// Sets a counter to the owner's running total (the owner counts; this
    /// only reports). `name` must end in `_total`.
    pub fn set_counter(&self, name: &'static str, help: &'static str, value: u64) {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.set(name, help, Value::Counter(value));
    }

    /// Sets a histogram (see [`Histogram`]). `name` is the base name: the
    /// exposition adds `_bucket`, `_sum` and `_count`.
    pub fn set_histogram(&self, name: &'static str, help: &'static str, histogram: Histogram) {
        debug_assert_eq!(
            histogram.counts.len(),
            histogram.bounds.len() + 1,
            "histogram {name}: one count per bound plus +Inf"
        );
        self.set(name, help, Value::Histogram(histogram));
    }

    fn set(&self, name: &'static str, help: &'static str, value: Value) {
        lock(&self.families).insert(name, Family { help, value });
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP {HTTP_REQUESTS_TOTAL} HTTP requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE {HTTP_REQUESTS_TOTAL} counter");
        for ((route, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "{HTTP_REQUESTS_TOTAL}{{route=\"{}\",status=\"{status}\"}} {count}",
                escape_label(route)
            );
        }
        for (name, family) in lock(&self.families).iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
            match &family.value {
                Value::Gauge(value) => {
                    let _ = writeln!(out, "# TYPE {name} gauge");
                    let _ = writeln!(out, "{name} {}", number(*value));
                }
                Value::Counter(value) => {
                    let _ = writeln!(out, "# TYPE {name} counter");
                    let _ = writeln!(out, "{name} {value}");
                }
                Value::Histogram(histogram) => render_histogram(&mut out, name, histogram),
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, histogram: &Histogram) {
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, count) in histogram.counts.iter().enumerate() {
        cumulative += count;
        let le = histogram
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |bound| number(*bound));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", number(histogram.sum));
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// A sample value as the format spells it (Rust writes infinity as `inf`).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Escapes a label value as the exposition format requires.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a HELP text (backslash and line feed only, unlike label values).
fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_renders_with_its_type_and_value() {
        let metrics = Metrics::default();
        metrics.set_counter("tributary_test_things_total", "Things done.", 42);
        let text = metrics.render();
        assert!(
            text.contains(
                "# HELP tributary_test_things_total Things done.\n\
                 # TYPE tributary_test_things_total counter\n\
                 tributary_test_things_total 42\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_counter_set_again_shows_the_latest_total() {
        let metrics = Metrics::default();
        metrics.set_counter("tributary_test_things_total", "Things done.", 1);
        metrics.set_counter("tributary_test_things_total", "Things done.", 5);
        let text = metrics.render();
        assert_eq!(
            text.matches("tributary_test_things_total 5\n").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("tributary_test_things_total 1\n"), "{text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_sum_and_count() {
        let metrics = Metrics::default();
        metrics.set_histogram(
            "tributary_test_seconds",
            "Time taken.",
            Histogram {
                bounds: vec![0.001, 0.5, 10.0],
                counts: vec![3, 0, 2, 1],
                sum: 12.25,
            },
        );
        let text = metrics.render();
        let expected = "# HELP tributary_test_seconds Time taken.\n\
                        # TYPE tributary_test_seconds histogram\n\
                        tributary_test_seconds_bucket{le=\"0.001\"} 3\n\
                        tributary_test_seconds_bucket{le=\"0.5\"} 3\n\
                        tributary_test_seconds_bucket{le=\"10\"} 5\n\
                        tributary_test_seconds_bucket{le=\"+Inf\"} 6\n\
                        tributary_test_seconds_sum 12.25\n\
                        tributary_test_seconds_count 6\n";
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn an_empty_histogram_renders_zero_buckets() {
        let metrics = Metrics::default();
        metrics.set_histogram(
            "tributary_test_seconds",
            "Time taken.",
            Histogram {
                bounds: vec![1.0],
                counts: vec![0, 0],
                sum: 0.0,
            },
        );
        let text = metrics.render();
        assert!(
            text.contains(
                "tributary_test_seconds_bucket{le=\"1\"} 0\n\
                 tributary_test_seconds_bucket{le=\"+Inf\"} 0\n\
                 tributary_test_seconds_sum 0\n\
                 tributary_test_seconds_count 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn gauges_spell_special_values_as_the_format_does() {
        let metrics = Metrics::default();
        metrics.set_gauge("tributary_test_a", "A.", f64::INFINITY);
        metrics.set_gauge("tributary_test_b", "B.", f64::NAN);
        metrics.set_gauge("tributary_test_c", "C.", 0.5);
        let text = metrics.render();
        assert!(text.contains("tributary_test_a +Inf\n"), "{text}");
        assert!(text.contains("tributary_test_b NaN\n"), "{text}");
        assert!(text.contains("tributary_test_c 0.5\n"), "{text}");
    }

    #[test]
    fn help_text_is_escaped() {
        let metrics = Metrics::default();
        metrics.set_gauge("tributary_test_g", "back\\slash and\nnewline", 1.0);
        let text = metrics.render();
        assert!(
            text.contains("# HELP tributary_test_g back\\\\slash and\\nnewline\n"),
            "{text}"
        );
    }
}
