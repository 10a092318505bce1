//! The engine: applies configuration, polls sources (one, a tenant's, or every due one) and
//! runs the schedule of `serve`.
//!
//! Invariant: one source's failure (bad credentials, a vendor down, a malformed page) ends up
//! in that source's report and `last_error` and never stops another source's poll.

use crate::config::Config;
use crate::poll::{PollError, PollReport, poll_secure_endpoint};
use crate::settings::SourceSettings;
use socbridge_connectors::http::{HttpOptions, HttpStack};
use socbridge_connectors::secure_endpoint::SecureEndpointClient;
use socbridge_model::{SourceName, Timestamp};
use socbridge_secrets::{MasterKey, SecretFields, SecretsError, aad_for_source};
use socbridge_store::{Fence, NewSource, SourceRecord, Store, StoreError, poll_job};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no tenant named `{0}`")]
    UnknownTenant(String),
    #[error("tenant `{tenant}` has no source named `{source_name}`")]
    UnknownSource { tenant: String, source_name: String },
    #[error("tenant `{0}` has no sources; add one with `socbridge source add`")]
    NoSources(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("source `{tenant}/{source_name}`: {detail}")]
    BadSource {
        tenant: String,
        source_name: String,
        detail: String,
    },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("ServiceNow: {0}")]
    Ticketing(String),
    #[error(transparent)]
    SymantecMss(#[from] socbridge_connectors::symantec_mss::SymantecMssError),
    #[error("sink `{sink}`: {detail}")]
    Sink { sink: String, detail: String },
}

impl EngineError {
    /// The error is about what the user asked for (exit code 2), not a failure of the system.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            EngineError::UnknownTenant(_)
                | EngineError::UnknownSource { .. }
                | EngineError::NoSources(_)
                | EngineError::BadSource { .. }
        ) || matches!(self, EngineError::SymantecMss(e) if e.is_bad_input())
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub http: HttpOptions,
    /// How long one poll of one source may keep reading pages before it stops and lets the
    /// next run continue from its committed mark.
    pub poll_budget: Duration,
    /// Sources polled at the same time, across all tenants. Bounded so a thousand tenants do
    /// not open a thousand connections at once.
    pub concurrency: usize,
    /// How often the scheduler looks for due sources.
    pub tick: Duration,
    /// Outbox retries wait from `outbox_backoff_min`, doubling up to `outbox_backoff_max`.
    pub outbox_backoff_min: Duration,
    pub outbox_backoff_max: Duration,
    /// Where analysts open socbridge's console, for links in ticket descriptions.
    pub console_url: Option<String>,
    /// How long an isolation's `pending_start` is followed before the action is recorded as
    /// requested but not yet confirmed.
    pub isolation_deadline: Duration,
    /// How long a lease on a job (a source's polls, a tenant's outbox, ...) lasts without
    /// renewal: how soon other replicas take over the jobs of one that died. Renewed every
    /// third of it.
    pub lease_ttl: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            http: HttpOptions::default(),
            poll_budget: Duration::from_secs(50),
            concurrency: 8,
            tick: Duration::from_secs(1),
            outbox_backoff_min: Duration::from_secs(2),
            outbox_backoff_max: Duration::from_secs(300),
            console_url: None,
            isolation_deadline: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// What applying a config file changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub tenants: usize,
    pub sources: usize,
    pub ticketing: bool,
    pub sinks: usize,
}

/// A source's vendor client, by kind.
// Built for one poll, check or write-back and dropped after: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SourceClient {
    SecureEndpoint(
        crate::settings::SecureEndpointSettings,
        SecureEndpointClient,
    ),
    SymantecMss(
        crate::settings::SymantecMssSettings,
        socbridge_connectors::symantec_mss::SymantecMssClient,
    ),
    Umbrella(
        crate::settings::UmbrellaSettings,
        socbridge_connectors::umbrella::UmbrellaClient,
    ),
}

