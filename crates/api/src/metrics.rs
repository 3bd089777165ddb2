//! `/metrics` in the Prometheus text exposition format (version 0.0.4):
//! the API's request counter, and gauges the server sets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// `tributary_http_requests_total{route,status}`: requests answered, by
/// matched route pattern (never the raw path, so that the label set stays
/// bounded) and status code.
pub const HTTP_REQUESTS_TOTAL: &str = "tributary_http_requests_total";
/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Counters and gauges; cheap to update (one mutex, short critical
/// sections), rendered on scrape.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    gauges: Mutex<BTreeMap<&'static str, Gauge>>,
}

#[derive(Debug)]
struct Gauge {
    help: &'static str,
    value: f64,
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
        lock(&self.gauges).insert(name, Gauge { help, value });
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
        for (name, gauge) in lock(&self.gauges).iter() {
            let _ = writeln!(out, "# HELP {name} {}", gauge.help);
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", gauge.value);
        }
        out
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
