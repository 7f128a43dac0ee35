//! `make bench`: fusebox against bare Envoy, a no-op Wasm filter and Envoy's native
//! jwt_authn + local_ratelimit, in one invocation and with the same load, so that the ratios
//! compare like with like. See `bench/README.md` for how to read the output.
#![allow(clippy::print_stdout)]

mod control_scale;
mod figures;
mod fleet;
mod litellm;
mod load;
mod memory;
mod procs;
mod report;
mod scenarios;
mod stream;
mod upstream;

use clap::Parser;
use figures::{cost_lines, costs, ratios, stream_lines};
use fusebox_engine::identity::{mint, MintKey};
use fusebox_integration::{envoy_binary, free_port, render, sibling_binary, wasm_path, workspace_root};
use load::{Generator, Load, Run};
use procs::{Cpus, Proc};
use report::Summary;
use scenarios::{Filters, Scenario, Tokens, SCENARIOS};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HS256_SECRET: &str = "fusebox-bench-secret-not-for-production";
const ISSUER: &str = "https://auth.fusebox.bench";
const FILTER_TOKEN: &str = "fusebox-bench-filter-token";
const ADMIN_TOKEN: &str = "fusebox-bench-admin-token";

#[derive(Parser, Debug)]
#[command(about = "fusebox benchmark suite (make bench)")]
struct Args {
    /// Timed runs per scenario; the median is reported.
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 5)]
    rounds: u32,
    /// Seconds per timed run.
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 3)]
    seconds: u64,
    /// Connections the load generator keeps open (requests in flight).
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 16)]
    connections: u32,
    /// Size of the streamed response, in MB (0 skips the stream measurement).
    #[arg(long, env = "BENCH_STREAM_MB", default_value_t = 100)]
    stream_mb: u64,
    /// Distinct tenants for the memory figure, one request each (0 skips it).
    #[arg(long, env = "BENCH_MEMORY_TENANTS", default_value_t = 1_000_000)]
    memory_tenants: u64,
    /// Tenants control is filled with for its figures at scale (0 skips them).
    #[arg(long, env = "BENCH_CONTROL_TENANTS", default_value_t = 100_000)]
    control_tenants: u64,
    /// Run only these scenarios (comma-separated keys, e.g. `noop,fusebox`).
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// Peers outside Envoy to run beside fusebox (`litellm`: installs the LiteLLM proxy from
    /// PyPI into target/litellm-venv once).
    #[arg(long, env = "BENCH_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// A fusebox filter built from another commit, run beside this one as `baseline` and
    /// `baseline_100k` (an A/B within one run, so drift and noisy neighbours affect both alike).
    #[arg(long, env = "BENCH_BASELINE_WASM")]
    baseline_wasm: Option<PathBuf>,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Internal: be the fast upstream on this port (the bench starts itself this way).
    #[arg(long, hide = true)]
    serve_upstream: Option<u16>,
}

/// A started scenario: its Envoy and how to load it.
struct Running<'a> {
    scenario: &'a Scenario,
    envoy: Proc,
    port: u16,
    generator: Generator,
    runs: Vec<Run>,
}

/// What every proxy config shares.
struct Env {
    envoy: PathBuf,
    wasm: PathBuf,
    noop_wasm: PathBuf,
    baseline_wasm: Option<PathBuf>,
    control_port: u16,
    dir: PathBuf,
    cpus: Cpus,
    agent: ureq::Agent,
}

