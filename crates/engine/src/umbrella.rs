//! Cisco Umbrella in the pipeline: shared credentials (an MSSP parent key stored once, acting
//! for each customer's child org), the client of a source, and the poll.
//!
//! **The walk.** Activity records have no id and the service's order within one second is not
//! stable between calls, so plain offset paging across a window can skip or repeat records at a
//! second boundary. The poll therefore pages by time: each request asks, oldest first, from
//! the start of a second; after a full page the next request starts again at the start of the
//! second of the newest record on that page (that second's records are re-read, and their
//! derived keys drop the ones already stored). Only when a whole page of the largest size lies
//! inside one second does it fall back to offsets within that second. Each page is stored with
//! the mark it justifies; the next poll starts from the mark's second minus the overlap.
//!
//! **Tokens.** Every source of one credential shares the engine's [`TokenCache`], so 50
//! customer orgs under one parent key cost one token request per token lifetime, not 50.

use crate::engine::{Engine, EngineError};
use crate::poll::{PollError, PollReport, store_batch, window_start_for};
use crate::settings::{CredentialSettings, UmbrellaSettings};
use socbridge_connectors::umbrella::{
    ActivityKind, ActivityQuery, MAX_LIMIT, Order, UmbrellaClient, UmbrellaConfig, UmbrellaHttp,
    map_page,
};
use socbridge_model::Timestamp;
use socbridge_secrets::{SecretFields, aad_for_credential};
use socbridge_store::{SourceRecord, Store};
use std::time::{Duration, Instant};

const SECOND_US: i64 = 1_000_000;

fn second_floor(t: Timestamp) -> Timestamp {
    Timestamp::from_micros(t.as_micros() - t.as_micros().rem_euclid(SECOND_US))
}

fn kind_of(activity: &str) -> ActivityKind {
    match activity {
        "dns" => ActivityKind::Dns,
        "proxy" => ActivityKind::Proxy,
        "firewall" => ActivityKind::Firewall,
        "intrusion" => ActivityKind::Intrusion,
        "ip" => ActivityKind::Ip,
        _ => ActivityKind::All,
    }
}

impl Engine {
    /// Saves a shared credential, its secrets sealed (`secrets: None` keeps the stored ones).
    pub async fn save_credential(
        &self,
        name: &str,
        settings: &CredentialSettings,
        secrets: Option<&SecretFields>,
    ) -> Result<(), EngineError> {
        let sealed = secrets.map(|s| self.inner.key.seal_fields(s, &aad_for_credential(name)));
        let json = serde_json::to_value(settings)
            .map_err(|e| EngineError::Ticketing(format!("credential settings: {e}")))?;
        let kind = match settings {
            CredentialSettings::Umbrella { .. } => "umbrella",
        };
        self.inner
            .store
            .upsert_credential(name, kind, &json, sealed.as_deref())
            .await?;
        Ok(())
    }

    /// An Umbrella client for the named shared credential, sharing the engine's tokens.
    pub(crate) async fn umbrella_client(&self, credential: &str) -> Result<UmbrellaClient, String> {
        let rec = self
            .inner
            .store
            .credential(credential)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no credential named `{credential}`: add it with `socbridge credential add` or a [[credentials]] entry"
                )
            })?;
        let settings: CredentialSettings = serde_json::from_value(rec.settings)
            .map_err(|e| format!("credential `{credential}` has unreadable settings: {e}"))?;
        let CredentialSettings::Umbrella {
            base_url,
            token_url,
        } = settings;
        let sealed = rec
            .secret
            .ok_or_else(|| format!("credential `{credential}` has no stored secret"))?;
        let secrets = self
            .inner
            .key
            .open_fields(&sealed, &aad_for_credential(credential))
            .map_err(|e| format!("credential `{credential}`: {e}"))?;
        let field = |name: &str| {
            secrets
                .get(name)
                .cloned()
                .ok_or_else(|| format!("credential `{credential}` lacks its {name}"))
        };
        let key = {
            use secrecy::ExposeSecret as _;
            field("key")?.expose_secret().to_string()
        };
        let mut config = UmbrellaConfig::new(base_url, key, field("secret")?);
        config.token_url = token_url;
        let http = self
            .inner
            .umbrella_http
            .get_or_init(|| {
                UmbrellaHttp::new(self.inner.opts.http.clone()).map_err(|e| e.to_string())
            })
            .clone()?;
        UmbrellaClient::new(config, self.inner.umbrella_tokens.clone(), http)
            .map_err(|e| e.to_string())
    }
}

pub(crate) async fn poll(
    store: &Store,
    source: &SourceRecord,
    settings: &UmbrellaSettings,
    client: &UmbrellaClient,
    budget: Duration,
    report: &mut PollReport,
) -> Result<(), PollError> {
    let started = Instant::now();
    let now = Timestamp::now();
    let mut from = second_floor(window_start_for(source.cursor_mark, now, &settings.poll));
    // The org the derived keys are computed with: the child org, or `-` for the key's own.
    let org_key = settings.org_id.clone().unwrap_or_else(|| "-".into());
    let cap = settings.poll.cap_per_run;
    let mut limit = settings.page_size;
    let mut offset = 0u64;
    loop {
        if started.elapsed() >= budget {
            report.budget_exhausted = true;
            return Ok(());
        }
        let mut q = ActivityQuery::new(
            settings.org_id.clone(),
            kind_of(&settings.activity),
            from,
            now,
        );
        q.limit = limit;
        q.offset = offset;
        q.order = Order::Asc;
        q.verdict = settings.verdict.clone();
        q.categories = settings.categories.clone();
        let page = client.activity_page(&q).await?;
        report.pages += 1;
        report.records += page.records.len();
        let (mut findings, quarantined) = map_page(&org_key, &page.records);
        findings.sort_by_key(|f| f.observed_at);
        let newest = findings.iter().map(|f| f.observed_at).max();
        store_batch(store, source, findings, quarantined, cap, report).await?;
        if report.cap_reached || !page.may_have_more() {
            return Ok(());
        }
        let next = newest.map(second_floor).unwrap_or(from);
        if next > from {
            from = next;
            offset = 0;
            limit = settings.page_size;
        } else if limit < MAX_LIMIT {
            // The whole page lies inside one second: ask for as much as the API gives.
            limit = MAX_LIMIT;
            offset = 0;
        } else {
            // More than a full page in one second: offsets within it, the only way on.
            tracing::warn!(tenant = %source.tenant, source = %source.name, second = %from, "over {MAX_LIMIT} records in one second; paging by offset within it");
            offset = page.next_offset();
        }
    }
}
