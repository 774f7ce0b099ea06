//! The store conformance suite, written once against the `EventStore` trait and run
//! on every backend: SQLite (a real file) and PostgreSQL (a real server, a fresh
//! database per test). PostgreSQL must be reachable: these tests fail, never skip,
//! when it is not (set CAIRN_TEST_POSTGRES to point elsewhere).

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use cairn_host::store::postgres::PostgresStore;
use cairn_host::store::sqlite::SqliteStore;
use cairn_host::store::{
    AppendError, AppendRequest, Direction, DocumentWrites, EventStore, ExpectedVersion,
    ProjectionStatus, PromoteRule, Promotion, ProposedEvent, TenantId,
};

/// A store on a fresh database, and what must be kept alive while it is used.
struct Backend {
    store: Arc<dyn EventStore>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database made for this test, dropped by `finish`.
    database: Option<String>,
}

impl Backend {
    async fn finish(self) {
        drop(self.store);
        if let Some(name) = self.database {
            common::drop_database(name);
        }
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
    Backend {
        store: Arc::new(SqliteStore::open(&url).await.unwrap()),
        _dir: Some(dir),
        database: None,
    }
}

async fn postgres() -> Backend {
    let (url, name) = common::postgres_database().await;
    Backend {
        store: Arc::new(PostgresStore::open(&url).await.unwrap()),
        _dir: None,
        database: Some(name),
    }
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

async fn with_tenant(store: &dyn EventStore, id: &str) -> TenantId {
    let t = tenant(id);
    assert!(
        store
            .create_tenant(&t, &format!("hash-{id}"), &serde_json::json!({}))
            .await
            .unwrap()
    );
    t
}

fn event(id: &str, kind: &str) -> ProposedEvent {
    ProposedEvent {
        event_id: id.to_owned(),
        event_type: kind.to_owned(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        metadata: "{}".to_owned(),
    }
}

fn append(t: &TenantId, stream: &str, expected: ExpectedVersion, ids: &[&str]) -> AppendRequest {
    AppendRequest {
        tenant: t.clone(),
        stream_id: stream.to_owned(),
        expected,
        events: ids.iter().map(|id| event(id, "Happened")).collect(),
        ids_from_writer: true,
        command_id: None,
        command_fingerprint: None,
        atomic_group: None,
    }
}

async fn one(
    store: &dyn EventStore,
    request: AppendRequest,
) -> Result<cairn_host::store::AppendOutcome, AppendError> {
    store.append_batch(vec![request]).await.pop().unwrap()
}

/// Runs one scenario on both backends.
macro_rules! on_every_backend {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let backend = super::sqlite().await;
                super::$scenario(backend.store.clone()).await;
            }
            #[tokio::test]
            async fn postgres() {
                let backend = super::postgres().await;
                super::$scenario(backend.store.clone()).await;
                backend.finish().await;
            }
        }
    };
}

async fn expected_version_modes(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    let stale = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::StreamExists, &["a"]),
    )
    .await;
    assert!(matches!(
        stale,
        Err(AppendError::WrongExpectedVersion { current: 0 })
    ));
    let first = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::NoStream, &["a", "b"]),
    )
    .await
    .unwrap();
    assert_eq!(first.version, 2);
    assert_eq!(
        first
            .events
            .iter()
            .map(|e| (e.version, e.position))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2)]
    );
    let again = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::NoStream, &["c"]),
    )
    .await;
    assert!(matches!(
        again,
        Err(AppendError::WrongExpectedVersion { current: 2 })
    ));
    let exact = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::Exact(2), &["c"]),
    )
    .await
    .unwrap();
    assert_eq!(exact.version, 3);
    let stale_exact = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::Exact(2), &["d"]),
    )
    .await;
    assert!(matches!(
        stale_exact,
        Err(AppendError::WrongExpectedVersion { current: 3 })
    ));
    one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::StreamExists, &["d"]),
    )
    .await
    .unwrap();
    one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::Any, &["e"]),
    )
    .await
    .unwrap();
    assert_eq!(store.stream_version(&t, "s").await.unwrap(), 5);
    assert_eq!(store.head(&t).await.unwrap(), 5);
}
on_every_backend!(expected_versions, expected_version_modes);

