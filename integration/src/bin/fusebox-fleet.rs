//! `make fleet`: the demo as a fleet, in the foreground — three Envoys (2 workers each) with
//! fusebox counting fleet-wide, two fusebox-control replicas on one PostgreSQL, Redis for the
//! fleet counters, and the mock LLM. Ctrl-C stops everything.

use fusebox_integration::{
    fleet_bootstrap, run_until_stopped, token, work_dir, workspace_root, Ports, Postgres, Redis, Stack, StackOptions,
    DEMO_ADMIN_TOKEN,
};
use std::process::ExitCode;

const ENVOYS: u16 = 3;
const SYNC_MS: u64 = 250;

fn curl(port: u16, token: &str) -> String {
    format!(
        "curl -s -i localhost:{port}/v1/chat/completions -H 'authorization: Bearer {token}' \
         -H 'content-type: application/json' -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
    )
}

/// The first Envoy (which owns control, its replica and the mock) and the others.
fn start(ports: &Ports, redis: &Redis, database_url: String) -> Result<(Stack, Vec<Stack>), String> {
    let root = workspace_root();
    let mut dir = work_dir();
    // The logs stay for the user to read after Ctrl-C.
    dir.keep();
    let replica = ports.control + 1;
    let node = |i: u16| format!("envoy-{}", i + 1);
    let first_config = dir.join("fleet-envoy-1.yaml");
    std::fs::write(&first_config, fleet_bootstrap(&node(0), ENVOYS.into(), SYNC_MS, Some(replica)))
        .map_err(|e| e.to_string())?;
    let options = StackOptions {
        ports: ports.clone(),
        policy_file: root.join("tests/policies/demo.json"),
        db: dir.join("unused.db"),
        envoy_config: first_config,
        workers: 2,
        foreground: false,
        start_control: true,
        start_mock: true,
        control_args: vec!["--fleet-redis".into(), redis.url(), "--database-url".into(), database_url],
    };
    let mut first = Stack::start_with(options, dir)?;
    first.start_control_replica(replica);
    let mut others = Vec::new();
    for i in 1..ENVOYS {
        let bootstrap = fleet_bootstrap(&node(i), ENVOYS.into(), SYNC_MS, Some(replica));
        others.push(first.try_envoy_beside(&bootstrap, 2, (ports.listen + i, ports.admin + i))?);
    }
    Ok((first, others))
}

fn main() -> ExitCode {
    let ports = Ports::from_env();
    let redis = Redis::start();
    let postgres = Postgres::start();
    let url = postgres.create_database("fusebox");
    let (mut first, mut others) = match start(&ports, &redis, url.clone()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("fusebox-fleet: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (l, a, c) = (ports.listen, ports.admin, ports.control);
    let acme = token("acme", None);
    println!(
        "\nfusebox fleet demo is up.\n\
         \n  Envoy listeners   http://localhost:{l}  :{}  :{}\n  Envoy admins      http://localhost:{a}  :{}  :{}\n  \
         fusebox-control   http://localhost:{c}/v1/policy  and replica :{}\n  mock LLM          http://localhost:{}\n  \
         fleet counters    {}\n  database          {url}\n  logs              {}\n\
         \nacme (free tier: 2000 tokens per 60 s; each mock answer uses 400) is held to that across all three Envoys:\n\
         send this to :{l}, :{}, :{} in turn; about the 7th is refused, whichever Envoy it reaches:\n\n  {}\n\
         \nEach Envoy's fleet sync: curl -s localhost:{a}/stats?filter=fusebox.fleet\n\
         \nOperate it with the CLI, through either replica:\n\
         \n  export FUSEBOX_CONTROL_URL=http://localhost:{c} FUSEBOX_ADMIN_TOKEN={DEMO_ADMIN_TOKEN}\n  \
         target/debug/fusebox-control breaker open acme --reason demo\n  \
         target/debug/fusebox-control audit verify\n\
         \nTokens for other tenants: make token TENANT=<name>\n\nCtrl-C stops everything.",
        l + 1,
        l + 2,
        a + 1,
        a + 2,
        c + 1,
        ports.mock,
        redis.url(),
        first.dir.display(),
        l + 1,
        l + 2,
        curl(l, &acme),
    );
    let logs = std::iter::once(&first).chain(&others).map(|e| e.dir.display().to_string()).collect::<Vec<_>>();
    let code = run_until_stopped(
        "fusebox-fleet",
        || first.exited().or_else(|| others.iter_mut().find_map(Stack::exited)),
        &logs.join(" "),
    );
    drop(others);
    drop(first);
    drop(postgres);
    drop(redis);
    code
}
