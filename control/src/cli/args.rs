//! The command line: `serve`, the local helpers (`validate`, `token`, `hash-key`) and the
//! operator commands that call a running control service.

use clap::{Args, Parser, Subcommand};
use fusebox_control::client::{Client, ClientTls};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "fusebox-control", version, about = "fusebox control service and operator CLI")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct Remote {
    /// Base URL of fusebox-control.
    #[arg(long, global = true, env = "FUSEBOX_CONTROL_URL", default_value = "http://127.0.0.1:8090")]
    pub(crate) url: String,
    /// Your bearer token: your own from the operators file (the audit log names you), or the
    /// admin token.
    #[arg(long, global = true, env = "FUSEBOX_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// For an https:// URL: the CA that signed control's certificate (PEM; default: the
    /// public web roots).
    #[arg(long, global = true, env = "FUSEBOX_CONTROL_CA")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Your client certificate (PEM), when control requires one; needs --client-key.
    #[arg(long, global = true, env = "FUSEBOX_CONTROL_CLIENT_CERT", requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,
    #[arg(long, global = true, env = "FUSEBOX_CONTROL_CLIENT_KEY", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,
}

/// What an operator's act on a tenant says of itself.
#[derive(clap::Args, Debug)]
pub(crate) struct Why {
    /// Why (recorded in the audit log).
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
    /// Act on a tenant control has not heard of yet (no entry, no traffic reported).
    #[arg(long)]
    pub(crate) create: bool,
}

impl Remote {
    pub(crate) fn client(&self) -> Result<Client, String> {
        let tls =
            ClientTls { ca: self.ca_cert.clone(), identity: self.client_cert.clone().zip(self.client_key.clone()) };
        Client::new(&self.url, self.token.clone(), &tls)
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        #[command(flatten)]
        why: Why,
        #[command(flatten)]
        remote: Remote,
    },
    /// Raise a tenant's budget for the current period (today, or this month), keeping what it
    /// spent; with --scope, the budget of that scope's value (`topup initech --scope org`).
    Topup {
        tenant: String,
        /// The scope (org, team, ...) whose value `tenant` names.
        #[arg(long)]
        scope: Option<String>,
        /// Tokens to add to today's `budget_tokens_day`.
        #[arg(long, conflicts_with = "cost", required_unless_present = "cost")]
        tokens: Option<u64>,
        /// Currency to add to this month's `budget_cost_month`.
        #[arg(long)]
        cost: Option<f64>,
        #[command(flatten)]
        why: Why,
        #[command(flatten)]
        remote: Remote,
    },
    /// Who your token is, and its role.
    Whoami {
        #[command(flatten)]
        remote: Remote,
    },
    /// Usage per tenant and model over a time range.
    Usage {
        #[arg(long, conflicts_with = "scope")]
        tenant: Option<String>,
        /// Group by the values of this scope (org, team, ...) instead of by tenant.
        #[arg(long)]
        scope: Option<String>,
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
pub(crate) struct ServeArgs {
    #[arg(long, env = "FUSEBOX_CONTROL_LISTEN", default_value = "127.0.0.1:8090")]
    pub(crate) listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, env = "FUSEBOX_DB", default_value = "fusebox-control.db")]
    pub(crate) db: PathBuf,
    /// PostgreSQL instead of the SQLite file (`postgres://user:password@host:5432/fusebox`):
    /// the database every control replica shares. Migrated on start.
    #[arg(long, env = "FUSEBOX_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Policy file (JSON) to seed an empty database with; ignored once the database has one.
    #[arg(long, env = "FUSEBOX_POLICY")]
    pub(crate) policy: Option<PathBuf>,
    /// A token with the admin role, audited as the operator `admin` (prefer --operators).
    #[arg(long, env = "FUSEBOX_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// File holding the admin token (first line).
    #[arg(long, env = "FUSEBOX_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Named operators: lines `<name> <viewer|operator|admin> <sha256 hex of their token>`,
    /// reread when the file changes. Writes are disabled without this or --admin-token.
    #[arg(long, env = "FUSEBOX_OPERATORS")]
    pub(crate) operators: Option<PathBuf>,
    /// Token for the filter: reads the policy and posts events (reads need a token once any is set).
    #[arg(long, alias = "read-token", env = "FUSEBOX_FILTER_TOKEN", hide_env_values = true)]
    pub(crate) filter_token: Option<String>,
    /// Per-Envoy tokens: lines `<node id> <sha256 hex of its token>`. When set, events are
    /// accepted only from a node's own token and for that node; the filter token can only read.
    #[arg(long, env = "FUSEBOX_NODE_TOKENS")]
    pub(crate) node_tokens: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "FUSEBOX_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "FUSEBOX_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS for Envoys and the CLI.
    #[arg(long, env = "FUSEBOX_TLS_CLIENT_CA", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Redis for the fleet counters, shared by every control replica (`redis://host:6379/0`);
    /// without it they are kept in this process (right for one replica).
    #[arg(long, env = "FUSEBOX_FLEET_REDIS", hide_env_values = true)]
    pub(crate) fleet_redis: Option<String>,
    /// A tenant tripping this many times within --escalate-window-s is escalated.
    #[arg(long, default_value_t = 3)]
    pub(crate) escalate_trips: u64,
    #[arg(long, default_value_t = 3600)]
    pub(crate) escalate_window_s: u64,
    /// Per-tenant metric series are limited to this many tenants (the rest are summed).
    #[arg(long, default_value_t = 100)]
    pub(crate) metrics_max_tenants: usize,
}

#[derive(Subcommand)]
pub(crate) enum PolicyCmd {
    /// Print the policy control serves.
    Show,
    /// Replace the policy with a file (operator holds are kept).
    Apply { file: PathBuf },
}

#[derive(Subcommand)]
pub(crate) enum TierCmd {
    /// Change a tier: `--set tokens_60s=90000` / `--unset FIELD` change those fields and keep the
    /// rest; replacing the whole tier with JSON (`{"tokens_60s": 60000, ...}` or `@limits.json`)
    /// needs `--replace`, since every field it leaves out goes back to its default.
    Set {
        tier: String,
        /// The whole tier, with `--replace`.
        limits: Option<String>,
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        #[arg(long = "unset", value_name = "FIELD")]
        unset: Vec<String>,
        /// Replace the whole tier with the JSON given.
        #[arg(long)]
        replace: bool,
    },
    Delete {
        tier: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TenantCmd {
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
    /// Remove the tenant's overrides (back to its tier; an operator hold stays unless
    /// --release-hold).
    Delete {
        tenant: String,
        #[arg(long)]
        release_hold: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum BreakerVerb {
    Open,
    Close,
    Reset,
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Check the hash chain; exits non-zero if it is broken.
    Verify,
}
