//! The store's test suite, written once and run against both backends: every test below is an
//! `async fn(&TestDb)`, and `both_backends!` instantiates it as `sqlite::<name>` (a fresh temp
//! file) and `postgres::<name>` (a fresh schema in the server at 127.0.0.1:5432, or
//! `SOCBRIDGE_TEST_POSTGRES_URL`). The PostgreSQL tests fail, never skip, when the server is
//! unreachable: a suite that silently runs on one backend proves nothing about the other.

use serde_json::json;
use socbridge_model::{
    Finding, IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView, Observable,
    ObservableKind, Quarantined, Severity, SourceKind, SourceName, Subject, TenantName, Timestamp,
};
use socbridge_store::{
    Backend, IngestBatch, IngestOutcome, Lease, NewSource, Replica, ReplicaId, SourceRecord, Store,
    StoreError, fair_share, poll_job,
};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

// ---------------------------------------------------------------------------------------------
// Harness

/// A database owned by one test: a temp SQLite file, or a PostgreSQL schema dropped at the end.
struct TestDb {
    backend: Backend,
    /// SQLite: the file (its directory is removed with `_dir`).
    path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server and the schema.
    url: String,
    schema: Option<String>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temp dir for the test database");
        let path = dir.path().join("socbridge.db");
        TestDb {
            backend: Backend::Sqlite,
            path: Some(path),
            _dir: Some(dir),
            url: String::new(),
            schema: None,
        }
    }

    async fn postgres() -> TestDb {
        let url = std::env::var("SOCBRIDGE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let schema = format!("socbridge_test_{:016x}", rand::random::<u64>());
        let db = TestDb {
            backend: Backend::Postgres,
            path: None,
            _dir: None,
            url,
            schema: Some(schema),
        };
        // Fail loudly here rather than in the first statement of the test.
        db.open().await.close().await;
        db
    }

    /// A new `Store` on this test's database (a second one is another process or replica).
    async fn open(&self) -> Store {
        match self.backend {
            Backend::Sqlite => {
                let path = self
                    .path
                    .as_ref()
                    .expect("a SQLite test database has a path");
                Store::open_sqlite(path)
                    .await
                    .expect("open the SQLite test database")
            }
            Backend::Postgres => {
                let schema = self
                    .schema
                    .as_deref()
                    .expect("a PostgreSQL test database has a schema");
                match Store::connect_in_schema(&self.url, schema).await {
                    Ok(store) => store,
                    Err(e) => panic!(
                        "the PostgreSQL suite needs a server at {} (set SOCBRIDGE_TEST_POSTGRES_URL \
                         to use another), and it is unreachable or refused: {e}",
                        self.url
                    ),
                }
            }
        }
    }
}

impl Drop for TestDb {
    /// Drops the test's schema, best effort (also when the test failed). Runs on its own
    /// thread and runtime because `Drop` cannot await.
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let url = self.url.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                use sqlx::{Connection as _, Executor as _};
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&url).await?;
                conn.execute("SET lock_timeout = '5s'").await?;
                conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                    .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test schema: {e}");
        }
    }
}

/// Instantiates each suite test for both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::postgres().await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

both_backends!(
    migrations_are_idempotent,
    tenants_crud_and_conflict,
    sources_upsert_keeps_one_row_and_never_shows_the_secret,
    the_sources_fingerprint_moves_with_saves_and_removals_only,
    record_poll_keeps_the_last_error_until_a_good_poll,
    ingest_stores_a_batch_once_and_keeps_the_mark,
    the_cap_stops_the_batch_and_the_rest_comes_next_time,
    findings_of_one_computer_make_one_incident_while_it_is_open,
    the_head_of_an_incident_holds_its_first_findings_and_counts_them_all,
    vendor_incidents_reattach_even_when_closed,
    quarantine_keeps_each_record_once_by_its_bytes,
    list_filters_and_order,
    list_filters_by_source_and_free_text,
    tenant_scope_hides_other_tenants_incidents,
    updates_write_only_changes_each_with_its_timeline_entry,
    reopening_conflicts_with_the_subjects_open_incident,
    removing_a_tenant_removes_everything_it_owns,
    concurrent_ingest_neither_loses_nor_doubles,
    two_sources_feeding_the_same_incidents_at_once,
    ticket_work_is_enqueued_with_the_change_and_can_be_failed_and_retried,
    vendor_writeback_follows_local_and_ticket_changes_of_vendor_incidents,
    containment_is_planned_with_the_incident_and_released_on_close,
    tokens_are_stored_hashed_scoped_and_revocable,
    cursor_paging_walks_every_incident_once_newest_first,
    sink_work_is_queued_with_the_change_and_delivered_per_sink,
    xdr_work_follows_new_incidents_and_every_status_change,
    replicas_racing_for_a_job_hold_it_one_at_a_time_with_growing_tokens,
    an_expired_lease_is_taken_over_and_the_old_holders_ingest_is_refused,
    acquire_many_spreads_jobs_fairly_over_the_live_replicas,
    acquire_many_under_churn_never_grants_a_job_twice,
    a_takeover_waits_for_the_fenced_ingest_in_flight,
);

async fn the_head_of_an_incident_holds_its_first_findings_and_counts_them_all(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let findings: Vec<Finding> = (0..30)
        .map(|i| endpoint_finding(&format!("e{i}"), "pc0", 100 - i, Severity::High, "10.0.0.9"))
        .collect();
    ingest(&store, &src, findings).await;
    let id = all_incidents(&store).await[0].id;
    let full = store.get_incident(id, None).await.unwrap().unwrap();
    assert_eq!(full.findings.len(), 30);
    let head = store.get_incident_head(id, None, 5).await.unwrap().unwrap();
    assert_eq!(head.incident.finding_count, 30);
    assert_eq!(head.incident, full.incident);
    assert_eq!(head.timeline, full.timeline);
    // The first by time observed, in the same order as the full read.
    assert_eq!(head.findings, full.findings[..5]);
    assert_eq!(head.findings[0].vendor_key, "e29");
    let none = store.get_incident_head(id, None, 0).await.unwrap().unwrap();
    assert!(none.findings.is_empty());
    // Scope applies as to the full read.
    let other = ["globex".to_string()];
    assert!(
        store
            .get_incident_head(id, Some(&other), 5)
            .await
            .unwrap()
            .is_none()
    );
}

async fn xdr_work_follows_new_incidents_and_every_status_change(db: &TestDb) {
    use socbridge_store::{OutboxKind, TARGET_XDR};
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let xdr_work = |store: Store| async move {
        let mut work: Vec<(i64, OutboxKind)> = store
            .open_outbox()
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.target == TARGET_XDR)
            .map(|o| (o.incident_id, o.kind))
            .collect();
        work.sort_unstable_by_key(|w| (w.0, w.1.as_str()));
        work
    };
    // Before the sink is on, nothing is queued for XDR.
    ingest(
        &store,
        &src,
        vec![endpoint_finding("e0", "pc0", 5, Severity::High, "10.0.0.9")],
    )
    .await;
    let before = all_incidents(&store).await[0].id;
    assert!(xdr_work(store.clone()).await.is_empty());
    assert!(store.xdr_incident(before).await.unwrap().is_none());

    let settings = json!({"client_id": "client-1"});
    assert!(
        store
            .set_xdr_sink("acme", Some((&settings, Some(b"sealed"))))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_xdr_sink("nobody", Some((&settings, None)))
            .await
            .unwrap(),
        "no such tenant"
    );
    let sink = store
        .xdr_sink("acme")
        .await
        .unwrap()
        .expect("the sink is on");
    assert_eq!(sink.settings, settings);
    assert!(format!("{sink:?}").contains("[sealed]"));
    // A settings change without a secret keeps the sealed one.
    store
        .set_xdr_sink("acme", Some((&settings, None)))
        .await
        .unwrap();
    assert_eq!(
        store
            .xdr_sink("acme")
            .await
            .unwrap()
            .unwrap()
            .secret
            .as_deref(),
        Some(&b"sealed"[..])
    );

    // A new incident: its XDR incident and its create, in the ingest's transaction.
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "e1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let new = all_incidents(&store)
        .await
        .into_iter()
        .find(|i| i.id != before)
        .unwrap()
        .id;
    let rec = store.xdr_incident(new).await.unwrap().expect("recorded");
    let parts: Vec<&str> = rec.external_id.split(':').collect();
    assert_eq!(parts.len(), 5, "{}", rec.external_id);
    assert_eq!(
        (parts[0], parts[2], parts[3], parts[4]),
        ("socbridge", "acme", "incident", new.to_string().as_str())
    );
    assert_eq!(parts[1].len(), 16, "the store's id: {}", rec.external_id);
    assert!(rec.xdr_id.is_none());
    assert_eq!(
        xdr_work(store.clone()).await,
        vec![(new, OutboxKind::XdrCreate)]
    );

    // A close taken in from ServiceNow (Origin::Ticket) reaches XDR; so does an analyst's
    // change of an incident from before the sink, which gets its create first.
    store
        .apply_ticket_change(new, &update(Some(IncidentStatus::Resolved)), None)
        .await
        .unwrap()
        .unwrap();
    store
        .update_incident(before, None, &update(Some(IncidentStatus::InProgress)))
        .await
        .unwrap()
        .unwrap();
    // A change that leaves the status alone queues nothing for XDR.
    store
        .update_incident(
            new,
            None,
            &IncidentUpdate {
                assignee: Some("bob".into()),
                ..update(None)
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        xdr_work(store.clone()).await,
        vec![
            (before, OutboxKind::XdrCreate),
            (new, OutboxKind::XdrCreate),
            (new, OutboxKind::XdrSync),
        ]
    );
    let both = store.xdr_incidents(Some("acme")).await.unwrap();
    assert_eq!(both.len(), 2);
    assert_ne!(both[0].external_id, both[1].external_id);
    assert!(
        store
            .xdr_incidents(Some("globex"))
            .await
            .unwrap()
            .is_empty()
    );

    store
        .record_xdr_incident(
            new,
            "https://ctia/ctia/incident/incident-1",
            "Closed",
            Some(("xdr_linked", "created")),
        )
        .await
        .unwrap();
    let rec = store.xdr_incident(new).await.unwrap().unwrap();
    assert_eq!(
        rec.xdr_id.as_deref(),
        Some("https://ctia/ctia/incident/incident-1")
    );
    assert_eq!(rec.status.as_deref(), Some("Closed"));

    // Off: nothing more is queued.
    assert!(store.set_xdr_sink("acme", None).await.unwrap());
    assert!(store.xdr_sink("acme").await.unwrap().is_none());
    store
        .update_incident(before, None, &update(Some(IncidentStatus::Resolved)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(xdr_work(store.clone()).await.len(), 3);
}

async fn sink_work_is_queued_with_the_change_and_delivered_per_sink(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    // Without a sink nothing is queued.
    ingest(
        &store,
        &src,
        vec![endpoint_finding("e0", "pc0", 5, Severity::High, "10.0.0.9")],
    )
    .await;
    let settings = json!({"url": "http://collector"});
    let sinks = |names: &'static [&'static str]| -> Vec<socbridge_store::NewSink<'_>> {
        names
            .iter()
            .map(|n| socbridge_store::NewSink {
                name: n,
                settings: &settings,
                secret: Some(b"sealed"),
            })
            .collect()
    };
    store.set_sinks(&sinks(&["a", "b"])).await.unwrap();
    assert_eq!(store.sink_backlog("a").await.unwrap(), 0);
    let shown = format!("{:?}", store.sinks().await.unwrap());
    assert!(
        shown.contains("[sealed]") && !shown.contains("115, 101"),
        "{shown}"
    );

    // One row per ingest transaction, whatever its size; one per incident change.
    ingest(
        &store,
        &src,
        vec![
            endpoint_finding("e1", "pc1", 10, Severity::High, "10.0.0.1"),
            endpoint_finding("e2", "pc1", 11, Severity::High, "10.0.0.1"),
            endpoint_finding("e3", "pc2", 12, Severity::High, "10.0.0.2"),
            endpoint_finding("e0", "pc0", 5, Severity::High, "10.0.0.9"),
        ],
    )
    .await;
    let rows = store.pending_sink_batches("a", 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].tenant, "acme");
    assert_eq!(rows[0].finding_ids.len(), 3, "the duplicate is not queued");
    assert_eq!(rows[0].incident_ids.len(), 2);
    // A batch of duplicates only queues nothing.
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "e1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let closed = rows[0].incident_ids[0];
    store
        .update_incident(closed, None, &update(Some(IncidentStatus::Closed)))
        .await
        .unwrap()
        .unwrap();
    // Nothing changed: nothing queued.
    store
        .update_incident(closed, None, &update(Some(IncidentStatus::Closed)))
        .await
        .unwrap();
    let rows = store.pending_sink_batches("a", 100).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[1].finding_ids.len(), rows[1].incident_ids.clone()),
        (0, vec![closed])
    );

    // Delivered per sink: a's marks do not deliver b's; a row both delivered is deleted.
    store.sink_delivered("a", &[rows[1].id]).await.unwrap();
    assert_eq!(store.sink_backlog("a").await.unwrap(), 1);
    assert_eq!(store.sink_backlog("b").await.unwrap(), 2);
    let left = store.pending_sink_batches("a", 100).await.unwrap();
    assert_eq!(
        left,
        vec![rows[0].clone()],
        "a lower id left behind is still pending"
    );
    store
        .sink_delivered("b", &[rows[1].id, rows[1].id])
        .await
        .unwrap();
    assert_eq!(
        store.pending_sink_batches("b", 100).await.unwrap(),
        vec![rows[0].clone()]
    );

    // Removing sink b (not in the config any more) leaves a's work alone; removing all
    // empties the queue, and nothing is queued after.
    store.set_sinks(&sinks(&["a"])).await.unwrap();
    assert_eq!(store.sink_backlog("a").await.unwrap(), 1);
    store.set_sinks(&[]).await.unwrap();
    assert!(store.sinks().await.unwrap().is_empty());
    store
        .update_incident(closed, None, &update(Some(IncidentStatus::InProgress)))
        .await
        .unwrap();
    store.set_sinks(&sinks(&["a"])).await.unwrap();
    assert_eq!(store.sink_backlog("a").await.unwrap(), 0);
}

