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

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    executions: Family<StatusLabels, Counter>,
    queue_depth: Gauge,
    busy: Gauge,
    cron_leader: Gauge,
    cron_fired: Counter,
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
            registry,
            requests,
            latency,
            executions,
            queue_depth,
            busy,
            cron_leader,
            cron_fired,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, app: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                app: app.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&AppLabels {
                app: app.to_owned(),
            })
            .observe(seconds);
    }

    pub fn observe_execution(&self, status: &str) {
        self.executions
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .inc();
    }

    pub fn set_cron_leader(&self, leader: bool) {
        self.cron_leader.set(i64::from(leader));
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
