//! Prometheus metrics (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub app: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

type HistogramFamily = Family<AppLabels, Histogram, fn() -> Histogram>;

/// One app's series, kept so that counting a request is a map lookup by `&str`
/// instead of building (and allocating) label sets twice per request.
#[derive(Clone)]
struct AppSeries {
    latency: Histogram,
    /// By status code; an app answers few distinct ones.
    requests: Vec<(u16, Counter)>,
}

pub struct Metrics {
    /// The per-app series, by app (the families own them; these are handles).
    apps: parking_lot::RwLock<std::collections::HashMap<String, AppSeries>>,
    /// Handles of the execution counters, by status (a handful).
    execution_series: parking_lot::RwLock<Vec<(String, Counter)>>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    executions: Family<StatusLabels, Counter>,
    queue_depth: Gauge,
    busy: Gauge,
    cron_leader: Gauge,
    cron_fired: Counter,
    inline_runs: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("picloud");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let executions = Family::<StatusLabels, Counter>::default();
        let queue_depth = Gauge::default();
        let busy = Gauge::default();
        let cron_leader = Gauge::default();
        let cron_fired = Counter::default();
        let inline_runs = Counter::default();
        registry.register(
            "inline_runs",
            "Route runs that finished on an async worker, without a script thread",
            inline_runs.clone(),
        );
        registry.register(
            "http_requests",
            "App-route requests by app and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "App-route latency by app",
            latency.clone(),
        );
        registry.register(
            "executions",
            "Script runs by final status",
            executions.clone(),
        );
        registry.register(
            "executor_queue_depth",
            "Requests waiting for a script slot",
            queue_depth.clone(),
        );
        registry.register(
            "executor_busy_threads",
            "Script threads running a script",
            busy.clone(),
        );
        registry.register(
            "cron_leader",
            "1 while this node runs the cron scheduler (one node of a database does)",
            cron_leader.clone(),
        );
        registry.register(
            "cron_fired",
            "Cron windows this node queued deliveries for",
            cron_fired.clone(),
        );
        Self {
            apps: parking_lot::RwLock::default(),
            execution_series: parking_lot::RwLock::default(),
            registry,
            requests,
            latency,
            executions,
            queue_depth,
            busy,
            cron_leader,
            cron_fired,
            inline_runs,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, app: &str, status: u16, seconds: f64) {
        if let Some(series) = self.apps.read().get(app) {
            if let Some((_, requests)) = series.requests.iter().find(|(s, _)| *s == status) {
                requests.inc();
                series.latency.observe(seconds);
                return;
            }
        }
        let (latency, requests) = self.app_series(app, status);
        requests.inc();
        latency.observe(seconds);
    }

    /// Creates (or finds) the app's series for `status` and keeps their handles.
    fn app_series(&self, app: &str, status: u16) -> (Histogram, Counter) {
        let mut apps = self.apps.write();
        let series = apps.entry(app.to_owned()).or_insert_with(|| AppSeries {
            latency: self
                .latency
                .get_or_create(&AppLabels {
                    app: app.to_owned(),
                })
                .clone(),
            requests: Vec::new(),
        });
        let counter = match series.requests.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c.clone(),
            None => {
                let c = self
                    .requests
                    .get_or_create(&RequestLabels {
                        app: app.to_owned(),
                        status: status.to_string(),
                    })
                    .clone();
                series.requests.push((status, c.clone()));
                c
            }
        };
        (series.latency.clone(), counter)
    }

    pub fn observe_execution(&self, status: &str) {
        if let Some((_, runs)) = self
            .execution_series
            .read()
            .iter()
            .find(|(s, _)| s == status)
        {
            runs.inc();
            return;
        }
        let runs = self
            .executions
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .clone();
        runs.inc();
        self.execution_series
            .write()
            .push((status.to_owned(), runs));
    }

    pub fn set_cron_leader(&self, leader: bool) {
        self.cron_leader.set(i64::from(leader));
    }

    pub fn observe_inline_run(&self) {
        self.inline_runs.inc();
    }

    pub fn observe_cron_fired(&self) {
        self.cron_fired.inc();
    }

    /// The text exposition, with the executor gauges read now.
    pub fn render(&self, queue_depth: usize, busy: usize) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.busy.set(i64::try_from(busy).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_into_the_exposed_series() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.observe_request("shop", 200, 0.001);
        }
        m.observe_request("shop", 404, 0.001);
        m.observe_request("blog", 200, 0.001);
        m.observe_execution("success");
        m.observe_execution("success");
        m.observe_execution("error");
        let text = m.render(0, 0);
        assert!(text.contains(r#"picloud_http_requests_total{app="shop",status="200"} 3"#));
        assert!(text.contains(r#"picloud_http_requests_total{app="shop",status="404"} 1"#));
        assert!(text.contains(r#"picloud_http_requests_total{app="blog",status="200"} 1"#));
        assert!(text.contains(r#"picloud_http_request_duration_seconds_count{app="shop"} 4"#));
        assert!(text.contains(r#"picloud_executions_total{status="success"} 2"#));
        assert!(text.contains(r#"picloud_executions_total{status="error"} 1"#));
    }
}