async fn tokens_are_stored_hashed_scoped_and_revocable(db: &TestDb) {
    use socbridge_store::{NewToken, TokenRole, token_hash};
    let store = db.open().await;
    tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    tenant_with_source(&store, "globex", "amp", SourceKind::SecureEndpoint).await;
    let tenants = vec!["acme".to_string(), "globex".to_string(), "acme".to_string()];
    let analyst = store
        .create_token(&NewToken {
            token: "sbt_analyst-secret-token",
            label: Some("alice"),
            role: TokenRole::Analyst,
            tenants: &tenants,
        })
        .await
        .unwrap();
    assert_eq!(analyst.tenants, ["acme", "globex"]);
    assert_eq!(analyst.prefix, "sbt_analys");
    assert_eq!(
        analyst.scope(),
        Some(&["acme".to_string(), "globex".to_string()][..])
    );
    let admin = store
        .create_token(&NewToken {
            token: "sbt_admin-secret-token",
            label: None,
            role: TokenRole::Admin,
            tenants: &[],
        })
        .await
        .unwrap();
    assert_eq!(admin.scope(), None);

    // Refusals: an analyst without tenants, an admin with some, an unknown tenant.
    let refused = |role, tenants: Vec<String>| {
        let store = store.clone();
        async move {
            store
                .create_token(&NewToken {
                    token: "sbt_other",
                    label: None,
                    role,
                    tenants: &tenants,
                })
                .await
                .unwrap_err()
        }
    };
    assert!(matches!(
        refused(TokenRole::Analyst, vec![]).await,
        StoreError::Conflict { .. }
    ));
    assert!(matches!(
        refused(TokenRole::Admin, vec!["acme".into()]).await,
        StoreError::Conflict { .. }
    ));
    assert!(matches!(
        refused(TokenRole::Analyst, vec!["initech".into()]).await,
        StoreError::NotFound { .. }
    ));

    // Found by the token, never by anything else; the token itself is not stored.
    let found = store
        .authenticate_token("sbt_analyst-secret-token")
        .await
        .unwrap();
    assert_eq!(found.as_ref().map(|t| t.id), Some(analyst.id));
    assert!(
        store
            .authenticate_token("sbt_analyst-secret-toke")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .authenticate_token(&token_hash("sbt_analyst-secret-token"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(token_hash("x").len(), 64);

    // Removing a tenant removes it from every scope.
    assert!(store.remove_tenant("globex").await.unwrap());
    let found = store
        .authenticate_token("sbt_analyst-secret-token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.tenants, ["acme"]);

    // Revoked: no longer authenticates, still listed.
    assert!(store.revoke_token(analyst.id).await.unwrap());
    assert!(!store.revoke_token(analyst.id).await.unwrap());
    assert!(
        store
            .authenticate_token("sbt_analyst-secret-token")
            .await
            .unwrap()
            .is_none()
    );
    let all = store.list_tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].revoked_at.is_some() && all[1].revoked_at.is_none());
    store.schema_ready().await.unwrap();
}

async fn cursor_paging_walks_every_incident_once_newest_first(db: &TestDb) {
    let store = db.open().await;
    let acme = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    // One batch: several incidents share one updated_at, so the id breaks the ties.
    let findings = (0..7)
        .map(|i| {
            endpoint_finding(
                &format!("e{i}"),
                &format!("pc{i}"),
                10 + i,
                Severity::High,
                "10.0.0.1",
            )
        })
        .collect();
    ingest(&store, &acme, findings).await;
    tick().await;
    ingest(
        &store,
        &acme,
        vec![endpoint_finding(
            "late",
            "pc-late",
            50,
            Severity::Low,
            "10.0.0.2",
        )],
    )
    .await;
    let all: Vec<i64> = all_incidents(&store).await.iter().map(|i| i.id).collect();
    assert_eq!(all.len(), 8);
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_incidents(&IncidentFilter {
                limit: Some(3),
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        walked.extend(page.iter().map(|i| i.id));
        match page.last() {
            Some(last) if page.len() == 3 => before = Some((last.updated_at, last.id)),
            _ => break,
        }
    }
    assert_eq!(walked, all, "every incident once, in the list's order");
}

async fn ticket_work_is_enqueued_with_the_change_and_can_be_failed_and_retried(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    // Before ticketing is on, no work is queued.
    ingest(
        &store,
        &src,
        vec![endpoint_finding("e0", "pc0", 5, Severity::High, "10.0.0.9")],
    )
    .await;
    assert_eq!(store.outbox_stats().await.unwrap().pending, 0);
    store
        .set_ticketing("servicenow", &serde_json::json!({}), Some(b"sealed"))
        .await
        .unwrap();
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "e1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let due = store.due_outbox(Timestamp::now(), 100).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].kind, socbridge_store::OutboxKind::Create);
    let ticket = store
        .ticket_of_incident(due[0].incident_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ticket.correlation_id,
        format!("socbridge:acme:{}", due[0].incident_id)
    );
    store
        .outbox_failed(due[0].id, "refused", None)
        .await
        .unwrap();
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (0, 1));
    assert_eq!(store.outbox_retry_failed(Some("acme")).await.unwrap(), 1);
    assert_eq!(store.outbox_retry_failed(None).await.unwrap(), 0);
    assert_eq!(store.open_outbox().await.unwrap().len(), 1);
}

async fn vendor_writeback_follows_local_and_ticket_changes_of_vendor_incidents(db: &TestDb) {
    use socbridge_store::{OutboxKind, TARGET_SERVICENOW, TARGET_VENDOR};
    let store = db.open().await;
    let mss = tenant_with_source(&store, "acme", "mss", SourceKind::SymantecMss).await;
    let amp = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    ingest(
        &store,
        &mss,
        vec![mss_finding("7:v1", "7", 1, Severity::High)],
    )
    .await;
    ingest(
        &store,
        &amp,
        vec![endpoint_finding("e1", "pc1", 2, Severity::High, "10.0.0.1")],
    )
    .await;
    let incidents = all_incidents(&store).await;
    let id_of = |kind: SourceKind| {
        incidents
            .iter()
            .find(|i| i.sources.contains(&kind))
            .map(|i| i.id)
            .expect("an incident of each source")
    };
    let (vendor_incident, endpoint_incident) = (
        id_of(SourceKind::SymantecMss),
        id_of(SourceKind::SecureEndpoint),
    );

    // Ticketing is off: an analyst's close still goes back to the vendor, and only there.
    for id in [vendor_incident, endpoint_incident] {
        store
            .update_incident(id, None, &update(Some(IncidentStatus::Resolved)))
            .await
            .unwrap()
            .unwrap();
    }
    let open = store.open_outbox().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].incident_id, open[0].target.as_str(), open[0].kind),
        (vendor_incident, TARGET_VENDOR, OutboxKind::Writeback)
    );
    // A second change without a comment rides on the pending write-back.
    store
        .update_incident(
            vendor_incident,
            None,
            &IncidentUpdate {
                assignee: Some("bob".into()),
                actor: "test:alice".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.open_outbox().await.unwrap().len(), 1);

    // With ticketing on, a change from the ticket goes to the vendor (not back to the ticket),
    // and a comment is its own write-back item.
    store
        .set_ticketing("servicenow", &json!({}), Some(b"sealed"))
        .await
        .unwrap();
    let from_ticket = IncidentUpdate {
        status: Some(IncidentStatus::InProgress),
        comment: Some("called the customer".into()),
        actor: "servicenow:carol".into(),
        ..Default::default()
    };
    store
        .apply_ticket_change(vendor_incident, &from_ticket, Some("j1"))
        .await
        .unwrap()
        .unwrap();
    let open = store.open_outbox().await.unwrap();
    let targets: Vec<_> = open.iter().map(|i| (i.target.as_str(), i.kind)).collect();
    assert_eq!(
        targets,
        vec![
            (TARGET_VENDOR, OutboxKind::Writeback),
            (TARGET_VENDOR, OutboxKind::Writeback)
        ]
    );
    assert_eq!(open[1].payload["comment"], json!("called the customer"));
    assert_eq!(open[1].payload["origin"], json!("ticket"));

    // A local change now reaches both; the ticket's work does not wait behind the vendor's.
    store
        .update_incident(vendor_incident, None, &update(Some(IncidentStatus::Closed)))
        .await
        .unwrap()
        .unwrap();
    let due = store.due_outbox(Timestamp::now(), 100).await.unwrap();
    let mut due: Vec<_> = due.iter().map(|i| (i.target.as_str(), i.kind)).collect();
    due.sort_by_key(|(t, _)| *t);
    assert_eq!(
        due,
        vec![
            (TARGET_SERVICENOW, OutboxKind::Create),
            (TARGET_VENDOR, OutboxKind::Writeback)
        ],
        "one item per incident and target, each target in its own order"
    );
}

