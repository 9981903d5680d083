//! The operator's Prometheus metrics and its HTTP endpoints: `/metrics`, `/healthz` (the process
//! serves) and `/readyz` (its cache of TenantControlPlanes has synced).
//!
//! Counters and the histogram are updated by the controller; TenantControlPlanes by phase and
//! certificate expiry are computed at scrape time from the controller's own cache, so a deleted
//! TenantControlPlane disappears from them without bookkeeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hostplane_api::v1alpha1::TenantControlPlane;
use kube::ResourceExt as _;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// (namespace, name) of a TenantControlPlane.
type TcpKey = (String, String);

/// What the controller records.
#[derive(Debug)]
pub struct Metrics {
    reconciles: Counter,
    failures: Family<ReasonLabels, Counter>,
    duration: Histogram,
    /// When the first of each tenant's certificates expires.
    expiry: Arc<Mutex<HashMap<TcpKey, OffsetDateTime>>>,
}

impl Metrics {
    /// Metrics registered in `registry`, with the per-tenant ones read from `store` at scrape.
    pub fn new(registry: &mut Registry, store: Store<TenantControlPlane>) -> Self {
        let metrics = Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            expiry: Arc::default(),
        };
        registry.register(
            "hostplane_reconciles",
            "Reconciles of TenantControlPlanes, failed or not",
            metrics.reconciles.clone(),
        );
        registry.register(
            "hostplane_reconcile_errors",
            "Failed reconciles, by the reason the TCP's Ready condition shows",
            metrics.failures.clone(),
        );
        registry.register(
            "hostplane_reconcile_duration_seconds",
            "How long one reconcile took",
            metrics.duration.clone(),
        );
        registry.register_collector(Box::new(TenantCollector {
            store,
            expiry: metrics.expiry.clone(),
        }));
        metrics
    }

    /// One reconcile took `took`; `failure` is its error's reason.
    pub fn reconciled(&self, took: Duration, failure: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// The first of tcp's certificates expires at `at`.
    pub fn certificates_expire(&self, tcp: &TenantControlPlane, at: OffsetDateTime) {
        if let Ok(mut map) = self.expiry.lock() {
            map.insert((tcp.namespace().unwrap_or_default(), tcp.name_any()), at);
        }
    }
}

#[derive(Debug)]
struct TenantCollector {
    store: Store<TenantControlPlane>,
    expiry: Arc<Mutex<HashMap<TcpKey, OffsetDateTime>>>,
}

impl Collector for TenantCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tcps = self.store.state();
        let mut phases: BTreeMap<String, i64> = BTreeMap::new();
        for tcp in &tcps {
            let phase = tcp
                .status
                .as_ref()
                .and_then(|s| s.phase.as_ref())
                .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}"));
            *phases.entry(phase).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "hostplane_tenantcontrolplanes",
            "TenantControlPlanes by phase",
            None,
            MetricType::Gauge,
        )?;
        for (phase, n) in phases {
            let labels = [("phase", phase)];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }

        let now = OffsetDateTime::now_utc();
        let expiry = self.expiry.lock().map(|m| m.clone()).unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "hostplane_tenant_certificate_expiry_seconds",
            "Seconds until the first certificate of a TenantControlPlane expires",
            None,
            MetricType::Gauge,
        )?;
        for tcp in &tcps {
            let key = (tcp.namespace().unwrap_or_default(), tcp.name_any());
            if let Some(at) = expiry.get(&key) {
                let labels = [("namespace", key.0.clone()), ("name", key.1.clone())];
                let seconds = (*at - now).whole_seconds();
                ConstGauge::new(seconds).encode(family.encode_family(&labels)?)?;
            }
        }

        // Backup age is `time() - this` (an alert: older than the schedule allows).
        let mut family = encoder.encode_descriptor(
            "hostplane_tenant_last_backup_timestamp_seconds",
            "When the last good etcd snapshot of a TenantControlPlane was taken (Unix seconds)",
            None,
            MetricType::Gauge,
        )?;
        for tcp in &tcps {
            let taken = tcp
                .status
                .as_ref()
                .and_then(|s| s.backup.as_ref())
                .and_then(|b| b.last_snapshot.as_ref())
                .and_then(|s| s.taken_at.parse::<k8s_openapi::jiff::Timestamp>().ok());
            if let Some(taken) = taken {
                let labels = [
                    ("namespace", tcp.namespace().unwrap_or_default()),
                    ("name", tcp.name_any()),
                ];
                ConstGauge::new(taken.as_second()).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

struct Endpoints {
    registry: Registry,
    ready: Arc<AtomicBool>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the process ends; `/readyz`
/// answers 200 once `ready` is set.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let state = Arc::new(Endpoints { registry, ready });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn metrics(State(state): State<Arc<Endpoints>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding the metrics failed: {e}"),
        ),
    }
}

async fn readyz(State(state): State<Arc<Endpoints>>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the TenantControlPlane cache has not synced yet",
        )
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;

    fn tcp(name: &str, phase: Option<&str>) -> TenantControlPlane {
        let mut value = json!({
            "apiVersion": "hostplane.dev/v1alpha1", "kind": "TenantControlPlane",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"version": "1.36.3"},
        });
        if let Some(phase) = phase {
            value["status"] = json!({"phase": phase});
        }
        serde_json::from_value(value).unwrap()
    }

    fn scrape(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn counts_phases_and_expiry_from_the_cache_and_reconciles_by_reason() {
        let mut writer: Writer<TenantControlPlane> = Writer::default();
        let mut backed_up = tcp("b", Some("Ready"));
        backed_up.status.as_mut().unwrap().backup = serde_json::from_value(json!({
            "lastSnapshot": {"name": "b-20261123-120000.db", "sizeBytes": 1, "sha256": "00",
                             "takenAt": "2026-11-23T12:00:00Z"},
        }))
        .unwrap();
        for t in [
            tcp("a", Some("Ready")),
            backed_up,
            tcp("c", Some("Provisioning")),
            tcp("d", None),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(t));
        }
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry, writer.as_reader());
        let in_a_year = OffsetDateTime::now_utc() + time::Duration::days(365);
        metrics.certificates_expire(&tcp("a", None), in_a_year);
        // One no longer in the cache (deleted) is not reported.
        metrics.certificates_expire(&tcp("gone", None), in_a_year);
        metrics.reconciled(Duration::from_millis(20), None);
        metrics.reconciled(Duration::from_millis(40), Some("InvalidSpec"));

        let text = scrape(&registry);
        assert!(
            text.contains("hostplane_tenantcontrolplanes{phase=\"Ready\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("hostplane_tenantcontrolplanes{phase=\"Provisioning\"} 1\n"));
        assert!(text.contains("hostplane_tenantcontrolplanes{phase=\"Pending\"} 1\n"));
        assert!(text.contains("hostplane_reconciles_total 2\n"), "{text}");
        assert!(text.contains("hostplane_reconcile_errors_total{reason=\"InvalidSpec\"} 1\n"));
        assert!(text.contains("hostplane_reconcile_duration_seconds_count 2\n"));
        assert!(
            text.contains(
                "hostplane_tenant_last_backup_timestamp_seconds{namespace=\"ns\",name=\"b\"} 1795435200\n"
            ),
            "{text}"
        );
        let expiry: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("hostplane_tenant_certificate_expiry_seconds{"))
            .collect();
        assert_eq!(expiry.len(), 1, "{text}");
        assert!(expiry[0].contains("name=\"a\""));
        let seconds: i64 = expiry[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            (365 * 86_400 - 5..=365 * 86_400).contains(&seconds),
            "{seconds}"
        );
    }
}
