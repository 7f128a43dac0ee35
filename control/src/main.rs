//! `fusebox-control`: the control service and its operator CLI.

use clap::{Parser, Subcommand};
use fusebox_control::{app, AppState, PolicyFile};
use fusebox_engine::identity::{hex, mint_hs256, sha256};
use fusebox_engine::policy::{JwtKey, Policy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "fusebox-control", version, about = "fusebox control service and CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the policy API.
    Serve {
        #[arg(long, env = "FUSEBOX_CONTROL_LISTEN", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Policy file (JSON); re-read on every poll, invalid changes are refused.
        #[arg(long, env = "FUSEBOX_POLICY")]
        policy: PathBuf,
        /// Bearer token required to read the policy.
        #[arg(long, env = "FUSEBOX_READ_TOKEN")]
        read_token: Option<String>,
    },
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
    mint_hs256(secret, kid, &jwt.issuer, audience, claims, now, ttl)
}

async fn serve(listen: SocketAddr, policy: PathBuf, read_token: Option<String>) -> Result<(), String> {
    let policy = PolicyFile::open(policy).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    tracing::info!("fusebox-control listening on http://{listen}");
    axum::serve(listener, app(AppState { policy, read_token }))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { listen, policy, read_token } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(serve(listen, policy, read_token))),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fusebox-control: {e}");
            ExitCode::FAILURE
        }
    }
}