impl Env {
    fn proxy_config(&self, filters: Filters, listen: u16, admin: u16, upstream: u16) -> Result<String, String> {
        let bench = workspace_root().join("bench/envoy");
        let read = |p: &str| std::fs::read_to_string(bench.join(p)).map_err(|e| format!("bench/envoy/{p}: {e}"));
        let fragment = match filters {
            Filters::None => String::new(),
            Filters::Noop => read("filters/noop.yaml")?,
            Filters::NoopX20 => read("filters/noop_x20.yaml")?,
            Filters::Floor => read("filters/floor.yaml")?,
            Filters::Native => read("filters/native.yaml")?,
            Filters::Fusebox | Filters::FuseboxFleet | Filters::FuseboxQuickSweep | Filters::FuseboxBaseline => {
                read("filters/fusebox.yaml")?
            }
            Filters::LiteLlm => return Err("LiteLLM is not an Envoy: see litellm.rs".into()),
        };
        let extensions = match filters {
            Filters::Fusebox | Filters::FuseboxBaseline => {
                render(&read("singleton.yaml")?, &[("FLEET", String::new())])
            }
            Filters::FuseboxFleet => {
                render(&read("singleton.yaml")?, &[("FLEET", r#", "fleet": {"expected_envoys": 3}"#.to_string())])
            }
            Filters::FuseboxQuickSweep => {
                // Envoy's allocator hands freed pages back to the system only when told to: the
                // memory figure runs as docs/OPERATIONS.md advises for meshes of many tenants.
                let singleton =
                    render(&read("singleton.yaml")?, &[("FLEET", r#", "sweep_pass_ms": 5000"#.to_string())]);
                format!("{}\n{}", singleton.trim_end(), read("memory-release.yaml")?)
            }
            _ => String::new(),
        };
        let wasm = match (filters, &self.baseline_wasm) {
            (Filters::FuseboxBaseline, Some(baseline)) => baseline,
            (Filters::FuseboxBaseline, None) => return Err("the baseline scenarios need BENCH_BASELINE_WASM".into()),
            _ => &self.wasm,
        };
        // Fragments first: they carry placeholders of their own.
        Ok(render(
            &read("proxy.yaml")?,
            &[
                ("FILTERS", fragment.trim_end().to_string()),
                ("EXTENSIONS", extensions.trim_end().to_string()),
                ("LISTEN_PORT", listen.to_string()),
                ("ADMIN_PORT", admin.to_string()),
                ("UPSTREAM_PORT", upstream.to_string()),
                ("CONTROL_PORT", self.control_port.to_string()),
                ("WASM", wasm.display().to_string()),
                ("NOOP_WASM", self.noop_wasm.display().to_string()),
                ("FILTER_TOKEN", FILTER_TOKEN.to_string()),
            ],
        ))
    }

    fn launcher(&self) -> procs::Launcher<'_> {
        procs::Launcher { envoy: &self.envoy, dir: &self.dir, agent: &self.agent }
    }

    fn start_proxy(
        &self,
        name: &str,
        filters: Filters,
        workers: u32,
        upstream: u16,
    ) -> Result<(Proc, u16, u16), String> {
        let (port, admin) = (free_port(), free_port());
        let config = self.proxy_config(filters, port, admin, upstream)?;
        let cpus = if workers > 1 { self.cpus.all.as_deref() } else { self.cpus.proxy.as_deref() };
        let proc = self.launcher().envoy(name, &config, admin, workers, cpus)?;
        Ok((proc, port, admin))
    }
}

fn main() {
    let args = Args::parse();
    let result = match args.serve_upstream {
        Some(port) => upstream::serve(port, COMPLETION),
        None => run(args),
    };
    if let Err(e) = result {
        eprintln!("make bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let root = workspace_root();
    let out = if args.out.is_absolute() { args.out.clone() } else { root.join(&args.out) };
    let dir = out.join("work");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let wasm = wasm_path()?;
    let env = Env {
        envoy: envoy_binary()?,
        noop_wasm: wasm.with_file_name("fusebox_bench_noop.wasm"),
        wasm,
        baseline_wasm: args.baseline_wasm.clone(),
        control_port: free_port(),
        dir: dir.clone(),
        cpus: Cpus::detect(),
        agent,
    };
    if !env.noop_wasm.is_file() {
        return Err(format!("{} missing (make bench builds it)", env.noop_wasm.display()));
    }
    let (wrk, h2load) = (procs::tool("wrk")?, procs::tool("h2load")?);
    let rest = env.cpus.rest.as_deref();
    println!(
        "fusebox bench: {} rounds x {} s per scenario, {} connections; {}",
        args.rounds,
        args.seconds,
        args.connections,
        env.cpus.describe()
    );

    // The shared parts: control (serves bench/policy.json, takes the usage events), the fast
    // keep-alive upstream (this binary, `--serve-upstream`) and the mock LLM (streams).
    let control = start_control(&env, rest)?;
    let upstream_port = free_port();
    let _upstream = start_upstream(&env, upstream_port, rest)?;
    let mock_port = free_port();
    let mut mock = Proc::spawn(
        "mock-llm",
        {
            let mut c = procs::pinned(rest, &sibling_binary("mock-llm")?);
            c.arg("--listen").arg(format!("127.0.0.1:{mock_port}"));
            c
        },
        &dir,
    )?;
    procs::wait_ok(&env.agent, &format!("http://127.0.0.1:{mock_port}/healthz"), &mut mock, Duration::from_secs(15))?;

    let body_file = dir.join("chat-body.json");
    std::fs::write(&body_file, CHAT_BODY).map_err(|e| e.to_string())?;
    let mut running = Vec::new();
    let chosen = |s: &&Scenario| {
        let peer_ok = s.filters != Filters::LiteLlm || args.peers.iter().any(|p| p == "litellm");
        let baseline_ok = s.filters != Filters::FuseboxBaseline || args.baseline_wasm.is_some();
        peer_ok && baseline_ok && (args.only.is_empty() || args.only.iter().any(|o| o == s.key))
    };
    for s in SCENARIOS.iter().filter(chosen) {
        let tokens = mint_tokens(s.tokens)?;
        let (envoy, port) = match s.filters {
            Filters::LiteLlm => {
                let port = free_port();
                (litellm::start(&root, &dir, &env.agent, port, upstream_port, env.cpus.proxy.as_deref())?, port)
            }
            _ => {
                let (envoy, port, _admin) = env.start_proxy(s.key, s.filters, s.workers, upstream_port)?;
                (envoy, port)
            }
        };
        let first = tokens.first().cloned().unwrap_or_default();
        wait_admitted(&env.agent, port, &first).map_err(|e| format!("{}: {e}", s.key))?;
        let generator = if s.http2 {
            Generator::H2load { token: first }
        } else {
            let path = dir.join(format!("tokens-{}.txt", s.key));
            std::fs::write(&path, tokens.join("\n")).map_err(|e| e.to_string())?;
            Generator::Wrk { tokens: path }
        };
        running.push(Running { scenario: s, envoy, port, generator, runs: Vec::new() });
    }

    let script = root.join("bench/wrk.lua");
    let load = Load {
        wrk: &wrk,
        h2load: &h2load,
        script: &script,
        body_file: &body_file,
        connections: args.connections,
        cpus: rest,
        scratch: &dir,
    };
    // Warm every scenario once (JIT, connection pools, first-seen tenants), then interleave the
    // timed rounds, each round in a rotated order, so drift and position affect all alike.
    for r in &running {
        load.run(&r.generator, r.port, Duration::from_secs(1))?;
    }
    let n = running.len();
    for round in 0..args.rounds as usize {
        for i in 0..n {
            let idx = (i + round) % n;
            let Some(r) = running.get_mut(idx) else { continue };
            let before = r.envoy.cpu_ns();
            let mut result = load.run(&r.generator, r.port, Duration::from_secs(args.seconds))?;
            if let (Some(b), Some(a)) = (before, r.envoy.cpu_ns()) {
                result.cpu_us =
                    (result.requests > 0).then(|| a.saturating_sub(b) as f64 / 1e3 / result.requests as f64);
            }
            r.runs.push(result);
        }
        println!("  round {}/{} done", round + 1, args.rounds);
    }
    for r in &mut running {
        if let Some(status) = r.envoy.exited() {
            return Err(format!("{}: Envoy exited during the runs ({status})", r.scenario.key));
        }
    }
    let summaries: Vec<Summary> =
        running.iter().map(|r| Summary::of(r.scenario.key, r.scenario.what, r.runs.clone())).collect();
    drop(running);

    let streams = if args.stream_mb > 0 { measure_streams(&env, mock_port, args.stream_mb)? } else { Vec::new() };
    let memory = match args.memory_tenants {
        0 => None,
        n => Some(measure_memory(&env, upstream_port, n)?),
    };
    let control_scale = match args.control_tenants {
        0 => None,
        n => {
            let port = free_port();
            let scaled = start_control_on(&env, rest, port, "control-scale", &[])?;
            Some(control_scale::measure(port, scaled.pid(), FILTER_TOKEN, n)?)
        }
    };
    let fleet_sync = vec![
        fleet::measure(&env.agent, env.control_port, control.pid(), FILTER_TOKEN, ("memory", None))?,
        measure_fleet_sync_on_redis(&env, rest)?,
    ];
    let ratios = ratios(&summaries);
    let bare = summaries.iter().find(|s| s.key == "bare");
    let mut text = report::table(&summaries, bare);
    text.push('\n');
    text.push_str(&report::ratio_lines(&ratios));
    text.push_str(&figures::p99_line(&summaries, args.connections));
    text.push('\n');
    let costs = costs(&summaries);
    text.push_str(&cost_lines(&costs));
    text.push('\n');
    text.push_str(&stream_lines(&streams));
    if let Some(m) = &memory {
        text.push_str(&m.line());
    }
    fleet_sync.iter().for_each(|c| text.push_str(&c.line()));
    if let Some(c) = &control_scale {
        text.push_str(&c.line());
    }
    println!("\n{text}");

    let report = json!({
        "generated_at_s": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "envoy": envoy_version(&env.envoy),
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "pinning": env.cpus.describe(),
        "load": {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
                 "http1": "wrk -t1, tokens rotated per request", "http2": "h2load -t1 -m1"},
        "scenarios": summaries,
        "ratios": ratios,
        "p99_added_over_bare_ms": figures::p99_added_ms(&summaries),
        "costs_us": costs,
        "stream": streams,
        "memory": memory,
        "fleet_sync": fleet_sync,
        "control_scale": control_scale,
    });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.txt"), &text).map_err(|e| e.to_string())?;
    println!("report: {}", out.join("report.json").display());

    let errors: u64 = summaries.iter().map(|s| s.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} requests failed during the runs; the figures are not comparable"));
    }
    Ok(())
}

const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}],"max_tokens":128}"#;

/// What the fast upstream answers: a realistic OpenAI chat completion with usage.
const COMPLETION: &str = r#"{"id":"chatcmpl-bench0001","object":"chat.completion","created":1763900000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Prince Hamlet feigns madness to avenge his father's murder by his uncle Claudius, and his hesitation ends in a duel that kills nearly everyone, Hamlet included.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":27,"completion_tokens":36,"total_tokens":63,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_bench"}"#;

fn start_control(env: &Env, cpus: Option<&str>) -> Result<Proc, String> {
    start_control_on(env, cpus, env.control_port, "control", &[])
}

/// A fusebox-control on `port` with its own database (and `extra` arguments).
fn start_control_on(env: &Env, cpus: Option<&str>, port: u16, name: &str, extra: &[String]) -> Result<Proc, String> {
    let mut cmd = procs::pinned(cpus, &sibling_binary("fusebox-control")?);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--policy")
        .arg(workspace_root().join("bench/policy.json"))
        .arg("--db")
        .arg(env.dir.join(format!("{name}.db")))
        .arg("--admin-token")
        .arg(ADMIN_TOKEN)
        .arg("--filter-token")
        .arg(FILTER_TOKEN)
        .args(extra);
    let mut proc = Proc::spawn(name, cmd, &env.dir)?;
    let url = format!("http://127.0.0.1:{port}/healthz");
    procs::wait_ok(&env.agent, &url, &mut proc, Duration::from_secs(15))?;
    Ok(proc)
}

/// The 100 000-key sync on a control whose fleet counters are in a real Redis.
fn measure_fleet_sync_on_redis(env: &Env, cpus: Option<&str>) -> Result<fleet::SyncCost, String> {
    let redis = fusebox_integration::Redis::start();
    let port = free_port();
    let control = start_control_on(env, cpus, port, "control-redis", &["--fleet-redis".into(), redis.url()])?;
    fleet::measure(&env.agent, port, control.pid(), FILTER_TOKEN, ("redis", redis.pid()))
}

fn start_upstream(env: &Env, port: u16, cpus: Option<&str>) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = procs::pinned(cpus, &exe);
    cmd.arg("--serve-upstream").arg(port.to_string());
    let mut proc = Proc::spawn("upstream", cmd, &env.dir)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = proc.exited() {
            return Err(format!("the upstream exited ({status})"));
        }
        if std::time::Instant::now() > deadline {
            return Err("the upstream did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(proc)
}

fn mint_tokens(kind: Tokens) -> Result<Vec<String>, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rsa = std::fs::read_to_string(workspace_root().join("tests/keys/rs256-private.pem"))
        .map_err(|e| format!("tests/keys/rs256-private.pem: {e}"))?;
    let (count, key, kid, tenants) = match kind {
        Tokens::Hs256(n) => (n, MintKey::Hs256(HS256_SECRET), "bench-hs", n),
        Tokens::Rs256(n) => (n, MintKey::Rs256Pem(&rsa), "bench-rs", n),
        Tokens::Hs256Fresh(n) => (n, MintKey::Hs256(HS256_SECRET), "bench-hs", 10),
        Tokens::Hs256Scoped(n) => (n, MintKey::Hs256(HS256_SECRET), "bench-hs", n),
        Tokens::LiteLlmKey => return Ok(vec![litellm::MASTER_KEY.to_string()]),
    };
    let scoped = matches!(kind, Tokens::Hs256Scoped(_));
    let (iat, ttl) = (now.saturating_sub(60), 4 * 3600);
    (0..count)
        .map(|i| {
            let mut claims = serde_json::Map::new();
            claims.insert("tenant".into(), Value::from(format!("bench-{}", i % tenants.max(1))));
            if tenants < count {
                claims.insert("jti".into(), Value::from(format!("bench-token-{i}")));
            }
            if scoped {
                claims.insert("org".into(), Value::from(format!("org-{}", i % 2)));
                claims.insert("team".into(), Value::from(format!("team-{}", i % 5)));
                claims.insert("user".into(), Value::from(format!("user-{i}")));
            }
            mint(key, Some(kid), ISSUER, "fusebox", claims, iat, ttl)
        })
        .collect()
}

/// Sends one request until it is answered 200 (fusebox scenarios wait for control's policy,
/// which holds the RS256 key).
fn wait_admitted(agent: &ureq::Agent, port: u16, token: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        match agent
            .post(format!("http://127.0.0.1:{port}{}", load::CHAT_PATH))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .send(CHAT_BODY)
        {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(mut r) => last = format!("{} {}", r.status(), r.body_mut().read_to_string().unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("a request was never admitted (last answer: {last})"))
}

/// The 100 MB stream through the no-op filter, the token-counter floor (which reads every chunk)
/// and fusebox (and the baseline build, when there is one): 3 rounds that take each in turn, so
/// drift on the machine falls on all alike; the median of each.
fn measure_streams(env: &Env, mock_port: u16, megabytes: u64) -> Result<Vec<stream::Summary>, String> {
    let token = mint_tokens(Tokens::Hs256(1))?.pop().unwrap_or_default();
    let mut kinds =
        vec![("noop_stream", Filters::Noop), ("floor_stream", Filters::Floor), ("fusebox_stream", Filters::Fusebox)];
    if env.baseline_wasm.is_some() {
        kinds.push(("baseline_stream", Filters::FuseboxBaseline));
    }
    let mut started = Vec::new();
    for (key, filters) in kinds {
        let (envoy, port, admin) = env.start_proxy(key, filters, 1, mock_port)?;
        wait_admitted(&env.agent, port, &token).map_err(|e| format!("{key}: {e}"))?;
        started.push((key, filters, envoy, port, admin));
    }
    // Let the filter's 1 s tick report its memory before the first stream.
    std::thread::sleep(Duration::from_millis(1500));
    let mut runs: Vec<Vec<stream::StreamRun>> = started.iter().map(|_| Vec::new()).collect();
    for _ in 0..3 {
        for ((key, filters, envoy, port, admin), runs) in started.iter().zip(runs.iter_mut()) {
            let target = stream::Target {
                agent: &env.agent,
                port: *port,
                admin_port: *admin,
                envoy,
                token: &token,
                fusebox: matches!(filters, Filters::Fusebox | Filters::FuseboxBaseline),
            };
            let run = stream::run(&target, megabytes).map_err(|e| format!("{key}: {e}"))?;
            if target.fusebox && run.tokens_counted.unwrap_or(0) == 0 {
                return Err(format!("{key}: fusebox did not count the usage at the end of the stream"));
            }
            runs.push(run);
        }
    }
    Ok(started
        .iter()
        .zip(runs)
        .map(|((key, ..), runs)| {
            let mb_per_s = report::median(runs.iter().map(|r| r.mb_per_s).collect());
            let by_cpu: Vec<f64> = runs.iter().filter_map(|r| r.mb_per_cpu_s).collect();
            let mb_per_cpu_s = (by_cpu.len() == runs.len()).then(|| report::median(by_cpu));
            stream::Summary { key, mb_per_s, mb_per_cpu_s, runs }
        })
        .collect())
}

/// Envoy's memory after `tenants` distinct tenants have each sent one request, and after they
/// have been idle past the longest window (see `memory.rs`).
fn measure_memory(env: &Env, upstream: u16, tenants: u64) -> Result<memory::Figure, String> {
    let tokens = mint_tokens(Tokens::Hs256(u32::try_from(tenants).unwrap_or(u32::MAX)))?;
    let (envoy, port, admin) = env.start_proxy("memory", Filters::FuseboxQuickSweep, 1, upstream)?;
    wait_admitted(&env.agent, port, tokens.first().map_or("", String::as_str))?;
    let target = memory::Target { agent: &env.agent, admin_port: admin, pid: envoy.pid() };
    let url = format!("http://127.0.0.1:{port}{}", load::CHAT_PATH);
    target.measure(|| memory::send_each_once(&url, &tokens, CHAT_BODY))
}

fn envoy_version(envoy: &Path) -> String {
    std::process::Command::new(envoy)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().lines().last().unwrap_or("").to_string())
        .unwrap_or_default()
}