#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) key: MasterKey,
    pub(crate) http: HttpStack,
    pub(crate) opts: EngineOptions,
    pub(crate) link: tokio::sync::Mutex<Option<Arc<crate::ticketing::Link>>>,
    pub(crate) tenant_locks:
        tokio::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Umbrella tokens, shared by every source of the same key (one token per parent key,
    /// not one per customer org).
    pub(crate) umbrella_tokens: socbridge_connectors::umbrella::TokenCache,
    /// The Umbrella HTTP stack (its own client, which never follows redirects itself), built
    /// on first use and shared by every Umbrella source: one connection pool, not one per poll.
    pub(crate) umbrella_http:
        std::sync::OnceLock<Result<socbridge_connectors::umbrella::UmbrellaHttp, String>>,
    /// Counters since the process started, for `/metrics`.
    pub(crate) metrics: crate::metrics::EngineMetrics,
    /// Cisco XDR tokens, one per (token URL, API client), shared by every item of a tenant.
    pub(crate) xdr_tokens: socbridge_connectors::TokenCache,
    /// This process as a replica, and the jobs it holds.
    pub(crate) leasing: crate::leasing::Leasing,
    /// The stored sources as the loops of every tick see them (see `sources_view`).
    pub(crate) sources_view: tokio::sync::Mutex<Option<Arc<crate::sources_view::SourcesView>>>,
    /// Sources whose last poll in this process left more waiting (its cap or time budget
    /// reached): the next poll of a Secure Endpoint source then asks for one event to learn
    /// the window's size, instead of a whole page it would not store (see `poll`).
    pub(crate) backlogged: std::sync::Mutex<HashSet<i64>>,
}