async fn idempotent_retries(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    let first = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::NoStream, &["a", "b"]),
    )
    .await
    .unwrap();
    let retry = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::NoStream, &["a", "b"]),
    )
    .await
    .unwrap();
    assert!(retry.replayed);
    assert_eq!(
        retry.events, first.events,
        "a retry answers the original events"
    );
    assert_eq!(store.head(&t).await.unwrap(), 2, "a retry writes nothing");
    let partial = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::Any, &["b", "z"]),
    )
    .await;
    assert!(matches!(partial, Err(AppendError::IdempotencyConflict)));
    let elsewhere = one(
        store.as_ref(),
        append(&t, "other", ExpectedVersion::Any, &["a", "b"]),
    )
    .await;
    assert!(matches!(elsewhere, Err(AppendError::IdempotencyConflict)));
    assert_eq!(store.head(&t).await.unwrap(), 2);
}
on_every_backend!(idempotency, idempotent_retries);

async fn group_commit_keeps_outcomes_exact(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    one(
        store.as_ref(),
        append(&t, "taken", ExpectedVersion::Any, &["x"]),
    )
    .await
    .unwrap();
    let results = store
        .append_batch(vec![
            append(&t, "a", ExpectedVersion::NoStream, &["a1"]),
            append(&t, "taken", ExpectedVersion::NoStream, &["t2"]),
            append(&t, "b", ExpectedVersion::NoStream, &["b1", "b2"]),
        ])
        .await;
    assert_eq!(results[0].as_ref().unwrap().events[0].position, 2);
    assert!(matches!(
        results[1],
        Err(AppendError::WrongExpectedVersion { current: 1 })
    ));
    let b = results[2].as_ref().unwrap();
    assert_eq!(
        b.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3, 4],
        "a refused neighbour takes no position"
    );
    assert_eq!(store.head(&t).await.unwrap(), 4);
}
on_every_backend!(group_commit, group_commit_keeps_outcomes_exact);