async fn containment_is_planned_with_the_incident_and_released_on_close(db: &TestDb) {
    use socbridge_model::{ContainmentPolicy, PolicyAction};
    use socbridge_store::{ActionChange, ManualAction, OutboxKind};
    let store = db.open().await;
    let amp = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let mss = tenant_with_source(&store, "acme", "mss", SourceKind::SymantecMss).await;
    let policy = ContainmentPolicy {
        action: PolicyAction::Isolate,
        deny_hosts: Some("^SRV-".into()),
        ..ContainmentPolicy::default()
    };
    assert!(
        store
            .set_containment_policy("acme", Some(&policy))
            .await
            .unwrap()
    );
    assert_eq!(
        store.containment_policy("acme").await.unwrap(),
        Some(policy)
    );

    // A high incident on a workstation is planned; a server is skipped by the deny pattern;
    // a medium one is not covered (nothing recorded).
    ingest(
        &store,
        &amp,
        vec![
            endpoint_finding("e1", "WIN-1", 1, Severity::High, "10.0.0.1"),
            endpoint_finding("e2", "SRV-1", 2, Severity::Critical, "10.0.0.2"),
            endpoint_finding("e3", "WIN-2", 3, Severity::Medium, "10.0.0.3"),
        ],
    )
    .await;
    // Read twice: still one action each.
    ingest(
        &store,
        &amp,
        vec![endpoint_finding(
            "e4",
            "WIN-1",
            4,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let incidents = all_incidents(&store).await;
    let by_host = |h: &str| {
        incidents
            .iter()
            .find(|i| i.title.ends_with(h))
            .unwrap_or_else(|| panic!("an incident on {h}"))
            .clone()
    };
    let win = by_host("WIN-1");
    assert_eq!(win.actions.len(), 1);
    assert_eq!(
        (win.actions[0].kind.as_str(), win.actions[0].state.as_str()),
        ("isolate", "planned")
    );
    assert_eq!(win.actions[0].target, "guid-WIN-1");
    let srv = by_host("SRV-1");
    assert_eq!(srv.actions[0].state, "skipped");
    assert!(srv.actions[0].reason.as_deref().unwrap().contains("^SRV-"));
    assert!(by_host("WIN-2").actions.is_empty());
    let due = store.due_outbox(Timestamp::now(), 100).await.unwrap();
    assert_eq!(
        due.iter().filter(|i| i.kind == OutboxKind::Contain).count(),
        1
    );
    let contain = due.iter().find(|i| i.kind == OutboxKind::Contain).unwrap();
    assert_eq!(contain.target, socbridge_store::TARGET_CONTAINMENT);
    store.outbox_done(contain.id, None).await.unwrap();

    // The worker applies it; closing the incident queues its release, once.
    let id = win.actions[0].id;
    store
        .update_action(
            id,
            &ActionChange {
                state: Some(socbridge_model::ActionState::Applied),
                reason: Some("isolated".into()),
                unlock_code: Some(vec![1, 2, 3]),
                ..ActionChange::default()
            },
        )
        .await
        .unwrap();
    let rec = store.action(id).await.unwrap().unwrap();
    assert_eq!(rec.unlock_code.as_deref(), Some(&[1u8, 2, 3][..]));
    store
        .update_incident(win.id, None, &update(Some(IncidentStatus::Resolved)))
        .await
        .unwrap()
        .unwrap();
    let due = store.due_outbox(Timestamp::now(), 100).await.unwrap();
    let releases: Vec<_> = due
        .iter()
        .filter(|i| i.kind == OutboxKind::Release)
        .collect();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].payload["action"], json!(id));
    let detail = store.get_incident(win.id, None).await.unwrap().unwrap();
    assert!(
        detail
            .timeline
            .iter()
            .any(|e| e.kind == "containment" && e.detail.contains("planned -> applied")),
        "{:?}",
        detail.timeline
    );

    // By hand: the server is refused by the deny pattern; a vendor incident has no computer;
    // another tenant's incident is out of scope.
    let refused = store
        .contain_incident(
            srv.id,
            None,
            &ManualAction::MoveTo("Triage".into()),
            "cli:bob",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused.state, "skipped");
    ingest(
        &store,
        &mss,
        vec![mss_finding("9:v1", "9", 5, Severity::High)],
    )
    .await;
    let vendor = all_incidents(&store)
        .await
        .into_iter()
        .find(|i| i.sources.contains(&SourceKind::SymantecMss))
        .unwrap();
    let err = store
        .contain_incident(vendor.id, None, &ManualAction::Isolate, "cli:bob")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Secure Endpoint computer"),
        "{err}"
    );
    let other = vec!["globex".to_string()];
    assert!(
        store
            .contain_incident(srv.id, Some(&other), &ManualAction::Isolate, "cli:bob")
            .await
            .unwrap()
            .is_none()
    );
    let manual = store
        .contain_incident(by_host("WIN-2").id, None, &ManualAction::Isolate, "cli:bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((manual.state.as_str(), manual.manual), ("planned", true));
    // Its work is queued with it, once: asking again while it is planned adds nothing.
    store
        .contain_incident(by_host("WIN-2").id, None, &ManualAction::Isolate, "cli:bob")
        .await
        .unwrap()
        .unwrap();
    let outbox = store.open_outbox().await.unwrap();
    let contains: Vec<_> = outbox
        .iter()
        .filter(|i| i.kind == OutboxKind::Contain && i.payload["action"] == json!(manual.id))
        .collect();
    assert_eq!(contains.len(), 1, "{outbox:?}");
    assert_eq!(
        store
            .release_incident(by_host("WIN-2").id, None, "cli:bob")
            .await
            .unwrap(),
        Some(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// 2023-11-14T22:13:20Z: findings are placed in seconds after this.
const T0: i64 = 1_700_000_000_000_000;

fn at(second: i64) -> Timestamp {
    Timestamp::from_micros(T0 + second * 1_000_000)
}

fn tenant_name(name: &str) -> TenantName {
    TenantName::new(name).expect("a valid tenant name")
}

async fn tenant_with_source(
    store: &Store,
    tenant: &str,
    source: &str,
    kind: SourceKind,
) -> SourceRecord {
    store
        .upsert_tenant(&tenant_name(tenant), None)
        .await
        .expect("save the tenant");
    store
        .upsert_source(
            tenant,
            NewSource {
                name: SourceName::new(source).expect("a valid source name"),
                kind,
                settings: json!({"kind": kind.as_str()}),
                secret: None,
            },
        )
        .await
        .expect("save the source")
}

/// A Secure Endpoint event on `computer`, with its hostname and an IP as observables.
fn endpoint_finding(
    key: &str,
    computer: &str,
    second: i64,
    severity: Severity,
    ip: &str,
) -> Finding {
    Finding {
        source_kind: SourceKind::SecureEndpoint,
        vendor_key: key.to_string(),
        observed_at: at(second),
        severity,
        title: format!("Threat detected ({key})"),
        event_type: "Threat Detected".into(),
        subject: Some(Subject {
            kind: "computer".into(),
            id: format!("guid-{computer}"),
            label: Some(computer.to_string()),
        }),
        observables: vec![
            Observable::new(ObservableKind::Hostname, computer),
            Observable::new(ObservableKind::Ip, ip),
        ],
        raw: json!({"id": key, "computer": computer}).to_string(),
    }
}

/// An update of Symantec MSS incident `number`.
fn mss_finding(key: &str, number: &str, second: i64, severity: Severity) -> Finding {
    Finding {
        source_kind: SourceKind::SymantecMss,
        vendor_key: key.to_string(),
        observed_at: at(second),
        severity,
        title: format!("MSS incident {number}"),
        event_type: "Incident".into(),
        subject: Some(Subject {
            kind: "vendor_incident".into(),
            id: number.into(),
            label: None,
        }),
        observables: vec![],
        // Not JSON: shown back as a string.
        raw: format!("<Incident><Number>{number}</Number></Incident>"),
    }
}

fn batch(findings: Vec<Finding>) -> IngestBatch {
    IngestBatch {
        findings,
        quarantined: vec![],
        max_new: None,
        fence: None,
    }
}

async fn ingest(store: &Store, source: &SourceRecord, findings: Vec<Finding>) -> IngestOutcome {
    store
        .ingest(source.id, batch(findings))
        .await
        .expect("ingest")
}

async fn all_incidents(store: &Store) -> Vec<IncidentView> {
    store
        .list_incidents(&IncidentFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .expect("list incidents")
}

fn update(status: Option<IncidentStatus>) -> IncidentUpdate {
    IncidentUpdate {
        status,
        actor: "test:alice".into(),
        ..Default::default()
    }
}

/// Lets the clock move so that `updated_at` values differ.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn migrations_are_idempotent(db: &TestDb) {
    let first = db.open().await;
    first
        .create_tenant(&tenant_name("acme"), Some("Acme Corp"))
        .await
        .unwrap();
    first.close().await;

    // Connecting again runs the migrator again: nothing to apply, nothing lost.
    let second = db.open().await;
    assert_eq!(second.backend(), db.backend);
    let tenants = second.list_tenants().await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].display_name.as_deref(), Some("Acme Corp"));
    // And a third store while the second is open.
    let third = db.open().await;
    assert_eq!(third.counts(None).await.unwrap().tenants, 1);
}

async fn tenants_crud_and_conflict(db: &TestDb) {
    let store = db.open().await;
    let acme = store
        .create_tenant(&tenant_name("acme"), None)
        .await
        .unwrap();
    assert_eq!(acme.name, "acme");
    assert_eq!(acme.display_name, None);

    let err = store
        .create_tenant(&tenant_name("acme"), Some("Again"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { detail } if detail.contains("acme")),
        "{err}"
    );

    // Upsert: same row; a display name replaces, None keeps it.
    let named = store
        .upsert_tenant(&tenant_name("acme"), Some("Acme Corp"))
        .await
        .unwrap();
    assert_eq!(named.id, acme.id);
    assert_eq!(named.display_name.as_deref(), Some("Acme Corp"));
    let kept = store
        .upsert_tenant(&tenant_name("acme"), None)
        .await
        .unwrap();
    assert_eq!(kept.display_name.as_deref(), Some("Acme Corp"));
    assert_eq!(kept.created_at, acme.created_at);

    store
        .upsert_tenant(&tenant_name("globex"), None)
        .await
        .unwrap();
    let names: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    assert_eq!(
        store.get_tenant("globex").await.unwrap().unwrap().name,
        "globex"
    );
    assert!(store.get_tenant("initech").await.unwrap().is_none());

    assert!(store.remove_tenant("acme").await.unwrap());
    assert!(!store.remove_tenant("acme").await.unwrap());
    assert!(store.get_tenant("acme").await.unwrap().is_none());
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
}

async fn sources_upsert_keeps_one_row_and_never_shows_the_secret(db: &TestDb) {
    let store = db.open().await;
    store
        .create_tenant(&tenant_name("acme"), None)
        .await
        .unwrap();
    // Bytes that include a zero and non-UTF-8, as ciphertext does.
    let sealed: Vec<u8> = b"CANARY-sealed-\x00\xff\xfe-bytes".to_vec();
    let new = |settings: serde_json::Value, secret: Option<Vec<u8>>| NewSource {
        name: SourceName::new("amp").unwrap(),
        kind: SourceKind::SecureEndpoint,
        settings,
        secret,
    };

    let first = store
        .upsert_source("acme", new(json!({"page_size": 100}), Some(sealed.clone())))
        .await
        .unwrap();
    assert_eq!(
        first.secret.as_deref(),
        Some(sealed.as_slice()),
        "secret bytes round-trip"
    );
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.kind, SourceKind::SecureEndpoint);

    // Saving again without a secret: same row, new settings, the secret kept.
    let second = store
        .upsert_source("acme", new(json!({"page_size": 50}), None))
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.settings, json!({"page_size": 50}));
    assert_eq!(second.secret.as_deref(), Some(sealed.as_slice()));
    assert_eq!(second.created_at, first.created_at);

    // A new secret replaces the old one.
    let rotated = store
        .upsert_source("acme", new(json!({"page_size": 50}), Some(vec![1, 2, 3])))
        .await
        .unwrap();
    assert_eq!(rotated.secret.as_deref(), Some(&[1u8, 2, 3][..]));
    let listed = store.list_sources(Some("acme")).await.unwrap();
    assert_eq!(listed.len(), 1, "one row per tenant and name");
    assert_eq!(
        store.get_source("acme", "amp").await.unwrap().unwrap(),
        rotated
    );
    assert!(
        store
            .get_source("acme", "umbrella")
            .await
            .unwrap()
            .is_none()
    );

    // Debug shows that a secret exists, never its bytes.
    let with_canary = store
        .upsert_source("acme", new(json!({}), Some(sealed.clone())))
        .await
        .unwrap();
    for shown in [
        format!("{with_canary:?}"),
        format!("{with_canary:#?}"),
        format!("{:?}", new(json!({}), Some(sealed.clone()))),
    ] {
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(!shown.contains(&format!("{:?}", sealed)), "{shown}");
        assert!(!shown.contains("67, 65, 78"), "no byte list: {shown}");
        assert!(
            shown.contains(&format!("<sealed, {} bytes>", sealed.len())),
            "{shown}"
        );
    }

    // A missing tenant is NotFound.
    let err = store
        .upsert_source("initech", new(json!({}), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { what } if what.contains("initech")),
        "{err}"
    );

    // Changing the kind clears the cursor: another vendor's mark means nothing.
    let f = endpoint_finding("e1", "pc1", 10, Severity::High, "10.0.0.1");
    assert_eq!(
        ingest(&store, &with_canary, vec![f]).await.mark,
        Some(at(10))
    );
    let same_kind = store
        .upsert_source("acme", new(json!({}), None))
        .await
        .unwrap();
    assert_eq!(
        same_kind.cursor_mark,
        Some(at(10)),
        "same kind keeps the cursor"
    );
    let mut other = new(json!({}), None);
    other.kind = SourceKind::Umbrella;
    let changed = store.upsert_source("acme", other).await.unwrap();
    assert_eq!(changed.cursor_mark, None);

    // Removing.
    assert!(store.remove_source("acme", "amp").await.unwrap());
    assert!(!store.remove_source("acme", "amp").await.unwrap());
    assert!(store.list_sources(None).await.unwrap().is_empty());
}

