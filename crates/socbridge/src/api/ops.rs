//! Operations: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and the HTTP latency
//! recorder behind `socbridge_http_*`.

use super::ApiState;
use super::problem::Problem;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use socbridge_model::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Series {
    /// Per bucket, then +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// Request counts and latencies by method, route template and status.
#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let s = map
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        let slot = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        s.counts[slot] += 1;
        s.sum += seconds;
    }

    fn write(&self, out: &mut String) {
        let Ok(map) = self.series.lock() else {
            return;
        };
        out.push_str("# HELP socbridge_http_request_duration_seconds HTTP requests by route and status, and how long they took.\n");
        out.push_str("# TYPE socbridge_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in map.iter() {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                escape(method),
                escape(route)
            );
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.counts[i];
                let _ = writeln!(
                    out,
                    "socbridge_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += s.counts[BUCKETS.len()];
            let _ = writeln!(
                out,
                "socbridge_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "socbridge_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "socbridge_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }
}

/// Records every request's latency under its route template (never the raw path: ids would
/// make a series each).
pub async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    state.http.record(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and every migration this binary knows is applied.
pub async fn readyz(State(state): State<ApiState>) -> Response {
    match state.engine.store().schema_ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response()
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The Prometheus text exposition of what the store holds and how the sources and the
/// outbox are doing, plus the HTTP series.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    match render(&state).await {
        Ok(text) => {
            let mut res = text.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        Err(e) => Problem::internal(e).into_response(),
    }
}

async fn render(state: &ApiState) -> Result<String, socbridge_store::StoreError> {
    let store = state.engine.store();
    let now = Timestamp::now();
    let mut out = String::new();
    let tenants = store.list_tenants().await?;
    let mut per_tenant = Vec::with_capacity(tenants.len());
    for t in &tenants {
        per_tenant.push((t.name.clone(), store.counts(Some(&t.name)).await?));
    }
    type Get = fn(&socbridge_store::Counts) -> i64;
    let series: [(&str, &str, Get); 4] = [
        ("socbridge_findings", "Findings stored.", |c| c.findings),
        ("socbridge_incidents", "Incidents stored.", |c| c.incidents),
        ("socbridge_incidents_open", "Open incidents.", |c| {
            c.open_incidents
        }),
        (
            "socbridge_quarantined",
            "Records quarantined (not understood).",
            |c| c.quarantined,
        ),
    ];
    for (name, help, get) in series {
        gauge(&mut out, name, help, "gauge");
        for (tenant, c) in &per_tenant {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", escape(tenant), get(c));
        }
    }

    let sources = store.list_sources(None).await?;
    gauge(
        &mut out,
        "socbridge_source_last_poll_timestamp_seconds",
        "When each source last polled (Unix time).",
        "gauge",
    );
    for s in &sources {
        if let Some(at) = s.last_poll_at {
            let _ = writeln!(
                out,
                "socbridge_source_last_poll_timestamp_seconds{{tenant=\"{}\",source=\"{}\"}} {}",
                escape(&s.tenant),
                escape(&s.name),
                at.as_micros() as f64 / 1e6
            );
        }
    }
    gauge(
        &mut out,
        "socbridge_source_errors",
        "1 when the source's last poll failed (its last_error is set), else 0.",
        "gauge",
    );
    for s in &sources {
        let _ = writeln!(
            out,
            "socbridge_source_errors{{tenant=\"{}\",source=\"{}\",kind=\"{}\"}} {}",
            escape(&s.tenant),
            escape(&s.name),
            s.kind,
            u8::from(s.last_error.is_some())
        );
    }
    gauge(
        &mut out,
        "socbridge_source_lag_seconds",
        "From the newest vendor time stored to now.",
        "gauge",
    );
    for s in &sources {
        if let Some(m) = s.cursor_mark {
            let lag = (now.as_micros() - m.as_micros()).max(0) as f64 / 1e6;
            let _ = writeln!(
                out,
                "socbridge_source_lag_seconds{{tenant=\"{}\",source=\"{}\"}} {lag}",
                escape(&s.tenant),
                escape(&s.name)
            );
        }
    }

    let stats = store.outbox_stats().await?;
    gauge(
        &mut out,
        "socbridge_outbox_items",
        "Outbox items (tickets, write-backs, containment) by state.",
        "gauge",
    );
    for (st, n) in [
        ("pending", stats.pending),
        ("failed", stats.failed),
        ("done", stats.done),
    ] {
        let _ = writeln!(out, "socbridge_outbox_items{{state=\"{st}\"}} {n}");
    }
    gauge(
        &mut out,
        "socbridge_outbox_depth",
        "Outbox items waiting to be done.",
        "gauge",
    );
    let _ = writeln!(out, "socbridge_outbox_depth {}", stats.pending);
    gauge(
        &mut out,
        "socbridge_outbox_oldest_age_seconds",
        "Age of the oldest pending outbox item (0 when none).",
        "gauge",
    );
    let age = stats
        .oldest_pending
        .map(|t| (now.as_micros() - t.as_micros()).max(0) as f64 / 1e6)
        .unwrap_or(0.0);
    let _ = writeln!(out, "socbridge_outbox_oldest_age_seconds {age}");

    gauge(
        &mut out,
        "socbridge_sink_backlog",
        "Change batches a SIEM sink has not delivered yet.",
        "gauge",
    );
    for sink in store.sinks().await? {
        let n = store.sink_backlog(&sink.name).await?;
        let _ = writeln!(
            out,
            "socbridge_sink_backlog{{sink=\"{}\"}} {n}",
            escape(&sink.name)
        );
    }

    gauge(
        &mut out,
        "socbridge_leases_held",
        "Jobs (a source's polls, a tenant's outbox, a sink, the ServiceNow sync-in) this \
         replica holds the lease of.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "socbridge_leases_held{{replica=\"{}\"}} {}",
        escape(state.engine.replica_id().as_str()),
        state.engine.held_jobs().len()
    );

    write_engine_counters(&state.engine.metrics().snapshot(), &mut out);
    state.http.write(&mut out);
    Ok(out)
}

/// The engine's counters since the process started.
fn write_engine_counters(m: &socbridge_engine::MetricsSnapshot, out: &mut String) {
    type Get = fn(&socbridge_engine::PollCounters) -> u64;
    let polls: [(&str, &str, Get); 5] = [
        (
            "socbridge_polls_total",
            "Polls that ended well, by source.",
            |c| c.ok,
        ),
        (
            "socbridge_poll_errors_total",
            "Polls that failed, by source.",
            |c| c.failed,
        ),
        (
            "socbridge_records_read_total",
            "Vendor records read (a record read twice counts twice).",
            |c| c.records,
        ),
        (
            "socbridge_findings_stored_total",
            "New findings stored.",
            |c| c.new_findings,
        ),
        (
            "socbridge_duplicates_dropped_total",
            "Records dropped because their finding was already stored.",
            |c| c.duplicates,
        ),
    ];
    for (name, help, get) in polls {
        gauge(out, name, help, "counter");
        for ((tenant, source, kind), c) in &m.polls {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",source=\"{}\",kind=\"{}\"}} {}",
                escape(tenant),
                escape(source),
                escape(kind),
                get(c)
            );
        }
    }
    gauge(
        out,
        "socbridge_leases_lost_total",
        "Work stopped because another replica took its job over (its lease was lost and its \
         write refused), by kind of work.",
        "counter",
    );
    for (work, n) in &m.leases_lost {
        let _ = writeln!(
            out,
            "socbridge_leases_lost_total{{work=\"{}\"}} {n}",
            escape(work)
        );
    }
    gauge(
        out,
        "socbridge_outbox_attempts_total",
        "Outbox work attempted (target servicenow: tickets, notes, closes; vendor: \
         write-backs; containment), by how it ended.",
        "counter",
    );
    for ((tenant, target, kind, result), n) in &m.outbox {
        let _ = writeln!(
            out,
            "socbridge_outbox_attempts_total{{tenant=\"{}\",target=\"{}\",kind=\"{}\",result=\"{}\"}} {n}",
            escape(tenant),
            escape(target),
            escape(kind),
            result.as_str()
        );
    }
    gauge(
        out,
        "socbridge_tickets_created_total",
        "ServiceNow tickets opened by this process.",
        "counter",
    );
    let mut tickets: BTreeMap<&str, u64> = BTreeMap::new();
    for ((tenant, target, kind, result), n) in &m.outbox {
        if target == "servicenow"
            && kind == "create"
            && *result == socbridge_engine::OutboxResult::Done
        {
            *tickets.entry(tenant).or_default() += n;
        }
    }
    for (tenant, n) in tickets {
        let _ = writeln!(
            out,
            "socbridge_tickets_created_total{{tenant=\"{}\"}} {n}",
            escape(tenant)
        );
    }
    type SinkGet = fn(&socbridge_engine::SinkCounters) -> u64;
    let sinks: [(&str, &str, SinkGet); 3] = [
        (
            "socbridge_sink_requests_total",
            "OCSF batches a SIEM sink's collector answered 2xx.",
            |c| c.requests,
        ),
        (
            "socbridge_sink_failures_total",
            "OCSF batches that failed after retries (sent again later).",
            |c| c.failures,
        ),
        (
            "socbridge_sink_lines_total",
            "OCSF lines delivered (a line sent again counts again).",
            |c| c.lines,
        ),
    ];
    for (name, help, get) in sinks {
        gauge(out, name, help, "counter");
        for (sink, c) in &m.sinks {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", escape(sink), get(c));
        }
    }
}
