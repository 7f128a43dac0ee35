//! `fusebox-control serve`: the control API on a socket until Ctrl-C.

use super::args::ServeArgs;
use super::local::load;
use fusebox_control::access::nodes::NodeTokens;
use fusebox_control::access::operators;
use fusebox_control::db::Db;
use fusebox_control::ingest::Escalation;
use fusebox_control::tls::{self, TlsFiles};
use fusebox_control::{app, AppState, Config};
use std::time::Duration;

/// How often a replica looks for policy versions stored by another replica of the same
/// database: what a change made on one replica adds before Envoys polling another see it.
const POLICY_FOLLOW: Duration = Duration::from_millis(50);

/// How often the operators file is read again: how long a rotated or removed token still works.
const OPERATORS_REREAD: Duration = Duration::from_secs(1);

pub(crate) async fn serve(args: ServeArgs) -> Result<(), String> {
    let admin_token = match (&args.admin_token, &args.admin_token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => {
            let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(raw.lines().next().unwrap_or("").trim().to_string()).filter(|t| !t.is_empty())
        }
        (None, None) => None,
    };
    let operators = match &args.operators {
        Some(path) => {
            let source = operators::Source::file(path.clone())?;
            tracing::info!("{} operator tokens from {}", source.current().len(), path.display());
            source
        }
        None => operators::Source::default(),
    };
    if admin_token.is_none() && operators.current().is_empty() {
        tracing::warn!("no operators and no admin token: writes are disabled (read-only service)");
    }
    let seed = match &args.policy {
        Some(path) => Some((load(path)?, path.display().to_string())),
        None => None,
    };
    let node_tokens = match &args.node_tokens {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let nodes = NodeTokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!("{} node tokens: events are accepted only from their nodes", nodes.len());
            nodes
        }
        None => NodeTokens::default(),
    };
    let database = match &args.database_url {
        Some(url) => fusebox_control::db::redact(url),
        None => args.db.display().to_string(),
    };
    let db = match &args.database_url {
        Some(url) => Db::postgres(url)?,
        None => Db::open(&args.db)?,
    };
    let config = Config {
        admin_token,
        operators: operators.clone(),
        filter_token: args.filter_token.clone(),
        node_tokens,
        escalation: Escalation { trips: args.escalate_trips.max(1), window_s: args.escalate_window_s.max(1) },
        metrics_max_tenants: args.metrics_max_tenants,
        fleet_redis: args.fleet_redis.clone(),
    };
    let state = AppState::new(db, seed, config)?;
    tokio::spawn(state.clone().follow_database(POLICY_FOLLOW));
    tokio::spawn(operators.watch(OPERATORS_REREAD));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: args.tls_client_ca.clone() };
            Some(tls::server_config(&files)?)
        }
        _ => None,
    };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("bind {}: {e}", args.listen))?;
    let scheme = match (&tls, &args.tls_client_ca) {
        (None, _) => "http",
        (Some(_), None) => "https",
        (Some(_), Some(_)) => "https (client certificates required)",
    };
    tracing::info!(
        "fusebox-control listening on {scheme} {} (database {}, fleet counters in {})",
        args.listen,
        database,
        state.fleet_store()
    );
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tls {
        Some(config) => tls::serve(listener, config, app(state), stopped).await,
        None => axum::serve(listener, app(state)).with_graceful_shutdown(stopped).await.map_err(|e| e.to_string()),
    }
}