async fn the_sources_fingerprint_moves_with_saves_and_removals_only(db: &TestDb) {
    let store = db.open().await;
    let empty = store.sources_fingerprint().await.unwrap();
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let one = store.sources_fingerprint().await.unwrap();
    assert_ne!(one, empty, "a new source");
    assert_eq!(store.source_by_id(src.id).await.unwrap(), Some(src.clone()));
    assert_eq!(store.source_by_id(src.id + 1000).await.unwrap(), None);

    // What moves with every poll leaves it alone; the scheduler reads that apart.
    store.record_poll(src.id, at(5), None).await.unwrap();
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "e1",
            "pc-1",
            4,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    assert_eq!(store.sources_fingerprint().await.unwrap(), one);
    assert_eq!(
        store.sources_polled_before(at(5)).await.unwrap(),
        vec![(src.id, Some(at(5)))]
    );
    assert!(store.sources_polled_before(at(4)).await.unwrap().is_empty());

    // A save of new settings moves it, even for the same source.
    tick().await;
    store
        .upsert_source(
            "acme",
            NewSource {
                name: SourceName::new("amp").unwrap(),
                kind: SourceKind::SecureEndpoint,
                settings: json!({"kind": "secure_endpoint", "poll_interval_secs": 5}),
                secret: None,
            },
        )
        .await
        .unwrap();
    let saved = store.sources_fingerprint().await.unwrap();
    assert_ne!(saved, one, "settings saved");

    // A second source, never polled, is a candidate at any time.
    let other = tenant_with_source(&store, "globex", "umb", SourceKind::Umbrella).await;
    let two = store.sources_fingerprint().await.unwrap();
    assert_ne!(two, saved);
    assert_eq!(
        store.sources_polled_before(at(0)).await.unwrap(),
        vec![(other.id, None)]
    );

    // Removing a source, or its tenant, moves it too.
    assert!(store.remove_source("acme", "amp").await.unwrap());
    let removed = store.sources_fingerprint().await.unwrap();
    assert_ne!(removed, two);
    assert!(store.remove_tenant("globex").await.unwrap());
    let none = store.sources_fingerprint().await.unwrap();
    assert_ne!(none, removed);
    assert_eq!(none.count, 0);
}

async fn record_poll_keeps_the_last_error_until_a_good_poll(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    assert_eq!(src.last_poll_at, None);

    store
        .record_poll(src.id, at(1), Some("401 Unauthorized"))
        .await
        .unwrap();
    let s = store.get_source("acme", "amp").await.unwrap().unwrap();
    assert_eq!((s.last_poll_at, s.last_ok_at), (Some(at(1)), None));
    assert_eq!(s.last_error.as_deref(), Some("401 Unauthorized"));

    store.record_poll(src.id, at(2), None).await.unwrap();
    let s = store.get_source("acme", "amp").await.unwrap().unwrap();
    assert_eq!(
        (s.last_poll_at, s.last_ok_at, s.last_error),
        (Some(at(2)), Some(at(2)), None)
    );

    store
        .record_poll(src.id, at(3), Some("timeout"))
        .await
        .unwrap();
    let s = store.get_source("acme", "amp").await.unwrap().unwrap();
    assert_eq!((s.last_poll_at, s.last_ok_at), (Some(at(3)), Some(at(2))));

    let err = store
        .record_poll(src.id + 1000, at(4), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

async fn ingest_stores_a_batch_once_and_keeps_the_mark(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let page = vec![
        endpoint_finding("e1", "pc1", 10, Severity::High, "10.0.0.1"),
        endpoint_finding("e2", "pc2", 20, Severity::High, "10.0.0.2"),
        endpoint_finding("e3", "pc1", 30, Severity::Critical, "10.0.0.1"),
    ];

    let first = ingest(&store, &src, page.clone()).await;
    assert_eq!(
        first,
        IngestOutcome {
            new_findings: 3,
            duplicates: 0,
            quarantined_new: 0,
            processed: 3,
            cap_reached: false,
            incidents_created: 2,
            incidents_updated: 0,
            mark: Some(at(30)),
        }
    );
    let again = ingest(&store, &src, page).await;
    assert_eq!(
        (again.new_findings, again.duplicates, again.processed),
        (0, 3, 3)
    );
    assert_eq!((again.incidents_created, again.incidents_updated), (0, 0));
    assert_eq!(again.mark, Some(at(30)), "the mark does not move");

    // An overlap re-read of an older record never moves the mark back.
    let older = ingest(
        &store,
        &src,
        vec![endpoint_finding("e0", "pc3", 5, Severity::Low, "10.0.0.3")],
    )
    .await;
    assert_eq!((older.new_findings, older.mark), (1, Some(at(30))));

    let stored = store.get_source("acme", "amp").await.unwrap().unwrap();
    assert_eq!(stored.cursor_mark, Some(at(30)));
    assert_eq!(
        store.finding_keys("acme", "amp").await.unwrap(),
        ["e1", "e2", "e3", "e0"]
    );
    let counts = store.counts(Some("acme")).await.unwrap();
    assert_eq!(
        (counts.findings, counts.incidents, counts.open_incidents),
        (4, 3, 3)
    );

    // An empty batch is a no-op that reports the mark.
    let empty = ingest(&store, &src, vec![]).await;
    assert_eq!((empty.processed, empty.mark), (0, Some(at(30))));

    // An unknown source is NotFound and stores nothing.
    let err = store
        .ingest(
            src.id + 1000,
            batch(vec![endpoint_finding(
                "x",
                "pc9",
                1,
                Severity::Low,
                "1.1.1.1",
            )]),
        )
        .await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    assert_eq!(store.counts(None).await.unwrap().findings, 4);
}

async fn the_cap_stops_the_batch_and_the_rest_comes_next_time(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let page: Vec<Finding> = (1..=5)
        .map(|i| {
            endpoint_finding(
                &format!("e{i}"),
                &format!("pc{i}"),
                i * 10,
                Severity::High,
                "10.0.0.1",
            )
        })
        .collect();

    let capped = store
        .ingest(
            src.id,
            IngestBatch {
                findings: page.clone(),
                quarantined: vec![],
                max_new: Some(3),
                fence: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (capped.new_findings, capped.processed, capped.cap_reached),
        (3, 3, true)
    );
    assert_eq!(
        capped.mark,
        Some(at(30)),
        "the mark stops at the third finding"
    );
    assert_eq!(
        store
            .get_source("acme", "amp")
            .await
            .unwrap()
            .unwrap()
            .cursor_mark,
        Some(at(30))
    );
    assert_eq!(
        store.finding_keys("acme", "amp").await.unwrap(),
        ["e1", "e2", "e3"]
    );

    // The next poll re-reads from the mark (overlap): the first three are duplicates.
    let rest = store
        .ingest(
            src.id,
            IngestBatch {
                findings: page,
                quarantined: vec![],
                max_new: Some(3),
                fence: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (rest.new_findings, rest.duplicates, rest.cap_reached),
        (2, 3, false)
    );
    assert_eq!(rest.mark, Some(at(50)));
    assert_eq!(
        store.finding_keys("acme", "amp").await.unwrap(),
        ["e1", "e2", "e3", "e4", "e5"]
    );

    // A cap of zero stores nothing and keeps the mark.
    let zero = store
        .ingest(
            src.id,
            IngestBatch {
                findings: vec![endpoint_finding(
                    "e6",
                    "pc6",
                    60,
                    Severity::High,
                    "10.0.0.1",
                )],
                quarantined: vec![],
                max_new: Some(0),
                fence: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            zero.new_findings,
            zero.processed,
            zero.cap_reached,
            zero.mark
        ),
        (0, 0, true, Some(at(50)))
    );

    // Out of order (a caller's bug): the mark stays below the finding the cap left out.
    let unsorted = vec![
        endpoint_finding("e8", "pc8", 80, Severity::High, "10.0.0.1"),
        endpoint_finding("e7", "pc7", 70, Severity::High, "10.0.0.1"),
    ];
    let out = store
        .ingest(
            src.id,
            IngestBatch {
                findings: unsorted,
                quarantined: vec![],
                max_new: Some(1),
                fence: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (out.new_findings, out.cap_reached, out.mark),
        (1, true, Some(at(70)))
    );
}

async fn findings_of_one_computer_make_one_incident_while_it_is_open(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;

    let out = ingest(
        &store,
        &src,
        vec![
            endpoint_finding("e1", "pc1", 10, Severity::Medium, "10.0.0.1"),
            endpoint_finding("e2", "pc1", 20, Severity::Critical, "10.0.0.9"),
        ],
    )
    .await;
    assert_eq!((out.incidents_created, out.incidents_updated), (1, 0));
    let incidents = all_incidents(&store).await;
    assert_eq!(incidents.len(), 1);
    let first = &incidents[0];
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.title, "Threat Detected on pc1");
    assert_eq!(
        (first.severity, first.finding_count),
        (Severity::Critical, 2)
    );
    assert_eq!(first.status, IncidentStatus::New);
    assert_eq!((first.first_seen, first.last_seen), (at(10), at(20)));
    assert_eq!(first.sources, [SourceKind::SecureEndpoint]);
    assert_eq!(
        first.observables,
        [
            Observable::new(ObservableKind::Hostname, "pc1"),
            Observable::new(ObservableKind::Ip, "10.0.0.1"),
            Observable::new(ObservableKind::Ip, "10.0.0.9"),
        ]
    );
    assert_eq!((first.ticket.clone(), first.actions.len()), (None, 0));

    let detail = store.get_incident(first.id, None).await.unwrap().unwrap();
    let keys: Vec<_> = detail
        .findings
        .iter()
        .map(|f| f.vendor_key.as_str())
        .collect();
    assert_eq!(keys, ["e1", "e2"], "findings by time observed");
    assert_eq!(detail.findings[0].source, "amp");
    assert_eq!(
        detail.findings[0].raw,
        json!({"id": "e1", "computer": "pc1"}),
        "raw parsed back"
    );
    let kinds: Vec<_> = detail.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "severity_raised"]);
    assert!(
        detail.timeline[1].detail.starts_with("medium -> critical"),
        "{:?}",
        detail.timeline
    );

    // A later, lower finding joins without lowering the severity; another computer gets its own.
    let out = ingest(
        &store,
        &src,
        vec![
            endpoint_finding("e3", "pc1", 30, Severity::Low, "10.0.0.1"),
            endpoint_finding("e4", "pc2", 31, Severity::High, "10.0.0.2"),
        ],
    )
    .await;
    assert_eq!((out.incidents_created, out.incidents_updated), (1, 1));
    let pc1 = store
        .get_incident(first.id, None)
        .await
        .unwrap()
        .unwrap()
        .incident;
    assert_eq!(
        (pc1.severity, pc1.finding_count, pc1.last_seen),
        (Severity::Critical, 3, at(30))
    );

    // Once closed, the computer's next finding opens a new incident.
    store
        .update_incident(first.id, None, &update(Some(IncidentStatus::Closed)))
        .await
        .unwrap()
        .unwrap();
    let out = ingest(
        &store,
        &src,
        vec![endpoint_finding("e5", "pc1", 40, Severity::Low, "10.0.0.1")],
    )
    .await;
    assert_eq!((out.incidents_created, out.incidents_updated), (1, 0));
    let incidents = all_incidents(&store).await;
    assert_eq!(incidents.len(), 3);
    let reopened = incidents
        .iter()
        .find(|i| i.id != first.id && i.title.ends_with("pc1"))
        .unwrap();
    assert_eq!(
        (reopened.status, reopened.finding_count, reopened.severity),
        (IncidentStatus::New, 1, Severity::Low)
    );
    let closed = store
        .get_incident(first.id, None)
        .await
        .unwrap()
        .unwrap()
        .incident;
    assert_eq!(
        (closed.status, closed.finding_count),
        (IncidentStatus::Closed, 3)
    );
}

async fn vendor_incidents_reattach_even_when_closed(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "mss", SourceKind::SymantecMss).await;
    ingest(
        &store,
        &src,
        vec![mss_finding("inc-42:v1", "42", 10, Severity::High)],
    )
    .await;
    let incidents = all_incidents(&store).await;
    assert_eq!(incidents.len(), 1);
    let id = incidents[0].id;
    assert_eq!(incidents[0].title, "MSS incident 42");
    store
        .update_incident(id, None, &update(Some(IncidentStatus::Resolved)))
        .await
        .unwrap()
        .unwrap();

    // The vendor updates its incident: same socbridge incident, still resolved.
    let out = ingest(
        &store,
        &src,
        vec![mss_finding("inc-42:v2", "42", 20, Severity::Critical)],
    )
    .await;
    assert_eq!((out.incidents_created, out.incidents_updated), (0, 1));
    let incidents = all_incidents(&store).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].id, id);
    assert_eq!(
        (incidents[0].status, incidents[0].finding_count),
        (IncidentStatus::Resolved, 2)
    );
    assert_eq!(incidents[0].severity, Severity::Critical);
    let detail = store.get_incident(id, None).await.unwrap().unwrap();
    assert_eq!(
        detail.findings[1].raw,
        json!("<Incident><Number>42</Number></Incident>"),
        "non-JSON raw as a string"
    );

    // Another number: another incident.
    let out = ingest(
        &store,
        &src,
        vec![mss_finding("inc-43:v1", "43", 30, Severity::High)],
    )
    .await;
    assert_eq!(out.incidents_created, 1);
    // A finding without a subject is an incident of its own.
    let mut lone = mss_finding("lone", "0", 40, Severity::Low);
    lone.subject = None;
    assert_eq!(ingest(&store, &src, vec![lone]).await.incidents_created, 1);
    assert_eq!(all_incidents(&store).await.len(), 3);
}

