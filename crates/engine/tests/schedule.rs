//! The scheduler of a running `serve` follows the stored sources as they are saved: it keeps
//! one view of them and lists them again only when the store says they changed, so a change
//! must reach it at once, not at the view's periodic re-listing (30 s).

mod common;
use common::*;
use socbridge_engine::SourceSettings;
use socbridge_model::SourceName;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_saved_while_serving_is_polled_at_once() {
    let rig = secure_endpoint_rig(sim_config(2, 31, 20)).await;
    let (stop, running) = serve(&rig.engine);
    let store = rig.store.clone();
    wait_until(Duration::from_secs(20), "every source polled once", || {
        let store = store.clone();
        async move {
            let sources = store.list_sources(None).await.unwrap();
            !sources.is_empty() && sources.iter().all(|s| s.last_poll_at.is_some())
        }
    })
    .await;

    // A second source of the first tenant, saved while the scheduler runs, with no
    // credentials: its first poll says so. It is polled once the next lease round (every 10 s
    // by default) has given this replica its lease and a tick found it due: well within 20 s,
    // where a view that missed the change would show it only when re-listed after 30 s.
    let tenant = rig.sim.endpoints().tenants[0].name.clone();
    let first = rig
        .store
        .list_sources(Some(&tenant))
        .await
        .unwrap()
        .remove(0);
    let settings = SourceSettings::from_json(&first.settings).unwrap();
    rig.engine
        .save_source(
            &tenant,
            &SourceName::new("second").unwrap(),
            &settings,
            None,
        )
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the new source's first poll",
        || {
            let (store, tenant) = (store.clone(), tenant.clone());
            async move {
                store
                    .get_source(&tenant, "second")
                    .await
                    .unwrap()
                    .is_some_and(|s| s.last_poll_at.is_some())
            }
        },
    )
    .await;
    let second = rig
        .store
        .get_source(&tenant, "second")
        .await
        .unwrap()
        .unwrap();
    assert!(
        second
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no credentials")),
        "{:?}",
        second.last_error
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("serve stops")
        .unwrap();
}