async fn reads_and_positions_per_tenant(store: Arc<dyn EventStore>) {
    let a = with_tenant(store.as_ref(), "a").await;
    let b = with_tenant(store.as_ref(), "b").await;
    for i in 0..5 {
        let mut request = append(&a, "s", ExpectedVersion::Any, &[]);
        request.events = vec![event(
            &format!("a{i}"),
            if i % 2 == 0 { "Even" } else { "Odd" },
        )];
        one(store.as_ref(), request).await.unwrap();
        one(
            store.as_ref(),
            append(&b, "s", ExpectedVersion::Any, &[&format!("b{i}")]),
        )
        .await
        .unwrap();
    }
    let log_a = store.read_log(&a, 0, 100, &[]).await.unwrap();
    let log_b = store.read_log(&b, 0, 100, &[]).await.unwrap();
    assert_eq!(
        log_a.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        log_b.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(
        log_b.iter().all(|e| e.event_id.starts_with('b')),
        "no neighbour rows"
    );
    let odd = store
        .read_log(&a, 0, 100, &["Odd".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        odd.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![2, 4]
    );
    let page = store.read_log(&a, 2, 2, &[]).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let backward = store
        .read_stream(&a, "s", 4, 2, Direction::Backward)
        .await
        .unwrap();
    assert_eq!(
        backward.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert!(
        store
            .read_stream(&a, "missing", 1, 10, Direction::Forward)
            .await
            .unwrap()
            .is_empty()
    );
}
on_every_backend!(reads, reads_and_positions_per_tenant);

async fn concurrent_writers_and_a_follower(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    let id = format!("w{w}-{i}");
                    // Every writer on one shared stream plus its own: contention on both.
                    let shared = append(&t, "shared", ExpectedVersion::Any, &[&id]);
                    let own = append(
                        &t,
                        &format!("own-{w}"),
                        ExpectedVersion::Any,
                        &[&format!("o{id}")],
                    );
                    for r in store.append_batch(vec![shared, own]).await {
                        r.unwrap();
                    }
                }
            })
        })
        .collect();
    let follower = {
        let (store, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            while seen.len() < 480 {
                for e in store.read_log(&t, after, 50, &[]).await.unwrap() {
                    assert_eq!(e.position, after + 1, "the follower skipped a position");
                    after = e.position;
                    seen.push(e.event_id);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = follower.await.unwrap();
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        480,
        "every event exactly once"
    );
    let shared = store
        .read_stream(&t, "shared", 1, 1000, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(
        shared.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=240).collect::<Vec<_>>(),
        "versions stay contiguous under contention"
    );
}

on_every_backend!(concurrency, concurrent_writers_and_a_follower);

async fn projection_batches_commit_once(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    let build = store
        .add_projection_version(&t, "balances", 1, "sha256:aa", ProjectionStatus::Active)
        .await
        .unwrap();
    let mut writes = DocumentWrites::new();
    writes.insert("account-1".into(), Some(br#"{"balance":10}"#.to_vec()));
    writes.insert("account-2".into(), Some(br#"{"balance":20}"#.to_vec()));
    assert!(
        store
            .commit_projection_batch(&t, "balances", build.version, 0, 5, &writes)
            .await
            .unwrap()
    );
    // The same batch again, from the old checkpoint (a host that crashed before it saw
    // its commit): refused, nothing applied twice.
    let mut replay = DocumentWrites::new();
    replay.insert("account-3".into(), Some(b"{}".to_vec()));
    assert!(
        !store
            .commit_projection_batch(&t, "balances", build.version, 0, 5, &replay)
            .await
            .unwrap()
    );
    assert!(
        store
            .document(&t, "balances", 1, "account-3")
            .await
            .unwrap()
            .is_none()
    );
    let mut delete = DocumentWrites::new();
    delete.insert("account-2".into(), None);
    assert!(
        store
            .commit_projection_batch(&t, "balances", 1, 5, 6, &delete)
            .await
            .unwrap()
    );
    let docs = store
        .documents(&t, "balances", 1, "account-", None, 10)
        .await
        .unwrap();
    assert_eq!(
        docs,
        vec![("account-1".to_owned(), r#"{"balance":10}"#.to_owned())]
    );
    let records = store.projections(Some(&t)).await.unwrap();
    assert_eq!(records[0].position, 6);
}
on_every_backend!(projection_commits, projection_batches_commit_once);

async fn promotion_keeps_two_retired(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    for v in 1..=4u64 {
        let status = if v == 1 {
            ProjectionStatus::Active
        } else {
            ProjectionStatus::Building
        };
        let build = store
            .add_projection_version(&t, "p", v, "sha256:aa", status)
            .await
            .unwrap();
        let mut writes = DocumentWrites::new();
        writes.insert("k".into(), Some(format!("{{\"v\":{v}}}").into_bytes()));
        store
            .commit_projection_batch(&t, "p", build.version, 0, 1, &writes)
            .await
            .unwrap();
        if v > 1 {
            let promotion = store
                .promote_projection(&t, "p", v, PromoteRule::CaughtUp, 2)
                .await
                .unwrap();
            let doomed = if v == 4 { vec![1] } else { vec![] };
            assert_eq!(
                promotion,
                Promotion {
                    promoted: true,
                    doomed: doomed.clone()
                }
            );
            for old in doomed {
                assert!(store.delete_projection_version(&t, "p", old).await.unwrap());
            }
        }
    }
    let statuses: Vec<_> = store
        .projections(Some(&t))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (2, ProjectionStatus::Retired),
            (3, ProjectionStatus::Retired),
            (4, ProjectionStatus::Active)
        ]
    );
    assert!(
        store.document(&t, "p", 1, "k").await.unwrap().is_none(),
        "documents of a deleted build are gone"
    );
    // Rollback.
    store
        .promote_projection(&t, "p", 2, PromoteRule::Explicit, 2)
        .await
        .unwrap();
    let active: Vec<_> = store
        .projections(Some(&t))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == ProjectionStatus::Active)
        .map(|r| r.version)
        .collect();
    assert_eq!(active, vec![2]);
}
on_every_backend!(promotion, promotion_keeps_two_retired);

async fn only_the_newest_request_takes_over(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    let add = |status| {
        let (store, t) = (store.clone(), t.clone());
        async move {
            store
                .add_projection_version(&t, "p", 1, "sha256:aa", status)
                .await
                .unwrap()
                .version
        }
    };
    let v1 = add(ProjectionStatus::Active).await;
    let v2 = add(ProjectionStatus::Building).await;
    let v3 = add(ProjectionStatus::Building).await;
    let caught_up = |v| store.promote_projection(&t, "p", v, PromoteRule::CaughtUp, 2);
    // v3 superseded v2: v2 never takes over, even when it catches up.
    assert!(!caught_up(v2).await.unwrap().promoted);
    // An explicit choice cancels v3's pending take-over.
    assert!(
        store
            .promote_projection(&t, "p", v1, PromoteRule::Explicit, 2)
            .await
            .unwrap()
            .promoted
    );
    assert!(!caught_up(v3).await.unwrap().promoted);
    let statuses: Vec<_> = store
        .projections(Some(&t))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (v1, ProjectionStatus::Active),
            (v2, ProjectionStatus::Retired),
            (v3, ProjectionStatus::Retired)
        ]
    );
    // A retired build is deleted only while it is still retired.
    assert!(!store.delete_projection_version(&t, "p", v1).await.unwrap());
}
on_every_backend!(promotion_rule, only_the_newest_request_takes_over);

async fn deleting_a_tenant_removes_its_rows(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "gone").await;
    let keep = with_tenant(store.as_ref(), "kept").await;
    one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::Any, &["a"]),
    )
    .await
    .unwrap();
    one(
        store.as_ref(),
        append(&keep, "s", ExpectedVersion::Any, &["a"]),
    )
    .await
    .unwrap();
    assert!(store.delete_tenant(&t).await.unwrap());
    assert!(store.tenant(&t).await.unwrap().is_none());
    assert_eq!(store.stream_version(&t, "s").await.unwrap(), 0);
    assert_eq!(store.stream_version(&keep, "s").await.unwrap(), 1);
    let refused = one(
        store.as_ref(),
        append(&t, "s", ExpectedVersion::Any, &["b"]),
    )
    .await;
    assert!(matches!(refused, Err(AppendError::UnknownTenant)));
}
on_every_backend!(tenant_deletion, deleting_a_tenant_removes_its_rows);

