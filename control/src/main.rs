//! `fusebox-control`: the control service and its operator CLI (see `cli/`).

mod cli;

use clap::Parser;
use cli::args::{Cli, Command};
use cli::local::{hash_key, load, token};
use cli::remote::run_remote;
use cli::serve::serve;
use std::process::ExitCode;

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
        Command::HashKey => hash_key(),
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
