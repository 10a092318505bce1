//! The business rule's push: after every saved incident change the instance calls
//! `POST {url}` with a JSON summary and the shared secret in a header, as an after-update
//! rule with an Outbound REST Message would.
//!
//! One worker delivers in commit order (a later push never overtakes an earlier one), each
//! push a bounded number of attempts with a short pause; a push that still fails is counted
//! in `webhook.failed` and dropped, as a real rule's failed REST call is: socbridge must keep
//! polling as the safety net.

use super::{Change, Sn};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One push, fixed when the change committed (target and secret included).
#[derive(Debug)]
pub(crate) struct Job {
    pub url: String,
    pub header: String,
    pub secret: String,
    pub body: Value,
}

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts of one push.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

fn entry(row: Option<&super::instance::Row>) -> Value {
    match row {
        None => Value::Null,
        Some(r) => json!({
            "element": r.get("element").cloned().unwrap_or_default(),
            "value": r.get("value").cloned().unwrap_or_default(),
            "sys_created_on": r.get("sys_created_on").cloned().unwrap_or_default(),
            "sys_created_by": r.get("sys_created_by").cloned().unwrap_or_default(),
        }),
    }
}

/// The push body: the ticket's identity and state, who changed it, and the newest
/// `work_notes` and `comments` entries (`null` when the ticket has none).
pub(crate) fn body(c: &Change) -> Value {
    let f = |name: &str| c.record.get(name).cloned().unwrap_or_default();
    json!({
        "table": "incident",
        "operation": c.operation,
        "sys_id": f("sys_id"),
        "number": f("number"),
        "state": f("state"),
        "close_code": f("close_code"),
        "close_notes": f("close_notes"),
        "correlation_id": f("correlation_id"),
        "sys_updated_on": f("sys_updated_on"),
        "sys_updated_by": f("sys_updated_by"),
        "sys_mod_count": f("sys_mod_count"),
        "work_notes": entry(c.newest_work_note.as_ref()),
        "comments": entry(c.newest_comment.as_ref()),
    })
}

/// Delivers pushes until shutdown.
pub(crate) async fn worker(sn: Arc<Sn>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let http = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("sim: ServiceNow webhook client unavailable: {e}");
            return;
        }
    };
    loop {
        let job = tokio::select! {
            _ = sn.shutdown.cancelled() => return,
            job = rx.recv() => match job {
                Some(j) => j,
                None => return,
            },
        };
        deliver(&sn, &http, job).await;
    }
}

async fn deliver(sn: &Sn, http: &reqwest::Client, job: Job) {
    let text = job.body.to_string();
    for attempt in 1..=sn.webhook_attempts {
        if attempt > 1 {
            tokio::select! {
                _ = sn.shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        }
        let sent = http
            .post(&job.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(job.header.as_str(), job.secret.as_str())
            .body(text.clone())
            .send()
            .await;
        let mut st = sn.lock();
        let w = &mut st.counters.webhook;
        w.attempts += 1;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                *w.by_status.entry(status.as_u16().to_string()).or_insert(0) += 1;
                if status.is_success() {
                    w.delivered += 1;
                    return;
                }
                w.last_error = Some(format!("{} answered {status}", job.url));
            }
            Err(e) => {
                *w.by_status.entry("error".into()).or_insert(0) += 1;
                w.last_error = Some(format!("{}: {e}", job.url));
            }
        }
    }
    sn.lock().counters.webhook.failed += 1;
}