async fn quarantine_keeps_each_record_once_by_its_bytes(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let bad = |reason: &str, raw: &[u8]| Quarantined {
        reason: reason.into(),
        raw: raw.to_vec(),
    };
    let page = IngestBatch {
        findings: vec![endpoint_finding(
            "e1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
        quarantined: vec![
            bad("truncated JSON", b"{\"id\": 1,"),
            bad("truncated JSON, read twice", b"{\"id\": 1,"),
            bad("not UTF-8", b"\xff\xfe\x00binary"),
        ],
        max_new: None,
        fence: None,
    };
    let out = store.ingest(src.id, page.clone()).await.unwrap();
    assert_eq!((out.quarantined_new, out.new_findings), (2, 1));
    let out = store.ingest(src.id, page).await.unwrap();
    assert_eq!((out.quarantined_new, out.new_findings), (0, 0));

    let q = store.list_quarantine(Some("acme")).await.unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(
        (q[0].tenant.as_str(), q[0].source.as_str()),
        ("acme", "amp")
    );
    assert_eq!(q[0].reason, "truncated JSON");
    assert_eq!(q[0].raw, b"{\"id\": 1,");
    assert_eq!(q[1].raw, b"\xff\xfe\x00binary", "bytes round-trip");
    assert!(
        store
            .list_quarantine(Some("globex"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_quarantine(None).await.unwrap().len(), 2);
    assert_eq!(store.counts(None).await.unwrap().quarantined, 2);
}

async fn list_filters_and_order(db: &TestDb) {
    let store = db.open().await;
    let acme = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let globex = tenant_with_source(&store, "globex", "amp", SourceKind::SecureEndpoint).await;
    ingest(
        &store,
        &acme,
        vec![endpoint_finding(
            "a1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    tick().await;
    ingest(
        &store,
        &acme,
        vec![endpoint_finding("a2", "pc2", 20, Severity::Low, "10.0.0.2")],
    )
    .await;
    tick().await;
    ingest(
        &store,
        &globex,
        vec![endpoint_finding(
            "g1",
            "pc3",
            30,
            Severity::Critical,
            "10.0.0.1",
        )],
    )
    .await;

    let list = all_incidents(&store).await;
    let titles: Vec<_> = list.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Threat Detected on pc3",
            "Threat Detected on pc2",
            "Threat Detected on pc1"
        ],
        "newest first"
    );
    let (pc3, pc2, pc1) = (list[0].id, list[1].id, list[2].id);

    // Activity moves an incident to the top.
    tick().await;
    let since = Timestamp::now();
    tick().await;
    let upd = IncidentUpdate {
        status: Some(IncidentStatus::InProgress),
        ..update(None)
    };
    store
        .update_incident(pc1, None, &upd)
        .await
        .unwrap()
        .unwrap();

    let ids = |list: Vec<IncidentView>| list.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let filtered = |f: IncidentFilter| {
        let store = store.clone();
        async move { ids(store.list_incidents(&f).await.unwrap()) }
    };
    assert_eq!(ids(all_incidents(&store).await), [pc1, pc3, pc2]);
    assert_eq!(
        filtered(IncidentFilter {
            tenants: vec!["acme".into()],
            ..Default::default()
        })
        .await,
        [pc1, pc2]
    );
    assert_eq!(
        filtered(IncidentFilter {
            tenants: vec!["acme".into(), "globex".into()],
            ..Default::default()
        })
        .await,
        [pc1, pc3, pc2]
    );
    assert!(
        filtered(IncidentFilter {
            tenants: vec!["initech".into()],
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        filtered(IncidentFilter {
            severities: vec![Severity::Critical, Severity::Low],
            ..Default::default()
        })
        .await,
        [pc3, pc2]
    );
    assert_eq!(
        filtered(IncidentFilter {
            statuses: vec![IncidentStatus::InProgress],
            ..Default::default()
        })
        .await,
        [pc1]
    );
    assert_eq!(
        filtered(IncidentFilter {
            statuses: vec![IncidentStatus::New],
            ..Default::default()
        })
        .await,
        [pc3, pc2]
    );
    assert_eq!(
        filtered(IncidentFilter {
            since: Some(since),
            ..Default::default()
        })
        .await,
        [pc1]
    );
    assert_eq!(
        filtered(IncidentFilter {
            source_ip: Some("10.0.0.1".into()),
            ..Default::default()
        })
        .await,
        [pc1, pc3]
    );
    assert_eq!(
        filtered(IncidentFilter {
            source_ip: Some("10.0.0.1".into()),
            tenants: vec!["globex".into()],
            ..Default::default()
        })
        .await,
        [pc3]
    );
    assert!(
        filtered(IncidentFilter {
            source_ip: Some("192.0.2.1".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        filtered(IncidentFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await,
        [pc1, pc3]
    );
    assert_eq!(
        filtered(IncidentFilter {
            tenants: vec!["acme".into()],
            severities: vec![Severity::High],
            statuses: vec![IncidentStatus::InProgress],
            source_ip: Some("10.0.0.1".into()),
            since: Some(since),
            limit: Some(10),
            before: None,
            source: Some("amp".into()),
            text: Some("PC1".into()),
        })
        .await,
        [pc1]
    );
}

/// `source` is a source's name or kind; `text` finds the title, an observable, the assignee
/// or the ticket number, whatever the case, with `%` and `_` taken literally.
async fn list_filters_by_source_and_free_text(db: &TestDb) {
    let store = db.open().await;
    let amp = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let mss = tenant_with_source(&store, "acme", "mss", SourceKind::SymantecMss).await;
    let globex = tenant_with_source(&store, "globex", "edr", SourceKind::SecureEndpoint).await;
    store
        .set_ticketing("servicenow", &json!({}), Some(b"sealed"))
        .await
        .unwrap();
    ingest(
        &store,
        &amp,
        vec![endpoint_finding(
            "a1",
            "WS-Finance-01",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    tick().await;
    ingest(
        &store,
        &mss,
        vec![mss_finding("m1", "INC-100_%", 20, Severity::Critical)],
    )
    .await;
    tick().await;
    ingest(
        &store,
        &globex,
        vec![endpoint_finding(
            "g1",
            "srv-db",
            30,
            Severity::Low,
            "192.0.2.7",
        )],
    )
    .await;
    let list = all_incidents(&store).await;
    assert_eq!(list.len(), 3);
    let (srv, mss_id, ws) = (list[0].id, list[1].id, list[2].id);
    let due = store.due_outbox(Timestamp::now(), 100).await.unwrap();
    let create = due.iter().find(|w| w.incident_id == srv).unwrap();
    store
        .record_ticket(
            create.incident_id,
            &socbridge_store::TicketLink {
                sys_id: "abc123".into(),
                number: "INC0042424".into(),
                state: "1".into(),
                url: "https://sn.example/nav_to.do?uri=incident.do?sys_id=abc123".into(),
                remote_updated_on: None,
            },
            None,
        )
        .await
        .unwrap();
    store
        .update_incident(
            ws,
            None,
            &IncidentUpdate {
                assignee: Some("Marie.Curie".into()),
                ..update(None)
            },
        )
        .await
        .unwrap()
        .unwrap();

    let ids = |list: Vec<IncidentView>| list.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let filtered = |source: Option<&str>, text: Option<&str>| {
        let store = store.clone();
        let f = IncidentFilter {
            source: source.map(str::to_string),
            text: text.map(str::to_string),
            ..Default::default()
        };
        async move { ids(store.list_incidents(&f).await.unwrap()) }
    };
    // Source: a name (two tenants may both have one), a kind, or nothing known.
    assert_eq!(filtered(Some("amp"), None).await, [ws]);
    assert_eq!(filtered(Some("mss"), None).await, [mss_id]);
    // (The assignee change made `ws` the newest.)
    assert_eq!(filtered(Some("secure_endpoint"), None).await, [ws, srv]);
    assert_eq!(filtered(Some("symantec_mss"), None).await, [mss_id]);
    assert!(filtered(Some("umbrella"), None).await.is_empty());
    assert!(filtered(Some("nope"), None).await.is_empty());
    // Text: the hostname in any case, part of an IP, the title, the assignee, the ticket.
    assert_eq!(filtered(None, Some("ws-finance")).await, [ws]);
    assert_eq!(filtered(None, Some("FINANCE-01")).await, [ws]);
    assert_eq!(filtered(None, Some("0.2.7")).await, [srv]);
    assert_eq!(filtered(None, Some("threat detected")).await, [ws, srv]);
    assert_eq!(filtered(None, Some("curie")).await, [ws]);
    assert_eq!(filtered(None, Some("inc00424")).await, [srv]);
    assert!(
        filtered(None, Some(&format!("#{mss_id}")))
            .await
            .contains(&mss_id)
    );
    // `%` and `_` are literal: only the title that holds them matches.
    assert_eq!(filtered(None, Some("100_%")).await, [mss_id]);
    assert_eq!(filtered(None, Some("%")).await, [mss_id]);
    assert_eq!(filtered(None, Some("_")).await, [mss_id]);
    assert!(filtered(None, Some("no such thing")).await.is_empty());
    // Both, and with the other filters.
    assert_eq!(filtered(Some("secure_endpoint"), Some("srv")).await, [srv]);
    assert!(filtered(Some("amp"), Some("srv")).await.is_empty());
    assert_eq!(
        ids(store
            .list_incidents(&IncidentFilter {
                tenants: vec!["acme".into()],
                text: Some("threat".into()),
                ..Default::default()
            })
            .await
            .unwrap()),
        [ws]
    );
}

async fn tenant_scope_hides_other_tenants_incidents(db: &TestDb) {
    let store = db.open().await;
    let acme = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    tenant_with_source(&store, "globex", "amp", SourceKind::SecureEndpoint).await;
    ingest(
        &store,
        &acme,
        vec![endpoint_finding(
            "a1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let id = all_incidents(&store).await[0].id;
    let acme_scope = ["acme".to_string()];
    let globex_scope = ["globex".to_string()];
    let no_tenant: [String; 0] = [];

    assert!(
        store
            .get_incident(id, Some(&acme_scope))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_incident(id, Some(&globex_scope))
            .await
            .unwrap()
            .is_none(),
        "hidden like a missing one"
    );
    assert!(
        store
            .get_incident(id, Some(&no_tenant))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_incident(id + 1000, None).await.unwrap().is_none());

    let close = IncidentUpdate {
        status: Some(IncidentStatus::Closed),
        comment: Some("not yours".into()),
        ..update(None)
    };
    assert!(
        store
            .update_incident(id, Some(&globex_scope), &close)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .update_incident(id + 1000, None, &close)
            .await
            .unwrap()
            .is_none()
    );
    let untouched = store.get_incident(id, None).await.unwrap().unwrap();
    assert_eq!(
        untouched.incident.status,
        IncidentStatus::New,
        "another tenant's update changed nothing"
    );
    assert_eq!(untouched.timeline.len(), 1);

    let done = store
        .update_incident(id, Some(&acme_scope), &close)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, IncidentStatus::Closed);
}

async fn updates_write_only_changes_each_with_its_timeline_entry(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "a1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let before = all_incidents(&store).await.remove(0);
    tick().await;

    let change = IncidentUpdate {
        status: Some(IncidentStatus::InProgress),
        assignee: Some("alice".into()),
        resolution: None,
        comment: Some("looking".into()),
        actor: "cli:alice".into(),
    };
    let after = store
        .update_incident(before.id, None, &change)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, IncidentStatus::InProgress);
    assert_eq!(after.assignee.as_deref(), Some("alice"));
    assert!(after.updated_at > before.updated_at);
    assert_eq!(
        after.observables, before.observables,
        "the view comes back whole"
    );

    // The same values again change nothing and add no entry; a comment alone is an entry.
    let same = IncidentUpdate {
        comment: None,
        ..change.clone()
    };
    let unchanged = store
        .update_incident(before.id, None, &same)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.updated_at, after.updated_at);

    let resolve = IncidentUpdate {
        status: Some(IncidentStatus::Resolved),
        resolution: Some("false positive".into()),
        assignee: Some(String::new()),
        comment: None,
        actor: "cli:bob".into(),
    };
    let resolved = store
        .update_incident(before.id, None, &resolve)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.resolution.as_deref(), Some("false positive"));
    assert_eq!(resolved.assignee, None, "an empty assignee clears it");

    let timeline = store
        .get_incident(before.id, None)
        .await
        .unwrap()
        .unwrap()
        .timeline;
    let lines: Vec<_> = timeline
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                "created",
                "socbridge",
                "opened by secure_endpoint finding a1"
            ),
            ("status_changed", "cli:alice", "new -> in_progress"),
            ("assignee_changed", "cli:alice", "(none) -> alice"),
            ("comment", "cli:alice", "looking"),
            ("status_changed", "cli:bob", "in_progress -> resolved"),
            ("resolution_changed", "cli:bob", "(none) -> false positive"),
            ("assignee_changed", "cli:bob", "alice -> (none)"),
        ]
    );
    let counts = store.counts(Some("acme")).await.unwrap();
    assert_eq!((counts.incidents, counts.open_incidents), (1, 0));
}

async fn reopening_conflicts_with_the_subjects_open_incident(db: &TestDb) {
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "a1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let a = all_incidents(&store).await[0].id;
    store
        .update_incident(a, None, &update(Some(IncidentStatus::Closed)))
        .await
        .unwrap()
        .unwrap();
    ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "a2",
            "pc1",
            20,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    let b = all_incidents(&store)
        .await
        .into_iter()
        .find(|i| i.id != a)
        .unwrap()
        .id;

    let err = store
        .update_incident(a, None, &update(Some(IncidentStatus::InProgress)))
        .await
        .unwrap_err();
    match &err {
        StoreError::Conflict { detail } => {
            assert!(detail.contains(&format!("incident {b}")), "{detail}")
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let still = store.get_incident(a, None).await.unwrap().unwrap();
    assert_eq!(
        still.incident.status,
        IncidentStatus::Closed,
        "the failed reopen changed nothing"
    );
    assert_eq!(still.timeline.len(), 2);

    // Once B is closed, A can be reopened, and it collects the computer's findings again.
    store
        .update_incident(b, None, &update(Some(IncidentStatus::Resolved)))
        .await
        .unwrap()
        .unwrap();
    let reopened = store
        .update_incident(a, None, &update(Some(IncidentStatus::New)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.status, IncidentStatus::New);
    let out = ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "a3",
            "pc1",
            30,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    assert_eq!((out.incidents_created, out.incidents_updated), (0, 1));
    assert_eq!(
        store
            .get_incident(a, None)
            .await
            .unwrap()
            .unwrap()
            .incident
            .finding_count,
        2
    );
    // Moving between closed states, or between open ones, needs no key.
    store
        .update_incident(b, None, &update(Some(IncidentStatus::Closed)))
        .await
        .unwrap()
        .unwrap();
    store
        .update_incident(a, None, &update(Some(IncidentStatus::OnHold)))
        .await
        .unwrap()
        .unwrap();
}

async fn removing_a_tenant_removes_everything_it_owns(db: &TestDb) {
    let store = db.open().await;
    let acme = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let globex = tenant_with_source(&store, "globex", "amp", SourceKind::SecureEndpoint).await;
    for src in [&acme, &globex] {
        store
            .ingest(
                src.id,
                IngestBatch {
                    findings: vec![
                        endpoint_finding("e1", "pc1", 10, Severity::High, "10.0.0.1"),
                        endpoint_finding("e2", "pc2", 20, Severity::High, "10.0.0.2"),
                    ],
                    quarantined: vec![Quarantined {
                        reason: "bad".into(),
                        raw: b"{".to_vec(),
                    }],
                    max_new: None,
                    fence: None,
                },
            )
            .await
            .unwrap();
    }
    let acme_incident = all_incidents(&store)
        .await
        .into_iter()
        .find(|i| i.tenant == "acme")
        .unwrap()
        .id;
    store
        .update_incident(
            acme_incident,
            None,
            &IncidentUpdate {
                comment: Some("note".into()),
                ..update(None)
            },
        )
        .await
        .unwrap();
    let before = store.counts(None).await.unwrap();
    assert_eq!(
        (
            before.tenants,
            before.sources,
            before.findings,
            before.incidents,
            before.quarantined
        ),
        (2, 2, 4, 4, 2)
    );

    assert!(store.remove_tenant("acme").await.unwrap());
    let gone = store.counts(Some("acme")).await.unwrap();
    assert_eq!(gone, socbridge_store::Counts::default());
    let left = store.counts(None).await.unwrap();
    assert_eq!(
        (
            left.tenants,
            left.sources,
            left.findings,
            left.incidents,
            left.open_incidents,
            left.quarantined
        ),
        (1, 1, 2, 2, 2, 1)
    );
    assert!(
        store
            .get_incident(acme_incident, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_sources(Some("acme")).await.unwrap().is_empty());
    assert!(store.finding_keys("acme", "amp").await.unwrap().is_empty());
    assert!(
        all_incidents(&store)
            .await
            .iter()
            .all(|i| i.tenant == "globex")
    );

    // The name can be used again, and starts empty.
    let again = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    assert_eq!(again.cursor_mark, None);
    let out = ingest(
        &store,
        &again,
        vec![endpoint_finding(
            "e1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    assert_eq!((out.new_findings, out.incidents_created), (1, 1));
}

async fn concurrent_ingest_neither_loses_nor_doubles(db: &TestDb) {
    const FINDINGS: i64 = 240;
    const COMPUTERS: i64 = 12;
    const TASKS: usize = 6;
    const PER_BATCH: usize = 20;

    // Two stores on one database, opened at the same time from two tasks: two processes on one
    // SQLite file, or two replicas on one PostgreSQL.
    let (one, two) = tokio::join!(db.open(), db.open());
    let src = tenant_with_source(&one, "acme", "amp", SourceKind::SecureEndpoint).await;
    let all: Vec<Finding> = (0..FINDINGS)
        .map(|i| {
            let severity = Severity::ALL[usize::try_from(i % 5).unwrap()];
            endpoint_finding(
                &format!("e{i:04}"),
                &format!("pc{}", i % COMPUTERS),
                i,
                severity,
                "10.0.0.1",
            )
        })
        .collect();
    let batches: Vec<Vec<Finding>> = all.chunks(PER_BATCH).map(<[Finding]>::to_vec).collect();

    // Every task ingests every batch, each starting at a different batch: the same findings
    // race in from all sides.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = if t % 2 == 0 { one.clone() } else { two.clone() };
        let mut mine = batches.clone();
        mine.rotate_left(t * 3 % batches.len());
        let source_id = src.id;
        tasks.spawn(async move {
            let mut total = IngestOutcome::default();
            for b in mine {
                let out = store
                    .ingest(source_id, batch(b))
                    .await
                    .expect("concurrent ingest");
                total.new_findings += out.new_findings;
                total.duplicates += out.duplicates;
                total.incidents_created += out.incidents_created;
            }
            total
        });
    }
    let mut new = 0;
    let mut duplicates = 0;
    let mut created = 0;
    while let Some(res) = tasks.join_next().await {
        let t = res.expect("an ingest task");
        new += t.new_findings;
        duplicates += t.duplicates;
        created += t.incidents_created;
    }
    let findings = usize::try_from(FINDINGS).unwrap();
    let computers = usize::try_from(COMPUTERS).unwrap();
    assert_eq!(new, findings, "each finding stored exactly once");
    assert_eq!(duplicates, findings * (TASKS - 1));
    assert_eq!(created, computers, "one incident per computer");

    let mut keys = two.finding_keys("acme", "amp").await.unwrap();
    keys.sort();
    let expected: Vec<String> = all.iter().map(|f| f.vendor_key.clone()).collect();
    assert_eq!(keys, expected);
    let incidents = all_incidents(&one).await;
    assert_eq!(incidents.len(), computers);
    for i in &incidents {
        assert_eq!(i.finding_count, FINDINGS / COMPUTERS, "{i:?}");
        assert_eq!(
            i.severity,
            Severity::Critical,
            "the highest of its findings"
        );
        let detail = one.get_incident(i.id, None).await.unwrap().unwrap();
        assert_eq!(
            i64::try_from(detail.findings.len()).unwrap(),
            i.finding_count
        );
    }
    let source = one.get_source("acme", "amp").await.unwrap().unwrap();
    assert_eq!(
        source.cursor_mark,
        Some(at(FINDINGS - 1)),
        "the mark is the newest finding"
    );
}

/// Two sources of one tenant report on the same computers at the same time, in opposite
/// orders: on PostgreSQL their transactions lock the same incidents crosswise, and a deadlock
/// the server breaks must be retried, not reported.
async fn two_sources_feeding_the_same_incidents_at_once(db: &TestDb) {
    const PER_SOURCE: i64 = 120;
    const COMPUTERS: i64 = 6;
    let store = db.open().await;
    let amp1 = tenant_with_source(&store, "acme", "amp-1", SourceKind::SecureEndpoint).await;
    let amp2 = tenant_with_source(&store, "acme", "amp-2", SourceKind::SecureEndpoint).await;
    let findings = |prefix: &str, reversed: bool| -> Vec<Vec<Finding>> {
        let all: Vec<Finding> = (0..PER_SOURCE)
            .map(|i| {
                let computer = if reversed {
                    COMPUTERS - 1 - i % COMPUTERS
                } else {
                    i % COMPUTERS
                };
                let key = format!("{prefix}{i:04}");
                endpoint_finding(
                    &key,
                    &format!("pc{computer}"),
                    i,
                    Severity::High,
                    "10.0.0.1",
                )
            })
            .collect();
        all.chunks(12).map(<[Finding]>::to_vec).collect()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (src, batches) in [
        (amp1.id, findings("a", false)),
        (amp2.id, findings("b", true)),
    ] {
        let store = store.clone();
        tasks.spawn(async move {
            let mut new = 0;
            for b in batches {
                new += store
                    .ingest(src, batch(b))
                    .await
                    .expect("ingest beside another source")
                    .new_findings;
            }
            new
        });
    }
    let mut new = 0;
    while let Some(res) = tasks.join_next().await {
        new += res.expect("an ingest task");
    }
    assert_eq!(new, usize::try_from(2 * PER_SOURCE).unwrap());
    let incidents = all_incidents(&store).await;
    assert_eq!(
        incidents.len(),
        usize::try_from(COMPUTERS).unwrap(),
        "one incident per computer"
    );
    for i in &incidents {
        assert_eq!(i.finding_count, 2 * PER_SOURCE / COMPUTERS, "{i:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite only: the file, its URL, and another process's writer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_url_and_path_open_the_same_wal_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory name that is URL syntax and mixed case.
    let sub = dir.path().join("My Data?#%");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("socbridge.db");

    let by_path = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(by_path.backend(), Backend::Sqlite);
    by_path
        .create_tenant(&tenant_name("acme"), None)
        .await
        .unwrap();
    assert!(path.exists(), "the file is created where asked");

    let encoded = path
        .to_str()
        .unwrap()
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('?', "%3F")
        .replace('#', "%23");
    let by_url = Store::connect(&format!("sqlite://{encoded}"))
        .await
        .unwrap();
    assert_eq!(
        by_url.list_tenants().await.unwrap().len(),
        1,
        "the same file"
    );

    use sqlx::{Connection as _, Row as _};
    let mut raw = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_wait_for_another_processs_writer_instead_of_failing() {
    use sqlx::{Connection as _, Executor as _};
    let db = TestDb::sqlite().await;
    let store = db.open().await;
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;

    // Another process (a raw connection, outside this store's in-process lock) holds the write
    // lock for a while, as a CLI `incidents update` or a second `serve` would.
    let path = db.path.clone().unwrap();
    let mut other = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    other
        .execute("INSERT INTO tenants (name, created_at) VALUES ('other', 0)")
        .await
        .unwrap();
    let held = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        other.execute("COMMIT").await.unwrap();
        other
    });

    // Reads go on under WAL while the other writer holds its lock.
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
    // A write given up while it waits (its caller timed out) leaves nothing behind: the
    // next one takes the lock as soon as it is free.
    let waited = tokio::time::timeout(
        Duration::from_millis(100),
        ingest(
            &store,
            &src,
            vec![endpoint_finding("e0", "pc0", 9, Severity::High, "10.0.0.9")],
        ),
    )
    .await;
    assert!(waited.is_err(), "the lock was still held elsewhere");
    let started = std::time::Instant::now();
    let out = ingest(
        &store,
        &src,
        vec![endpoint_finding(
            "e1",
            "pc1",
            10,
            Severity::High,
            "10.0.0.1",
        )],
    )
    .await;
    assert_eq!(out.new_findings, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the ingest waited for the lock"
    );
    held.await.unwrap().close().await.unwrap();
    assert_eq!(store.list_tenants().await.unwrap().len(), 2);
    let keys = store.finding_keys("acme", "amp").await.unwrap();
    assert_eq!(keys.len(), 1, "only the write that ran is stored: {keys:?}");
}

// ---------------------------------------------------------------------------------------------
// Leases

/// Waits until `job`'s lease is free (released or expired), failing after a deadline.
async fn until_lease_is_free(store: &Store, job: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = store.leases_view().await.expect("the leases");
        if view.iter().any(|l| l.job == job && l.expired) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease of {job} never became free: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Twenty replicas (on two pools: two processes on one SQLite file, or two connections'
/// worth of replicas on PostgreSQL) race for one job, fifty rounds each, a round lasting until
/// the replica wins once (a thousand grants in all). A winner checks that
/// nobody else is inside, notes its token, then either releases the lease or lets it lapse
/// (renewed with no time left), so that both a release and an expiry hand the job on. At most
/// one holder at a time; each grant's token is the previous one's plus one.
async fn replicas_racing_for_a_job_hold_it_one_at_a_time_with_growing_tokens(db: &TestDb) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    const REPLICAS: usize = 20;
    const ROUNDS: usize = 50;
    const JOB: &str = "poll:1";

    let (one, two) = tokio::join!(db.open(), db.open());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let inside = Arc::new(AtomicUsize::new(0));
    // (token, holder, whether it lapsed rather than being released) of every grant, in order.
    let grants: Arc<Mutex<Vec<(i64, ReplicaId, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..REPLICAS {
        let store = if r % 2 == 0 { one.clone() } else { two.clone() };
        let inside = inside.clone();
        let grants = grants.clone();
        tasks.spawn(async move {
            let me = Replica::this_process().id;
            let mut lost = 0usize;
            for round in 0..ROUNDS {
                // A round lasts until this replica wins once.
                let lease = loop {
                    let lease = store
                        .try_acquire(JOB, &me, Duration::from_secs(60))
                        .await
                        .expect("try to acquire");
                    match lease {
                        Some(lease) => break lease,
                        None => {
                            lost += 1;
                            assert!(
                                tokio::time::Instant::now() < deadline,
                                "round {round} of {me} never won"
                            );
                            tokio::task::yield_now().await;
                        }
                    }
                };
                assert_eq!(lease.holder, me);
                let before = inside.fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "two holders of {JOB} at once");
                let lapse = (round + r) % 3 == 0;
                {
                    let mut grants = grants.lock().expect("the grants");
                    if let Some((last, _, _)) = grants.last() {
                        assert_eq!(lease.token, last + 1, "tokens grow by one per grant");
                    }
                    grants.push((lease.token, me.clone(), lapse));
                }
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                if lapse {
                    // The lease stays this holder's, expired: the next taker takes it over.
                    store
                        .renew(&lease, Duration::ZERO)
                        .await
                        .expect("renew to lapse");
                } else {
                    assert!(store.release(&lease).await.expect("release"));
                }
            }
            lost
        });
    }
    let mut lost = 0;
    while let Some(res) = tasks.join_next().await {
        lost += res.expect("a racing replica");
    }
    let won = REPLICAS * ROUNDS;
    let grants = grants.lock().expect("the grants").clone();
    assert_eq!(grants.len(), won);
    let tokens: Vec<i64> = grants.iter().map(|g| g.0).collect();
    let expected: Vec<i64> = (1..=i64::try_from(won).unwrap()).collect();
    assert_eq!(
        tokens, expected,
        "tokens 1, 2, 3... in the order of the grants"
    );
    let holders: std::collections::HashSet<&ReplicaId> = grants.iter().map(|g| &g.1).collect();
    let takeovers = grants.iter().filter(|g| g.2).count();
    eprintln!(
        "{:?}: {won} grants to {} replicas, {lost} attempts lost, {takeovers} left to lapse",
        db.backend,
        holders.len()
    );
    let view = one.leases_view().await.unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].token, i64::try_from(won).unwrap());
}

/// A holder's lease lapses; another replica takes the job over with the next token; the old
/// holder can neither renew nor commit an ingest with its fence (nothing stored, the mark
/// unmoved), while the new holder's ingest commits.
async fn an_expired_lease_is_taken_over_and_the_old_holders_ingest_is_refused(db: &TestDb) {
    let (store, other) = tokio::join!(db.open(), db.open());
    let src = tenant_with_source(&store, "acme", "amp", SourceKind::SecureEndpoint).await;
    let job = poll_job(src.id);
    let (a, b) = (Replica::this_process(), Replica::this_process());
    store.register_replica(&a).await.unwrap();
    other.register_replica(&b).await.unwrap();
    let fenced = |findings: Vec<Finding>, lease: &Lease| IngestBatch {
        fence: Some(lease.fence()),
        ..batch(findings)
    };

    let long = Duration::from_secs(60);
    let first = store.try_acquire(&job, &a.id, long).await.unwrap().unwrap();
    assert_eq!((first.token, &first.holder), (1, &a.id));
    assert_eq!(other.try_acquire(&job, &b.id, long).await.unwrap(), None);
    let again = store.try_acquire(&job, &a.id, long).await.unwrap().unwrap();
    assert_eq!(again.token, first.token, "the holder renews: same token");
    let out = store
        .ingest(
            src.id,
            fenced(
                vec![endpoint_finding(
                    "e1",
                    "pc1",
                    10,
                    Severity::High,
                    "10.0.0.1",
                )],
                &first,
            ),
        )
        .await
        .expect("the holder's ingest");
    assert_eq!((out.new_findings, out.mark), (1, Some(at(10))));

    // The holder stalls: its lease, renewed with a tiny ttl, lapses.
    let short = store
        .try_acquire(&job, &a.id, Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(short.token, first.token);
    until_lease_is_free(&other, &job).await;
    let stale = |second: i64| {
        fenced(
            vec![endpoint_finding(
                "e2",
                "pc2",
                second,
                Severity::High,
                "10.0.0.2",
            )],
            &first,
        )
    };
    // Expired but not yet taken: already refused.
    let err = store.ingest(src.id, stale(20)).await;
    assert!(
        matches!(&err, Err(StoreError::LeaseLost { job: j }) if *j == job),
        "{err:?}"
    );

    let taken = other.try_acquire(&job, &b.id, long).await.unwrap().unwrap();
    assert_eq!(
        (taken.token, &taken.holder),
        (2, &b.id),
        "taken over, next token"
    );
    let renewed = store.renew(&first, long).await;
    assert!(
        matches!(renewed, Err(StoreError::LeaseLost { .. })),
        "{renewed:?}"
    );
    assert!(!store.release(&first).await.unwrap(), "nothing to release");
    assert_eq!(store.try_acquire(&job, &a.id, long).await.unwrap(), None);

    let err = store.ingest(src.id, stale(20)).await;
    assert!(matches!(err, Err(StoreError::LeaseLost { .. })), "{err:?}");
    assert_eq!(store.finding_keys("acme", "amp").await.unwrap(), ["e1"]);
    let source = store.get_source("acme", "amp").await.unwrap().unwrap();
    assert_eq!(source.cursor_mark, Some(at(10)), "the mark unmoved");
    assert_eq!(store.counts(None).await.unwrap().incidents, 1);

    let out = other
        .ingest(
            src.id,
            fenced(
                vec![endpoint_finding(
                    "e2",
                    "pc2",
                    20,
                    Severity::High,
                    "10.0.0.2",
                )],
                &taken,
            ),
        )
        .await
        .expect("the new holder's ingest");
    assert_eq!((out.new_findings, out.mark), (1, Some(at(20))));
    assert_eq!(
        store.finding_keys("acme", "amp").await.unwrap(),
        ["e1", "e2"]
    );

    // Released, the job is free and the next grant's token is higher still: never reused.
    assert!(other.release(&taken).await.unwrap());
    let view = store.leases_view().await.unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!((view[0].holder.as_ref(), view[0].token), (None, 2));
    assert!(view[0].expired);
    let err = other.ingest(src.id, stale(30)).await;
    assert!(matches!(err, Err(StoreError::LeaseLost { .. })), "{err:?}");
    let back = store.try_acquire(&job, &a.id, long).await.unwrap().unwrap();
    assert_eq!(back.token, 3);
    let view = other.leases_view().await.unwrap();
    assert_eq!(
        (view[0].holder.as_ref(), view[0].token, view[0].expired),
        (Some(&a.id), 3, false)
    );

    // A fence for a job that was never granted is refused too.
    let never = IngestBatch {
        fence: Some(socbridge_store::Fence {
            job: "poll:unknown".into(),
            token: 1,
        }),
        ..batch(vec![endpoint_finding(
            "e3",
            "pc3",
            30,
            Severity::High,
            "10.0.0.3",
        )])
    };
    let err = store.ingest(src.id, never).await;
    assert!(matches!(err, Err(StoreError::LeaseLost { .. })), "{err:?}");
    assert_eq!(store.counts(None).await.unwrap().findings, 2);
}

/// Three replicas share ten jobs by asking each for its fair share (ceil(10 / 3) = 4): first
/// one after the other, then thirty jobs all at once; when one retires, the two left take its
/// jobs up to their new share.
async fn acquire_many_spreads_jobs_fairly_over_the_live_replicas(db: &TestDb) {
    use std::collections::BTreeSet;
    let (one, two, three) = tokio::join!(db.open(), db.open(), db.open());
    let stores = [one, two, three];
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::this_process()).collect();
    for (store, replica) in stores.iter().zip(&replicas) {
        store.register_replica(replica).await.unwrap();
    }
    let live = stores[0]
        .live_replicas(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(live, 3);
    let ttl = Duration::from_secs(60);
    let jobs = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}:{i:03}")).collect()
    };
    let all_held = |held: &[Vec<Lease>], jobs: &[String], share: usize| {
        let mut seen = BTreeSet::new();
        for (r, leases) in held.iter().enumerate() {
            assert!(leases.len() <= share, "replica {r} holds {}", leases.len());
            for l in leases {
                assert_eq!(l.holder, replicas[r].id);
                assert!(seen.insert(l.job.clone()), "{} held twice", l.job);
            }
        }
        seen == jobs.iter().cloned().collect::<BTreeSet<_>>()
    };

    // One after the other: 4, 4, 2.
    let ten = jobs("poll", 10);
    let share = fair_share(ten.len(), live);
    assert_eq!(share, 4);
    let mut held = Vec::new();
    for (store, replica) in stores.iter().zip(&replicas) {
        held.push(
            store
                .acquire_many(&replica.id, &ten, share, ttl)
                .await
                .unwrap(),
        );
    }
    assert_eq!(held.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
    assert!(all_held(&held, &ten, share));
    // A second round renews: the same jobs, the same tokens.
    let again = stores[0]
        .acquire_many(&replicas[0].id, &ten, share, ttl)
        .await
        .unwrap();
    let tokens = |leases: &[Lease]| -> Vec<(String, i64)> {
        leases.iter().map(|l| (l.job.clone(), l.token)).collect()
    };
    assert_eq!(tokens(&again), tokens(&held[0]));

    // All at once, in rounds until every job is held (a claim skips rows another replica is
    // claiming at that moment, so a round may take fewer than the share).
    let thirty = jobs("outbox", 30);
    let share = fair_share(thirty.len(), live);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let ask = |i: usize| stores[i].acquire_many(&replicas[i].id, &thirty, share, ttl);
        let (a, b, c) = tokio::join!(ask(0), ask(1), ask(2));
        let held = [a.unwrap(), b.unwrap(), c.unwrap()];
        if all_held(&held, &thirty, share) {
            assert_eq!(held.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 10]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "30 jobs not spread after {rounds} rounds: {held:?}"
        );
    }

    // One replica retires: its jobs are free at once, and the two left take them up to
    // their new share, ceil(10 / 2) = 5.
    stores[0].retire_replica(&replicas[0].id).await.unwrap();
    let live = stores[1]
        .live_replicas(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(live, 2);
    let share = fair_share(ten.len(), live);
    let mut held = vec![Vec::new()];
    for (store, replica) in stores.iter().zip(&replicas).skip(1) {
        held.push(
            store
                .acquire_many(&replica.id, &ten, share, ttl)
                .await
                .unwrap(),
        );
    }
    assert_eq!(held.iter().map(Vec::len).collect::<Vec<_>>(), [0, 5, 5]);
    assert!(all_held(&held, &ten, share));
    let taken_over = held.iter().flatten().filter(|l| l.token == 2).count();
    assert_eq!(
        taken_over, 4,
        "the retired replica's 4 jobs, granted a second time"
    );
    let view = stores[2].leases_view().await.unwrap();
    assert_eq!(view.len(), 40);
    assert!(
        view.iter()
            .filter(|l| l.job.starts_with("poll:"))
            .all(|l| !l.expired)
    );

    // A retired replica is gone: its heartbeat is refused. One that stops beating drops out of
    // the live count once `within` has passed, while one that beats stays in it.
    let err = stores[0].heartbeat(&replicas[0].id).await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        stores[1].heartbeat(&replicas[1].id).await.unwrap();
        let live = stores[1]
            .live_replicas(Duration::from_millis(50))
            .await
            .unwrap();
        if live == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent replica still counts as live"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listed: Vec<ReplicaId> = stores[2]
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut expected = vec![replicas[1].id.clone(), replicas[2].id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
}

/// Three replicas (three pools) run 100 scheduling rounds each over 12 jobs at once, each
/// asking for its fair share of 4, renewing what it holds, and giving one job up per round
/// (released, or left to lapse every other time), so that jobs keep changing hands through
/// the `SKIP LOCKED` claim. An in-memory ledger of who holds what checks every answer: never
/// a job held by two replicas, never more than the share, each job's tokens only growing.
async fn acquire_many_under_churn_never_grants_a_job_twice(db: &TestDb) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    const JOBS: usize = 12;
    const REPLICAS: usize = 3;
    const ROUNDS: usize = 100;
    let share = fair_share(JOBS, REPLICAS);
    let jobs: Arc<Vec<String>> = Arc::new((0..JOBS).map(|i| format!("poll:{i}")).collect());
    /// Who holds what, as the answers said: job -> (holder, token) while held, and job ->
    /// the last token ever granted.
    #[derive(Default)]
    struct Ledger {
        owners: HashMap<String, (ReplicaId, i64)>,
        last: HashMap<String, i64>,
    }
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..REPLICAS {
        let store = db.open().await;
        let jobs = jobs.clone();
        let ledger = ledger.clone();
        tasks.spawn(async move {
            let me = Replica::this_process().id;
            let (mut grants, mut lapsed) = (0usize, 0usize);
            for round in 0..ROUNDS {
                let held = store
                    .acquire_many(&me, &jobs, share, Duration::from_secs(60))
                    .await
                    .expect("a lease round");
                assert!(held.len() <= share, "{me} holds {}", held.len());
                {
                    let mut ledger = ledger.lock().expect("the ledger");
                    let Ledger { owners, last } = &mut *ledger;
                    for lease in &held {
                        assert_eq!(lease.holder, me);
                        match owners.get(&lease.job) {
                            Some((holder, token)) => assert_eq!(
                                (holder, *token),
                                (&me, lease.token),
                                "{} granted to {me} while held",
                                lease.job
                            ),
                            None => {
                                let before = last.get(&lease.job).copied().unwrap_or(0);
                                assert!(
                                    lease.token > before,
                                    "{}: token {} after {before}",
                                    lease.job,
                                    lease.token
                                );
                                last.insert(lease.job.clone(), lease.token);
                                owners.insert(lease.job.clone(), (me.clone(), lease.token));
                                grants += 1;
                            }
                        }
                    }
                }
                // Give one up: out of the ledger first, then in the store, so that nobody can
                // be granted it while the ledger still names this replica.
                if let Some(lease) = held.get((round + r) % held.len().max(1)) {
                    ledger.lock().expect("the ledger").owners.remove(&lease.job);
                    if round % 2 == 0 {
                        store.renew(lease, Duration::ZERO).await.expect("lapse");
                        lapsed += 1;
                    } else {
                        assert!(store.release(lease).await.expect("release"));
                    }
                }
            }
            (grants, lapsed)
        });
    }
    let (mut grants, mut lapsed) = (0, 0);
    while let Some(res) = tasks.join_next().await {
        let (g, l) = res.expect("a replica's rounds");
        grants += g;
        lapsed += l;
    }
    let tokens: i64 = ledger.lock().expect("the ledger").last.values().sum();
    assert_eq!(
        tokens,
        i64::try_from(grants).unwrap(),
        "every grant took the next token of its job"
    );
    eprintln!(
        "{:?}: {grants} grants of {JOBS} jobs, {lapsed} left to lapse",
        db.backend
    );
    assert!(grants > JOBS, "jobs changed hands");
}

/// A holder ingests large fenced pages under a lease with a short ttl, renewing before each;
/// another replica keeps trying to take the job over and, the moment it has, reads which
/// findings are stored. Nothing the old holder sends may commit after that: a page whose fence
/// was checked before the takeover commits before it (the takeover waits on the lease row, or
/// on SQLite's write lock), and any later page is refused.
async fn a_takeover_waits_for_the_fenced_ingest_in_flight(db: &TestDb) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const TAKEOVERS: usize = 4;
    const PAGE: i64 = 600;
    let (old, new) = tokio::join!(db.open(), db.open());
    let src = tenant_with_source(&old, "acme", "amp", SourceKind::SecureEndpoint).await;
    let (mut committed, mut refused) = (0usize, 0usize);
    for round in 0..TAKEOVERS {
        let job = format!("{}:{round}", poll_job(src.id));
        let a = Replica::this_process().id;
        let b = Replica::this_process().id;
        let taken = Arc::new(AtomicBool::new(false));
        let holder = {
            let (store, job, taken) = (old.clone(), job.clone(), taken.clone());
            let source_id = src.id;
            tokio::spawn(async move {
                let (mut committed, mut refused) = (0usize, 0usize);
                let mut page = 0i64;
                while !taken.load(Ordering::SeqCst) {
                    let Some(lease) = store
                        .try_acquire(&job, &a, Duration::from_millis(20))
                        .await
                        .expect("try to acquire")
                    else {
                        break;
                    };
                    let base = (i64::try_from(round).unwrap() * 1_000 + page) * PAGE;
                    let findings = (base..base + PAGE)
                        .map(|n| {
                            endpoint_finding(
                                &format!("a{n}"),
                                &format!("pc{}", n % 7),
                                n,
                                Severity::High,
                                "10.0.0.1",
                            )
                        })
                        .collect();
                    let page_batch = IngestBatch {
                        fence: Some(lease.fence()),
                        ..batch(findings)
                    };
                    match store.ingest(source_id, page_batch).await {
                        Ok(_) => committed += 1,
                        Err(StoreError::LeaseLost { .. }) => refused += 1,
                        Err(e) => panic!("a fenced ingest: {e}"),
                    }
                    page += 1;
                }
                (committed, refused)
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let lease = loop {
            if let Some(lease) = new
                .try_acquire(&job, &b, Duration::from_secs(60))
                .await
                .unwrap()
            {
                break lease;
            }
            assert!(tokio::time::Instant::now() < deadline, "never taken over");
            tokio::task::yield_now().await;
        };
        let at_takeover = new.finding_keys("acme", "amp").await.unwrap();
        taken.store(true, Ordering::SeqCst);
        let (c, r) = holder.await.expect("the old holder");
        committed += c;
        refused += r;
        let after = new.finding_keys("acme", "amp").await.unwrap();
        assert_eq!(
            after.len(),
            at_takeover.len(),
            "the old holder committed after the takeover (token {})",
            lease.token
        );
        assert!(new.release(&lease).await.unwrap());
    }
    eprintln!(
        "{:?}: {TAKEOVERS} takeovers, {committed} fenced pages committed, {refused} refused",
        db.backend
    );
}
