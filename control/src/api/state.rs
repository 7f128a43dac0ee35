//! The service's state: its configuration, the database, and the policy as served (kept in
//! memory, replaced on every change).

use crate::db::Db;
use crate::error::ApiError;
use crate::fleet::FleetStore;
use crate::ingest::Escalation;
use crate::policy_ops;
use axum::body::Bytes;
use fusebox_engine::policy::Policy;
use std::sync::{Arc, RwLock};

/// How the service is run (from the command line).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The operator `admin`, with the admin role (a named operator in `operators` is better:
    /// the audit log then says who it was).
    pub admin_token: Option<String>,
    /// Named operators and their roles (`--operators FILE`, reread when it changes).
    pub operators: crate::access::operators::Source,
    /// For the filter: read the policy and post events (the admin token works too).
    pub filter_token: Option<String>,
    /// Per-Envoy tokens; when any is set, events are accepted only from the node they name.
    pub node_tokens: crate::access::nodes::NodeTokens,
    pub escalation: Escalation,
    pub metrics_max_tenants: usize,
    /// Redis URL for the fleet counters (several control replicas); `None`: in memory.
    pub fleet_redis: Option<String>,
}

/// The policy as served to filters, kept in memory and replaced on every change.
#[derive(Debug, Clone)]
pub(super) struct Served {
    pub(super) policy: Arc<Policy>,
    pub(super) body: Bytes,
    pub(super) etag: String,
}

impl Served {
    fn new(policy: Policy) -> Result<Served, ApiError> {
        let body =
            fusebox_engine::policy::to_json(&policy).ok_or_else(|| ApiError::internal("cannot encode policy"))?;
        Ok(Served { etag: format!("\"v{}\"", policy.version), policy: Arc::new(policy), body: Bytes::from(body) })
    }
}

pub struct Inner {
    pub db: Db,
    pub(super) fleet: FleetStore,
    fleet_warned_ms: std::sync::atomic::AtomicU64,
    served: RwLock<Served>,
    /// The served policy's version, for long polls waiting on a change.
    changes: tokio::sync::watch::Sender<u64>,
    pub(super) config: Config,
}

#[derive(Clone)]
pub struct AppState(pub(super) Arc<Inner>);

impl AppState {
    /// Opens the service over `db`, seeding it with `seed` if it holds no policy yet.
    pub fn new(db: Db, seed: Option<(Policy, String)>, config: Config) -> Result<AppState, String> {
        let stored = policy_ops::current(&db.conn()).map_err(|e| e.to_string())?;
        let policy = match (stored, seed) {
            (Some(p), seed) => {
                if let Some((_, source)) = seed {
                    tracing::info!("database already holds policy version {}; not importing {source}", p.version);
                }
                p
            }
            (None, Some((p, source))) => {
                let p = policy_ops::seed(&db, p, "fusebox-control", &source).map_err(|e| e.to_string())?;
                tracing::info!("database seeded with policy from {source} (version 1)");
                p
            }
            (None, None) => return Err("the database holds no policy: pass --policy FILE to seed it".into()),
        };
        let served = Served::new(policy).map_err(|e| e.to_string())?;
        let (changes, _) = tokio::sync::watch::channel(served.policy.version);
        let fleet = FleetStore::open(config.fleet_redis.as_deref())?;
        Ok(AppState(Arc::new(Inner {
            db,
            fleet,
            fleet_warned_ms: Default::default(),
            served: RwLock::new(served),
            changes,
            config,
        })))
    }

    pub(super) fn served(&self) -> Served {
        self.0.served.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `policy` from now on, unless a newer version is served already (a write here and
    /// one picked up from another replica can arrive in either order).
    pub(super) fn publish(&self, policy: Policy) -> Result<(), ApiError> {
        let served = Served::new(policy)?;
        let version = served.policy.version;
        {
            let mut current = self.0.served.write().unwrap_or_else(|p| p.into_inner());
            if current.policy.version > version {
                return Ok(());
            }
            *current = served;
        }
        // Wakes every long poll (none waiting is fine).
        self.0.changes.send_replace(version);
        Ok(())
    }

    /// Serves the policy versions other replicas store in the shared database, checking every
    /// `every`: the database is all replicas share, and a long poll on any of them must wake
    /// for a change made on another. Runs for the life of the service.
    pub async fn follow_database(self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failing = false;
        loop {
            tick.tick().await;
            let seen = self.served().policy.version;
            let newer = self
                .blocking(move |inner| {
                    let conn = inner.db.conn();
                    match crate::db::latest_version(&conn)? {
                        Some(v) if v > seen => policy_ops::current(&conn),
                        _ => Ok(None),
                    }
                })
                .await;
            match newer.and_then(|p| p.map_or(Ok(()), |p| self.publish(p))) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("reading the database for policy changes failed: {e}");
                }
                Err(_) => {}
            }
        }
    }

    /// Waits until the served policy's version is no longer `seen`, or `limit` passes.
    pub(super) async fn changed_from(&self, seen: u64, limit: std::time::Duration) {
        let mut rx = self.0.changes.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|v| *v != seen)).await;
    }

    /// Where the fleet counters live (`memory` or `redis`).
    pub fn fleet_store(&self) -> &'static str {
        self.0.fleet.describe()
    }

    /// Logs a fleet-counter failure once per outage (the Envoys say so too, in their metrics).
    pub(super) fn fleet_failed(&self, why: &str) {
        let now = crate::db::now_ms();
        let last = self.0.fleet_warned_ms.swap(now, std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) > 10_000 {
            tracing::warn!("fleet sync failed, Envoys fall back to their local share: {why}");
        }
    }

    /// Runs blocking database work off the async threads.
    pub(super) async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| ApiError::internal(e.to_string()))?
    }
}