impl Engine {
    pub fn new(store: Store, key: MasterKey, opts: EngineOptions) -> Self {
        let http = HttpStack::new(opts.http.clone());
        let leasing = crate::leasing::Leasing::new(opts.lease_ttl);
        Engine {
            inner: Arc::new(Inner {
                store,
                key,
                http,
                opts,
                link: tokio::sync::Mutex::new(None),
                tenant_locks: tokio::sync::Mutex::new(std::collections::HashMap::new()),
                umbrella_tokens: socbridge_connectors::umbrella::TokenCache::new(),
                umbrella_http: std::sync::OnceLock::new(),
                metrics: crate::metrics::EngineMetrics::default(),
                xdr_tokens: socbridge_connectors::TokenCache::new(),
                leasing,
                sources_view: tokio::sync::Mutex::new(None),
                backlogged: std::sync::Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The counters since this engine started (polls, outbox work).
    pub fn metrics(&self) -> &crate::metrics::EngineMetrics {
        &self.inner.metrics
    }

    /// Creates or updates every tenant and source the config lists, sealing their secrets.
    /// Tenants and sources added by the CLI and absent from the file are left alone.
    pub async fn apply_config(&self, cfg: &Config) -> Result<ApplyReport, EngineError> {
        let mut report = ApplyReport::default();
        for c in &cfg.credentials {
            self.save_credential(&c.name, &c.settings, Some(&c.secrets))
                .await?;
        }
        for t in &cfg.tenants {
            self.inner
                .store
                .upsert_tenant(&t.name, t.display_name.as_deref())
                .await?;
            report.tenants += 1;
            if let Some(policy) = &t.containment {
                self.inner
                    .store
                    .set_containment_policy(t.name.as_str(), Some(policy))
                    .await?;
            }
            self.save_xdr_sink(t.name.as_str(), t.xdr.as_ref()).await?;
            for s in &t.sources {
                self.save_source(t.name.as_str(), &s.name, &s.settings, Some(&s.secrets))
                    .await?;
                report.sources += 1;
            }
        }
        if let Some(sn) = &cfg.servicenow {
            let sealed = self
                .inner
                .key
                .seal_fields(&sn.secrets, &crate::ticketing::ticketing_aad());
            self.inner
                .store
                .set_ticketing(
                    crate::ticketing::SYSTEM,
                    &sn.settings.to_json(),
                    Some(&sealed),
                )
                .await?;
            self.reset_link().await;
            report.ticketing = true;
        }
        report.sinks = self.apply_sinks(&cfg.sinks).await?;
        Ok(report)
    }

    /// Turns a tenant's Cisco XDR sink on (its secret sealed) or, with `None`, off.
    pub async fn save_xdr_sink(
        &self,
        tenant: &str,
        xdr: Option<&crate::config::XdrSpec>,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let known = match xdr {
            Some(x) => {
                let sealed = self
                    .inner
                    .key
                    .seal_fields(&x.secrets, &socbridge_secrets::aad_for_xdr_sink(tenant));
                store
                    .set_xdr_sink(tenant, Some((&x.settings.to_json(), Some(&sealed))))
                    .await?
            }
            None => store.set_xdr_sink(tenant, None).await?,
        };
        if !known {
            return Err(EngineError::UnknownTenant(tenant.to_string()));
        }
        Ok(())
    }

    /// Creates or updates one source. `secrets: None` keeps the stored ones.
    pub async fn save_source(
        &self,
        tenant: &str,
        name: &SourceName,
        settings: &SourceSettings,
        secrets: Option<&SecretFields>,
    ) -> Result<SourceRecord, EngineError> {
        if self.inner.store.get_tenant(tenant).await?.is_none() {
            return Err(EngineError::UnknownTenant(tenant.to_string()));
        }
        let sealed = secrets.map(|s| {
            self.inner
                .key
                .seal_fields(s, &aad_for_source(tenant, name.as_str()))
        });
        Ok(self
            .inner
            .store
            .upsert_source(
                tenant,
                NewSource {
                    name: name.clone(),
                    kind: settings.kind(),
                    settings: settings.to_json(),
                    secret: sealed,
                },
            )
            .await?)
    }

    /// The sources a poll request names: one source, every source of a tenant, or all.
    pub async fn select_sources(
        &self,
        tenant: Option<&str>,
        source: Option<&str>,
    ) -> Result<Vec<SourceRecord>, EngineError> {
        let store = &self.inner.store;
        if let Some(t) = tenant {
            if store.get_tenant(t).await?.is_none() {
                return Err(EngineError::UnknownTenant(t.to_string()));
            }
        }
        let mut sources = store.list_sources(tenant).await?;
        if let Some(name) = source {
            sources.retain(|s| s.name == name);
            if sources.is_empty() {
                return Err(EngineError::UnknownSource {
                    tenant: tenant.unwrap_or("*").to_string(),
                    source_name: name.to_string(),
                });
            }
        } else if sources.is_empty() {
            if let Some(t) = tenant {
                return Err(EngineError::NoSources(t.to_string()));
            }
        }
        Ok(sources)
    }

    /// Polls the selected sources once, concurrently (bounded), each isolated from the others.
    pub async fn poll(
        &self,
        tenant: Option<&str>,
        source: Option<&str>,
    ) -> Result<Vec<PollReport>, EngineError> {
        let sources = self.select_sources(tenant, source).await?;
        Ok(self.poll_many(sources).await)
    }

    /// Polls every source until none has more waiting (cap or budget reached) or each was
    /// polled `max_rounds` times. What `serve --until-idle`, `demo --once` and `bench` use.
    ///
    /// Up to `concurrency` polls run at once, and a source with more waiting goes to the back
    /// of the queue as soon as its poll ends (read again, for the mark that poll moved): no
    /// round waits for its slowest poll, so the sources still busy keep every slot, and the
    /// store's single writer, fed. Reports are grouped by tenant and source, each source's in
    /// the order its polls ran.
    pub async fn poll_until_idle(&self, max_rounds: usize) -> Result<Vec<PollReport>, EngineError> {
        let max_rounds = max_rounds.max(1);
        let concurrency = self.inner.opts.concurrency.max(1);
        let mut queue: VecDeque<(SourceRecord, usize)> = self
            .select_sources(None, None)
            .await?
            .into_iter()
            .map(|s| (s, 1))
            .collect();
        let mut running = JoinSet::new();
        let mut all = Vec::new();
        let mut failed = None;
        loop {
            while failed.is_none() && running.len() < concurrency {
                let Some((src, round)) = queue.pop_front() else {
                    break;
                };
                let engine = self.clone();
                running.spawn(async move {
                    let report = engine.poll_claimed(&src).await;
                    (src.id, round, report)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (id, round, report) = match joined {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "a poll task panicked");
                    continue;
                }
            };
            if report.has_more() && round < max_rounds && failed.is_none() {
                // A source removed meanwhile is not found, and drops out.
                match self.inner.store.source_by_id(id).await {
                    Ok(Some(src)) => queue.push_back((src, round + 1)),
                    Ok(None) => {}
                    // The polls still running finish first; none is cut off mid-page.
                    Err(e) => failed = Some(e),
                }
            }
            all.push(report);
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        all.sort_by(|a, b| (&a.tenant, &a.source).cmp(&(&b.tenant, &b.source)));
        Ok(all)
    }

    async fn poll_many(&self, sources: Vec<SourceRecord>) -> Vec<PollReport> {
        let sem = Arc::new(Semaphore::new(self.inner.opts.concurrency.max(1)));
        let mut set = JoinSet::new();
        for (i, src) in sources.into_iter().enumerate() {
            let engine = self.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, engine.poll_claimed(&src).await)
            });
        }
        let mut reports: Vec<(usize, PollReport)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => reports.push(r),
                Err(e) => tracing::error!(error = %e, "a poll task panicked"),
            }
        }
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// Polls one source outside the scheduler: under a lease claimed for the poll, or not at
    /// all (said in the report) while another replica holds the source.
    async fn poll_claimed(&self, src: &SourceRecord) -> PollReport {
        let access = match self.access(&poll_job(src.id)).await {
            Ok(a) => a,
            Err(e) => {
                let mut report = PollReport::new(src);
                report.error = Some(format!("could not take the source's lease: {e}"));
                return report;
            }
        };
        let report = match access.fence() {
            Some(fence) => self.poll_source(src, Some(fence)).await,
            None => {
                let mut report = PollReport::new(src);
                report.error = Some(
                    "another replica polls this source now (it holds its lease; see `socbridge status`); skipped"
                        .into(),
                );
                report
            }
        };
        access.finish(&self.inner.store).await;
        report
    }

    /// Polls one source, its pages committed under `fence` when given. Never fails: errors
    /// are in the report and the source's `last_error`. A poll whose lease was lost stops at
    /// its next page and records nothing on the source: the replica that took it over does.
    pub async fn poll_source(&self, src: &SourceRecord, fence: Option<Fence>) -> PollReport {
        let started = Instant::now();
        let mut report = PollReport::new(src);
        report.fence = fence;
        let span =
            tracing::info_span!("poll", tenant = %src.tenant, source = %src.name, kind = %src.kind);
        let result = self
            .poll_source_inner(src, &mut report)
            .instrument(span)
            .await;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.note_backlog(src.id, result.is_ok() && report.has_more());
        let error = match result {
            Ok(()) => None,
            Err(Failure::LeaseLost) => {
                tracing::warn!(
                    tenant = %src.tenant, source = %src.name, pages = report.pages,
                    "poll stopped: another replica took this source over; its page was not committed"
                );
                report.error = Some("lease lost: another replica took this source over".into());
                self.inner.metrics.record_lease_lost("poll");
                return report;
            }
            Err(Failure::Other(e)) => Some(e),
        };
        if let Some(e) = &error {
            report.error = Some(e.clone());
            tracing::warn!(tenant = %src.tenant, source = %src.name, error = %e, "poll failed");
        } else {
            tracing::info!(
                tenant = %src.tenant, source = %src.name, pages = report.pages,
                new = report.new_findings, duplicates = report.duplicates,
                quarantined = report.quarantined, "poll done"
            );
        }
        if let Err(e) = self
            .inner
            .store
            .record_poll(src.id, Timestamp::now(), error.as_deref())
            .await
        {
            tracing::error!(tenant = %src.tenant, source = %src.name, error = %e, "could not record the poll");
        }
        self.inner.metrics.record_poll(&report);
        report
    }

    /// A source's settings and its credentials, opened.
    pub(crate) fn open_source(
        &self,
        src: &SourceRecord,
    ) -> Result<(SourceSettings, SecretFields), String> {
        let settings = SourceSettings::from_json(&src.settings)?;
        let sealed = src
            .secret
            .as_deref()
            .ok_or_else(|| "no credentials are stored for this source".to_string())?;
        let secrets = self
            .inner
            .key
            .open_fields(sealed, &aad_for_source(&src.tenant, &src.name))
            .map_err(|e| e.to_string())?;
        Ok((settings, secrets))
    }

    /// The vendor client of a source, with its settings: its sealed credentials opened for
    /// as long as the client lives.
    pub(crate) async fn source_client(&self, src: &SourceRecord) -> Result<SourceClient, String> {
        let (settings, secrets) = self.open_source(src)?;
        match settings {
            SourceSettings::SecureEndpoint(se) => {
                let api_key = secrets
                    .get("api_key")
                    .cloned()
                    .ok_or_else(|| "the stored credentials lack `api_key`".to_string())?;
                let client = SecureEndpointClient::new(
                    &se.base_url,
                    &se.client_id,
                    api_key,
                    self.inner.http.clone(),
                )
                .map_err(|e| e.to_string())?;
                Ok(SourceClient::SecureEndpoint(se, client))
            }
            SourceSettings::SymantecMss(mss) => {
                let client = crate::symantec::client(&mss, &secrets, &self.inner.opts.http)
                    .map_err(|e| e.to_string())?;
                Ok(SourceClient::SymantecMss(mss, client))
            }
            SourceSettings::Umbrella(u) => {
                let client = self.umbrella_client(&u.credential).await?;
                Ok(SourceClient::Umbrella(u, client))
            }
        }
    }

    /// Whether the last poll of this source in this process left more waiting.
    fn expects_backlog(&self, source_id: i64) -> bool {
        self.inner
            .backlogged
            .lock()
            .is_ok_and(|set| set.contains(&source_id))
    }

    fn note_backlog(&self, source_id: i64, more: bool) {
        if let Ok(mut set) = self.inner.backlogged.lock() {
            if more {
                set.insert(source_id);
            } else {
                set.remove(&source_id);
            }
        }
    }

    async fn poll_source_inner(
        &self,
        src: &SourceRecord,
        report: &mut PollReport,
    ) -> Result<(), Failure> {
        match self.source_client(src).await.map_err(Failure::Other)? {
            SourceClient::SecureEndpoint(se, client) => poll_secure_endpoint(
                &self.inner.store,
                src,
                &se,
                &client,
                self.inner.opts.poll_budget,
                self.expects_backlog(src.id),
                report,
            )
            .await
            .map_err(Failure::from),
            SourceClient::SymantecMss(mss, client) => crate::symantec::poll(
                &self.inner.store,
                src,
                &mss,
                &client,
                self.inner.opts.poll_budget,
                report,
            )
            .await
            .map_err(Failure::from),
            SourceClient::Umbrella(u, client) => crate::umbrella::poll(
                &self.inner.store,
                src,
                &u,
                &client,
                self.inner.opts.poll_budget,
                report,
            )
            .await
            .map_err(Failure::from),
        }
    }

    /// Checks the credentials of the selected sources against their vendors.
    pub async fn check(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(SourceRecord, Result<(), String>)>, EngineError> {
        let sources = self.select_sources(tenant, None).await?;
        let mut out = Vec::new();
        for src in sources {
            let res = match self.source_client(&src).await {
                Ok(SourceClient::SecureEndpoint(_, client)) => {
                    client.check().await.map_err(|e| e.to_string())
                }
                Ok(SourceClient::SymantecMss(_, client)) => {
                    client.check().await.map_err(|e| e.to_string())
                }
                Ok(SourceClient::Umbrella(u, client)) => client
                    .check(u.org_id.as_deref())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            out.push((src, res));
        }
        Ok(out)
    }

    /// The scheduler of `serve`: takes this replica's share of the jobs (lease rounds, see
    /// [`crate::leasing`]), polls each source it holds when its interval has passed since its
    /// last poll (by any replica), one poll per source at a time, until `shutdown` fires; then
    /// waits for the polls in flight (each commits page by page, so stopping between pages
    /// loses nothing; one still waiting on its vendor after 10 s is stopped, its page not
    /// committed) and gives its leases back.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), EngineError> {
        self.start_leasing();
        // The first round before any work, so that the first tick already has jobs.
        if let Err(e) = self.lease_round().await {
            tracing::error!(error = %e, "lease round failed; retrying");
        }
        let rounds = tokio::spawn(self.clone().run_lease_rounds(shutdown.clone()));
        let tickets = tokio::spawn(self.clone().run_ticketing(shutdown.clone()));
        let push = tokio::spawn(crate::push::run(self.clone(), shutdown.clone()));
        let sinks = tokio::spawn(self.clone().run_sinks(shutdown.clone()));
        let result = self.run_polls(shutdown).await;
        let _ = tickets.await;
        let _ = push.await;
        let _ = sinks.await;
        let _ = rounds.await;
        self.stop_leasing().await;
        result
    }

    /// A lease round every third of the lease's time to live until shutdown.
    async fn run_lease_rounds(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.inner.leasing.round_every());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(e) = self.lease_round().await {
                tracing::error!(error = %e, "lease round failed; retrying on the next round");
            }
        }
    }

    /// The ticketing half of `serve`: the outbox worker every tick and whenever this process
    /// queues outbox work, ServiceNow sync-in every `sync_interval`. Each pass finishes what
    /// it started before shutdown is honoured.
    async fn run_ticketing(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.inner.opts.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sync: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
                // New work starts at once; retries and other processes' work wait for a tick.
                _ = self.inner.store.outbox_queued() => {}
            }
            // Containment and vendor write-backs go on without ticketing; ticket work waits
            // for it (process_outbox skips it while there is no link).
            if let Err(e) = self.process_outbox().await {
                tracing::error!(error = %e, "outbox pass failed");
            }
            let link = match self.link().await {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "ServiceNow link unusable");
                    continue;
                }
            };
            let every = Duration::from_secs(link.settings.sync_interval_secs.max(1));
            // One replica reads ServiceNow's changes for all.
            let mine = self
                .inner
                .leasing
                .held_fence(&socbridge_store::sync_job())
                .is_some();
            if mine && last_sync.is_none_or(|t| t.elapsed() >= every) {
                last_sync = Some(Instant::now());
                match self.sync_tickets().await {
                    Ok(r) if r.incidents_changed + r.notes_taken_in > 0 => {
                        tracing::info!(
                            changed = r.incidents_changed,
                            notes = r.notes_taken_in,
                            "ticket changes taken in"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "ServiceNow sync-in failed; retrying later")
                    }
                }
            }
        }
    }

    async fn run_polls(&self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let sem = Arc::new(Semaphore::new(self.inner.opts.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut ticker = tokio::time::interval(self.inner.opts.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            while tasks.try_join_next().is_some() {}
            let now = Timestamp::now();
            let view = match self.sources_view().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list sources; retrying on the next tick");
                    continue;
                }
            };
            // Only the sources not polled for the shortest interval can be due: one light
            // query, then each one's own interval.
            let shortest = view.shortest_interval();
            let candidates: HashMap<i64, Option<Timestamp>> = match self
                .inner
                .store
                .sources_polled_before(crate::sources_view::before(now, shortest))
                .await
            {
                Ok(c) => c.into_iter().collect(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read which sources are due; retrying on the next tick");
                    continue;
                }
            };
            for viewed in &view.sources {
                let id = viewed.record.id;
                let Some(&last_poll_at) = candidates.get(&id) else {
                    continue;
                };
                if !crate::sources_view::is_due(viewed.interval, last_poll_at, now) {
                    continue;
                }
                let job = poll_job(id);
                // Only the sources whose lease this replica holds; others poll the rest.
                let Some(fence) = self.inner.leasing.held_fence(&job) else {
                    continue;
                };
                let Some(busy) = self.try_busy(&job) else {
                    continue;
                };
                let engine = self.clone();
                let sem = sem.clone();
                tasks.spawn(async move {
                    let _busy = busy;
                    let _permit = sem.acquire_owned().await;
                    // The source as stored now: its cursor mark moves with every ingest.
                    match engine.inner.store.source_by_id(id).await {
                        Ok(Some(src)) => {
                            engine.poll_source(&src, Some(fence)).await;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(source_id = id, error = %e, "cannot read a source due a poll; retrying on the next tick");
                        }
                    }
                });
            }
        }
        // Polls in flight finish their page; one stuck on a vendor that does not answer is
        // stopped after the grace (its page uncommitted: the next poll reads it again).
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                polls = tasks.len(),
                grace = ?SHUTDOWN_GRACE,
                "stopping the polls still waiting on their vendor"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        Ok(())
    }
}

/// How long shutdown waits for the polls in flight before it stops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How a poll ended badly: its lease lost (stop quietly) or any other error (recorded).
enum Failure {
    LeaseLost,
    Other(String),
}

impl From<PollError> for Failure {
    fn from(e: PollError) -> Self {
        match e {
            PollError::Store(StoreError::LeaseLost { .. }) => Failure::LeaseLost,
            e => Failure::Other(e.to_string()),
        }
    }
}
