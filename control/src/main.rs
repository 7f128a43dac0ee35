//! `fusebox-control`: the control service and its operator CLI.
// Reading a serde_json `Value` by index never panics (a missing key reads as `Null`).
#![allow(clippy::indexing_slicing)]

use clap::{Args, Parser, Subcommand};
use fusebox_control::client::{self, Client};
use fusebox_control::db::Db;
use fusebox_control::ingest::Escalation;
use fusebox_control::{app, AppState, Config};
use fusebox_engine::identity::JwtKey;
use fusebox_engine::identity::{hex, mint, sha256, MintKey};
use fusebox_engine::policy::Policy;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "fusebox-control", version, about = "fusebox control service and operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Remote {
    /// Base URL of fusebox-control.
    #[arg(long, global = true, env = "FUSEBOX_CONTROL_URL", default_value = "http://127.0.0.1:8090")]
    url: String,
    /// Admin bearer token (reads also accept the filter token).
    #[arg(long, global = true, env = "FUSEBOX_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Name recorded as the actor in the audit log (default: $USER).
    #[arg(long, global = true, env = "USER")]
    actor: Option<String>,
}

impl Remote {
    fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone(), self.actor.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the control API.
    Serve(ServeArgs),
    /// Check a policy file with the same validation Envoy's filter uses.
    Validate {
        #[arg(long)]
        policy: PathBuf,
    },
    /// Print a demo bearer token signed with the policy's first HS256 key (last line = token).
    Token {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        tier: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the SHA-256 digest of an API key (read from stdin), for `identity.api_keys[].sha256`.
    HashKey,
    /// Show or replace the whole policy.
    Policy {
        #[command(subcommand)]
        action: PolicyCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create or replace a tier's limits.
    Tier {
        #[command(subcommand)]
        action: TierCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a tenant, set its tier or overrides, or remove its entry.
    Tenant {
        #[command(subcommand)]
        action: TenantCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Force a tenant's breaker open (kill switch) or closed, or reset it to automatic.
    Breaker {
        action: BreakerVerb,
        tenant: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Usage per tenant and model over a time range.
    Usage {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// 2026-11-23, 2026-11-23T10:00:00Z or unix seconds (default: all time).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Print the JSON reply instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// The audit log, or `audit verify` to check its hash chain.
    Audit {
        #[command(subcommand)]
        action: Option<AuditCmd>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "FUSEBOX_CONTROL_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, env = "FUSEBOX_DB", default_value = "fusebox-control.db")]
    db: PathBuf,
    /// Policy file (JSON) to seed an empty database with; ignored once the database has one.
    #[arg(long, env = "FUSEBOX_POLICY")]
    policy: Option<PathBuf>,
    /// Token required for every write (admin API disabled without it).
    #[arg(long, env = "FUSEBOX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// File holding the admin token (first line).
    #[arg(long, env = "FUSEBOX_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Token for the filter: reads the policy and posts events (reads need a token once any is set).
    #[arg(long, alias = "read-token", env = "FUSEBOX_FILTER_TOKEN", hide_env_values = true)]
    filter_token: Option<String>,
    /// A tenant tripping this many times within --escalate-window-s is escalated.
    #[arg(long, default_value_t = 3)]
    escalate_trips: u64,
    #[arg(long, default_value_t = 3600)]
    escalate_window_s: u64,
    /// Per-tenant metric series are limited to this many tenants (the rest are summed).
    #[arg(long, default_value_t = 100)]
    metrics_max_tenants: usize,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Print the policy control serves.
    Show,
    /// Replace the policy with a file (operator holds are kept).
    Apply { file: PathBuf },
}

#[derive(Subcommand)]
enum TierCmd {
    /// Set a tier's limits from JSON (`{"tokens_60s": 60000, ...}`) or a file (`@limits.json`).
    Set {
        tier: String,
        limits: String,
    },
    Delete {
        tier: String,
    },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// The tenant's tier, limits, hold, last reported breaker state and totals.
    Show {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Every tenant with an entry or reported traffic.
    List,
    /// Change a tenant's entry: `--tier pro`, `--set tokens_60s=90000`, `--unset tokens_60s`.
    Set {
        tenant: String,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        #[arg(long = "unset", value_name = "FIELD")]
        unset: Vec<String>,
    },
    /// Remove the tenant's overrides (back to its tier; an operator hold stays).
    Delete { tenant: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BreakerVerb {
    Open,
    Close,
    Reset,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain; exits non-zero if it is broken.
    Verify,
}

fn load(path: &PathBuf) -> Result<Policy, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Policy::from_json(&raw).map_err(|e| format!("{}: {e}", path.display()))
}

fn token(policy: &Policy, tenant: &str, tier: Option<&str>, ttl: u64) -> Result<String, String> {
    let jwt = policy.identity.jwt.as_ref().ok_or("the policy has no 'identity.jwt' section")?;
    let (kid, secret) = jwt
        .keys
        .iter()
        .find_map(|k| match k {
            JwtKey::HS256 { kid, secret } => Some((kid.as_deref(), secret.as_str())),
            _ => None,
        })
        .ok_or("the policy has no HS256 key to sign demo tokens with")?;
    let audience = jwt.audiences.first().ok_or("the policy has no audience")?;
    let mut claims = serde_json::Map::new();
    claims.insert(jwt.tenant_claim.clone(), tenant.into());
    if let (Some(claim), Some(tier)) = (&jwt.tier_claim, tier) {
        claims.insert(claim.clone(), tier.into());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    mint(MintKey::Hs256(secret), kid, &jwt.issuer, audience, claims, now, ttl)
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let admin_token = match (&args.admin_token, &args.admin_token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => {
            let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(raw.lines().next().unwrap_or("").trim().to_string()).filter(|t| !t.is_empty())
        }
        (None, None) => None,
    };
    if admin_token.is_none() {
        tracing::warn!("no admin token: the admin API is disabled (read-only service)");
    }
    let seed = match &args.policy {
        Some(path) => Some((load(path)?, path.display().to_string())),
        None => None,
    };
    let db = Db::open(&args.db)?;
    let config = Config {
        admin_token,
        filter_token: args.filter_token.clone(),
        escalation: Escalation { trips: args.escalate_trips.max(1), window_s: args.escalate_window_s.max(1) },
        metrics_max_tenants: args.metrics_max_tenants,
    };
    let state = AppState::new(db, seed, config)?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("bind {}: {e}", args.listen))?;
    tracing::info!("fusebox-control listening on http://{} (database {})", args.listen, args.db.display());
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn json_arg(text: &str) -> Result<Value, String> {
    let raw = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&raw).map_err(|e| format!("not JSON: {e}"))
}

/// A `--set` value: JSON if it parses (numbers, booleans, objects), else a string.
fn field_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", v.replace('+', "%2B").replace(' ', "%20"))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn run_remote(command: Command) -> Result<(), String> {
    match command {
        Command::Policy { action, remote } => {
            let c = remote.client();
            match action {
                PolicyCmd::Show => println!("{}", pretty(&c.call("GET", "/v1/policy", None)?)),
                PolicyCmd::Apply { file } => {
                    let doc = json_arg(&format!("@{}", file.display()))?;
                    let r = c.call("PUT", "/v1/policy", Some(&doc))?;
                    println!("policy version {}", r["version"]);
                }
            }
        }
        Command::Tier { action, remote } => {
            let c = remote.client();
            let r = match action {
                TierCmd::Set { tier, limits } => {
                    c.call("PUT", &format!("/v1/tiers/{tier}"), Some(&json_arg(&limits)?))?
                }
                TierCmd::Delete { tier } => c.call("DELETE", &format!("/v1/tiers/{tier}"), None)?,
            };
            println!("policy version {}", r["version"]);
        }
        Command::Tenant { action, remote } => {
            let c = remote.client();
            match action {
                TenantCmd::Show { tenant, json } => {
                    let t = c.call("GET", &format!("/v1/tenants/{tenant}"), None)?;
                    print!("{}", if json { pretty(&t) + "\n" } else { client::render_tenant(&t) });
                }
                TenantCmd::List => {
                    print!("{}", client::render_tenants(&c.call("GET", "/v1/tenants", None)?));
                }
                TenantCmd::Set { tenant, tier, set, unset } => {
                    let current = c.call("GET", &format!("/v1/tenants/{tenant}"), None)?;
                    let mut entry = current["entry"].as_object().cloned().unwrap_or_default();
                    // Holds belong to the breaker endpoint; the API refuses them here.
                    entry.remove("forced");
                    entry.remove("breaker_epoch");
                    if let Some(tier) = tier {
                        entry.insert("tier".into(), json!(tier));
                    }
                    for kv in &set {
                        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set {kv}: expected FIELD=VALUE"))?;
                        entry.insert(k.to_string(), field_value(v));
                    }
                    for k in &unset {
                        entry.remove(k);
                    }
                    let r = c.call("PUT", &format!("/v1/tenants/{tenant}"), Some(&Value::Object(entry)))?;
                    println!("policy version {}: {}", r["version"], r["after"]);
                }
                TenantCmd::Delete { tenant } => {
                    let r = c.call("DELETE", &format!("/v1/tenants/{tenant}"), None)?;
                    println!("policy version {}", r["version"]);
                }
            }
        }
        Command::Breaker { action, tenant, reason, remote } => {
            let verb = match action {
                BreakerVerb::Open => "open",
                BreakerVerb::Close => "close",
                BreakerVerb::Reset => "reset",
            };
            let body = json!({"action": verb, "reason": reason});
            let r = remote.client().call("POST", &format!("/v1/tenants/{tenant}/breaker"), Some(&body))?;
            println!("tenant '{tenant}' breaker {verb}: policy version {}", r["version"]);
        }
        Command::Usage { tenant, model, from, to, json, remote } => {
            let q = query(&[("tenant", &tenant), ("model", &model), ("from", &from), ("to", &to)]);
            let u = remote.client().call("GET", &format!("/v1/usage{q}"), None)?;
            print!("{}", if json { pretty(&u) + "\n" } else { client::render_usage(&u) });
        }
        Command::Audit { action: Some(AuditCmd::Verify), remote, .. } => {
            let v = remote.client().call("GET", "/v1/audit/verify", None)?;
            if v["ok"] == Value::Bool(true) {
                println!("audit log intact: {} entries, head {}", v["entries"], v["head"].as_str().unwrap_or("-"));
            } else {
                return Err(format!(
                    "audit log BROKEN at entry {}: {}",
                    v["first_bad_seq"],
                    v["error"].as_str().unwrap_or("unknown")
                ));
            }
        }
        Command::Audit { action: None, tenant, limit, remote } => {
            let q = query(&[("tenant", &tenant), ("limit", &Some(limit.to_string()))]);
            print!("{}", client::render_audit(&remote.client().call("GET", &format!("/v1/audit{q}"), None)?));
        }
        _ => return Err("not a remote command".into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(serve(args))),
        Command::Validate { policy } => load(&policy).map(|p| {
            println!("ok: {} tiers, {} tenant overrides", p.tiers.len(), p.tenants.len());
        }),
        Command::HashKey => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key).map_err(|e| e.to_string()).and_then(|_| {
                let key = key.trim_end_matches(['\r', '\n']);
                if key.is_empty() {
                    return Err("no key on stdin".to_string());
                }
                println!("{}", hex(&sha256(key.as_bytes())));
                Ok(())
            })
        }
        Command::Token { policy, tenant, tier, ttl } => {
            load(&policy).and_then(|p| token(&p, &tenant, tier.as_deref(), ttl)).map(|t| println!("{t}"))
        }
        remote => run_remote(remote),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fusebox-control: {e}");
            ExitCode::FAILURE
        }
    }
}
