//! `make run`: the demo stack in the foreground — Envoy (2 workers) with fusebox, fusebox-control
//! (a fresh database seeded from `tests/policies/demo.json`; change it live with the CLI or the
//! admin API) and the mock LLM. Ctrl-C stops everything.

use fusebox_integration::{
    run_until_stopped, token, work_dir, workspace_root, Ports, Stack, StackOptions, DEMO_ADMIN_TOKEN, DEMO_FILTER_TOKEN,
};
use std::process::ExitCode;

fn curl(port: u16, token: &str) -> String {
    format!(
        "curl -s -i localhost:{port}/v1/chat/completions -H 'authorization: Bearer {token}' \
         -H 'content-type: application/json' -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
    )
}

fn main() -> ExitCode {
    let root = workspace_root();
    let ports = Ports::from_env();
    let mut dir = work_dir();
    // The demo's database and logs stay for the user to read after Ctrl-C.
    dir.keep();
    let options = StackOptions {
        ports: ports.clone(),
        policy_file: root.join("tests/policies/demo.json"),
        db: dir.join("control.db"),
        envoy_config: root.join("envoy/demo.yaml"),
        workers: 2,
        foreground: false,
        start_control: true,
        start_mock: true,
        control_args: Vec::new(),
    };
    let mut stack = match Stack::start_with(options, dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fusebox-dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let acme = token("acme", None);
    let globex = token("globex", None);
    println!(
        "\nfusebox demo is up.\n\
         \n  Envoy listener   http://localhost:{}\n  Envoy admin      http://localhost:{}\n  fusebox-control  http://localhost:{}/v1/policy\n  mock LLM         http://localhost:{}\n\
         \n  control database:  {}\n  logs:              {}\n\
         \nacme (free tier: 2000 tokens per 60 s; each mock answer uses 400) — run it 6 times, the 7th is refused:\n\n  {}\n\
         \nglobex (pro tier) keeps working meanwhile:\n\n  {}\n\
         \nThese tokens expire in 1 h (make token TENANT=acme mints another).\n\
         \nYour own state: curl -s localhost:{}/fusebox/status -H 'authorization: Bearer <token>'\n\
         \nOperate it (kill switch, tiers, usage, audit) with the CLI:\n\
         \n  export FUSEBOX_CONTROL_URL=http://localhost:{} FUSEBOX_ADMIN_TOKEN={}\n  \
         target/debug/fusebox-control breaker open acme --reason demo\n  \
         target/debug/fusebox-control tenant set globex --tier enterprise\n  \
         target/debug/fusebox-control usage\n  \
         target/debug/fusebox-control audit verify\n\
         \nor in the browser: http://localhost:{}/dashboard#token={}\n\
         \nEnvoy's singleton reads the policy and posts usage with the filter token {} (envoy/demo.yaml);\n\
         it can read, never write.\n\n\
         Ctrl-C stops everything.",
        ports.listen,
        ports.admin,
        ports.control,
        ports.mock,
        stack.dir.join("control.db").display(),
        stack.dir.display(),
        curl(ports.listen, &acme),
        curl(ports.listen, &globex),
        ports.listen,
        ports.control,
        DEMO_ADMIN_TOKEN,
        ports.control,
        DEMO_ADMIN_TOKEN,
        DEMO_FILTER_TOKEN,
    );
    let logs = stack.dir.display().to_string();
    run_until_stopped("fusebox-dev", || stack.exited(), &logs)
}
