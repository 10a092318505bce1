//! The poll algorithm against the in-process emulator: the per-run cap defers work without
//! skipping it, and events arriving while a multi-page walk is under way are neither lost nor
//! stored twice. The emulator's counters are the witness.

use socbridge_engine::{Config, Engine, EngineOptions};
use socbridge_secrets::MasterKey;
use socbridge_sim::{AddEvents, SimConfig, SimHandle};
use socbridge_store::Store;
use std::time::Duration;

async fn setup(
    initial: usize,
    extra_source_settings: &str,
) -> (SimHandle, Engine, tempfile::TempDir) {
    let sim = socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 1,
        seed: 42,
        rate_per_minute: 0.0,
        initial_events_per_tenant: initial,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("socbridge.toml");
    sim.write_config(&cfg_path).unwrap();
    let text = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "kind = \"secure_endpoint\"",
        &format!("kind = \"secure_endpoint\"\n{extra_source_settings}"),
    );
    std::fs::write(&cfg_path, text).unwrap();
    let config = Config::load(&cfg_path).unwrap();
    let store = Store::open_sqlite(&dir.path().join("socbridge.db"))
        .await
        .unwrap();
    let opts = EngineOptions {
        http: socbridge_connectors::http::HttpOptions::for_tests(),
        ..EngineOptions::default()
    };
    let engine = Engine::new(store, MasterKey::generate(), opts);
    engine.apply_config(&config).await.unwrap();
    (sim, engine, dir)
}