on_every_backend!(command_ids, command_ids_are_the_tenants_and_expire);

async fn command_ids_are_the_tenants_and_expire(store: Arc<dyn EventStore>) {
    let t = with_tenant(store.as_ref(), "acme").await;
    let mut first = append(&t, "a", ExpectedVersion::Any, &["e1"]);
    first.command_id = Some("c-1".into());
    first.command_fingerprint = Some("f".into());
    one(store.as_ref(), first).await.unwrap();
    // The same id on another stream of the tenant is already applied.
    let mut elsewhere = append(&t, "b", ExpectedVersion::Any, &["e2"]);
    elsewhere.command_id = Some("c-1".into());
    assert!(matches!(
        one(store.as_ref(), elsewhere).await,
        Err(AppendError::CommandAlreadyApplied)
    ));
    let record = store.command_record(&t, "c-1").await.unwrap().unwrap();
    assert_eq!(record.stream_id, "a");
    assert_eq!(record.fingerprint.as_deref(), Some("f"));
    assert_eq!((record.first_version, record.last_version), (1, 1));
    // Retention forgets it; then the id is free again.
    let future = cairn_host::store::now_ms() + 1000;
    assert_eq!(store.prune_commands(future).await.unwrap(), 1);
    assert!(store.command_record(&t, "c-1").await.unwrap().is_none());
}