fn tenant(sim: &SimHandle) -> String {
    sim.endpoints().tenants[0].name.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_defers_the_rest_to_the_next_run_without_skipping() {
    let (sim, engine, _dir) = setup(400, "page_size = 30\ncap_per_run = 50").await;
    let t = tenant(&sim);
    let expected = sim.counters().secure_endpoint.tenants[&t].events_high_priority;
    assert!(
        expected > 150,
        "enough events to need several capped runs: {expected}"
    );

    let mut runs = 0;
    let mut total = 0;
    loop {
        let reports = engine.poll(Some(&t), None).await.unwrap();
        let r = &reports[0];
        assert!(r.error.is_none(), "{r:?}");
        assert!(r.new_findings <= 50, "at most the cap per run: {r:?}");
        total += r.new_findings;
        runs += 1;
        if !r.cap_reached {
            break;
        }
        assert!(runs < 50, "the capped runs make progress");
    }
    assert!(
        runs >= 3,
        "the cap split the work over several runs ({runs})"
    );
    let counts = engine.store().counts(Some(&t)).await.unwrap();
    assert_eq!(counts.findings as u64, expected, "nothing skipped");
    assert_eq!(total as u64, expected, "nothing stored twice");
    assert_eq!(
        sim.counters().secure_endpoint.tenants[&t].served_distinct_high_priority,
        expected
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_worked_through_without_reading_pages_it_does_not_store() {
    // No overlap: what a poll reads again is only the mark's own second (the window starts
    // at a whole second), a few events, so the oldest page of the window holds the 80 new
    // findings the cap lets each poll store.
    let (sim, engine, _dir) =
        setup(3000, "page_size = 100\ncap_per_run = 80\noverlap = \"0s\"").await;
    let t = tenant(&sim);
    let expected = sim.counters().secure_endpoint.tenants[&t].events_high_priority;
    assert!(
        expected > 1000,
        "a backlog of many capped polls: {expected}"
    );

    let reports = engine.poll_until_idle(1000).await.unwrap();
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    assert!(
        reports.len() >= 10,
        "the cap split the backlog: {} polls",
        reports.len()
    );
    let counts = engine.store().counts(Some(&t)).await.unwrap();
    assert_eq!(counts.findings as u64, expected, "everything stored once");

    // Each capped poll reads one event to learn the window's size, then its oldest page:
    // about 101 records sent for 80 stored. Reading the newest page first, as a poll must
    // when it does not know of the backlog, would double that.
    let c = &sim.counters().secure_endpoint.tenants[&t];
    assert_eq!(c.served_distinct_high_priority, expected);
    assert!(
        c.records_served * 10 < expected * 16,
        "{} records sent for a backlog of {expected} ({} polls)",
        c.records_served,
        reports.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_poll_reads_no_event_past_the_one_it_stops_at() {
    // The shipped shape: the cap is one page, and the 2-minute overlap puts events stored
    // before at the start of every capped poll's window (3,000 events over the emulator's
    // 8 minutes: about 550 of them), so the poll walks past them and needs part of a last
    // page to fill its cap.
    let (sim, engine, _dir) = setup(3000, "page_size = 100\ncap_per_run = 100").await;
    let t = tenant(&sim);
    let expected = sim.counters().secure_endpoint.tenants[&t].events_high_priority;

    let reports = engine.poll_until_idle(1000).await.unwrap();
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    let counts = engine.store().counts(Some(&t)).await.unwrap();
    assert_eq!(counts.findings as u64, expected, "everything stored once");
    let polls = reports.len() as u64;
    assert!(polls >= 20, "the cap split the backlog: {polls} polls");

    // Every record the emulator sent was walked (stored, or found stored in the overlap),
    // but for each poll's one-event probe and the first poll's newest page, read before the
    // backlog was known. Reading whole pages past the cap sent about 65 more per poll.
    let walked: u64 = reports
        .iter()
        .map(|r| (r.new_findings + r.duplicates) as u64)
        .sum();
    let c = &sim.counters().secure_endpoint.tenants[&t];
    assert_eq!(c.served_distinct_high_priority, expected);
    assert!(
        c.records_served <= walked + polls + 100,
        "{} records sent, {walked} walked, over {polls} polls",
        c.records_served
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_during_a_multi_page_walk_are_not_lost() {
    arrivals_during_walks_are_stored_once("page_size = 10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_during_capped_walks_of_short_pages_are_not_lost() {
    // After its first store a walk asks for what the cap still admits: pages of 1 to 10
    // events, shifted by the arrivals like whole ones.
    arrivals_during_walks_are_stored_once("page_size = 10\ncap_per_run = 15").await;
}

/// Polls while events arrive (slow answers stretch each walk so that they land during it),
/// then until idle; every event is stored once.
async fn arrivals_during_walks_are_stored_once(settings: &str) {
    let (sim, engine, _dir) = setup(300, settings).await;
    let t = tenant(&sim);
    // Slow answers stretch the walk so that events land while it is under way.
    sim.set_faults(socbridge_sim::Faults {
        rate_slow: 1.0,
        slow_ms: 15,
        ..Default::default()
    });

    let writer = {
        let sim_events = sim.endpoints().control.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..40 {
                let body = AddEvents {
                    tenant: t.clone(),
                    count: 2,
                    malformed: false,
                    same_second: i % 3 == 0,
                    event_type_id: Some(1090519054),
                };
                client
                    .post(format!("{sim_events}/secure_endpoint/events"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let mut polls = 0;
    while !writer.is_finished() {
        let reports = engine.poll(Some(&t), None).await.unwrap();
        assert!(reports[0].error.is_none(), "{:?}", reports[0]);
        polls += 1;
    }
    writer.await.unwrap();
    sim.set_faults(socbridge_sim::Faults::default());
    // Polls after the last arrival pick up what came after the last walk (and what the cap
    // left).
    let reports = engine.poll_until_idle(1000).await.unwrap();
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");

    let c = &sim.counters().secure_endpoint.tenants[&t];
    let counts = engine.store().counts(Some(&t)).await.unwrap();
    assert_eq!(
        counts.findings as u64, c.events_high_priority,
        "after {polls} polls during arrivals"
    );
    assert_eq!(counts.findings as u64, c.served_distinct_high_priority);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mark_is_never_now_and_the_overlap_catches_same_second_arrivals() {
    let (sim, engine, _dir) = setup(20, "").await;
    let t = tenant(&sim);
    let first = engine.poll(Some(&t), None).await.unwrap().remove(0);
    assert!(first.error.is_none(), "{first:?}");
    let mark = first.mark.expect("a mark after storing findings");
    // The mark is the newest stored event's time, not the time of the poll.
    let src = engine
        .store()
        .list_sources(Some(&t))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(src.cursor_mark, Some(mark));
    assert!(mark < socbridge_model::Timestamp::now());

    // Events stamped in the same second as others, after the first poll: the overlap window
    // re-reads that second and the key drops what is already stored.
    sim.add_events(AddEvents {
        tenant: t.clone(),
        count: 5,
        malformed: false,
        same_second: true,
        event_type_id: Some(1090519054),
    });
    let second = engine.poll(Some(&t), None).await.unwrap().remove(0);
    assert_eq!(second.new_findings, 5, "{second:?}");
    assert!(
        second.duplicates > 0,
        "the overlap re-read stored events and dropped them: {second:?}"
    );
    let c = &sim.counters().secure_endpoint.tenants[&t];
    let counts = engine.store().counts(Some(&t)).await.unwrap();
    assert_eq!(counts.findings as u64, c.events_high_priority);
    sim.shutdown().await;
}
