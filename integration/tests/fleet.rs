#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end across a fleet: three real Envoys (two workers each) in front of fusebox-control
//! (one, or two replicas on a real PostgreSQL) whose fleet counters live in a real `redis-server`. A tenant spread over
//! the three is held to one limit within the stated bound; slots of a killed Envoy expire;
//! with Redis down each Envoy enforces its share, and fleet counting returns with Redis.

use fusebox_integration::{
    demo_policy, fleet_bootstrap, free_port, generous, observed, token, wait_until, Postgres, Redis, Resp, Stack,
    DEMO_ADMIN_TOKEN,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ENVOYS: u32 = 3;
const SYNC_MS: u64 = 250;
/// The singleton's gauge: 1 while this Envoy enforces its local share.
const FALLBACK: &str = "wasmcustom.fusebox.fleet.fallback";

struct Fleet {
    redis: Redis,
    /// Control's database when it is PostgreSQL (every replica shares it).
    postgres: Option<Postgres>,
    /// The first owns control (and the replica, if any) and the mock LLM; the others share them.
    envoys: Vec<Stack>,
}

impl Fleet {
    fn start(policy: &str) -> Fleet {
        Fleet::start_with(policy, None, None)
    }

    /// With control on PostgreSQL, and a second control replica on `replica` sharing the first
    /// one's Redis and database.
    fn start_with(policy: &str, postgres: Option<Postgres>, replica: Option<u16>) -> Fleet {
        let redis = Redis::start();
        let mut args = vec!["--fleet-redis".to_string(), redis.url()];
        if let Some(pg) = &postgres {
            args.extend(["--database-url".to_string(), pg.create_database("fusebox")]);
        }
        let mut first =
            Stack::start_custom(policy, 2, |_| (fleet_bootstrap("envoy-a", ENVOYS, SYNC_MS, replica), args.clone()));
        if let Some(port) = replica {
            first.start_control_replica(port);
        }
        let mut envoys = vec![first];
        for node in ["envoy-b", "envoy-c"] {
            let next = envoys[0].start_envoy_beside(&fleet_bootstrap(node, ENVOYS, SYNC_MS, replica), 2);
            envoys.push(next);
        }
        envoys.iter().for_each(|e| e.wait_policy_version(1));
        Fleet { redis, postgres, envoys }
    }

    fn control(&self) -> &Stack {
        &self.envoys[0]
    }
}

fn chat(envoy: &Stack, tenant: &str, input: u64, output: u64) -> Resp {
    let (i, o) = (input.to_string(), output.to_string());
    envoy.chat(Some(&token(tenant, None)), &[("x-mock-input-tokens", &i), ("x-mock-output-tokens", &o)])
}

fn tier(extra: Value) -> Value {
    let mut t = generous();
    t.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    t
}

#[test]
fn a_tenant_spread_over_three_envoys_is_held_to_one_limit_within_the_stated_bound() {
    const LIMIT: u64 = 6_000;
    const PER_REQUEST: u64 = 100;
    let fleet = Fleet::start(&demo_policy(
        json!({"free": generous()}),
        json!({"spread": {"tokens_60s": LIMIT, "tokens_10s": 100_000_000u64}}),
    ));
    // Round robin over the three Envoys at a steady pace, until every Envoy refuses.
    let pace = Duration::from_millis(20);
    let start = Instant::now();
    let (mut admitted, mut sent, mut refused_in_a_row) = (0u64, 0u64, 0);
    let mut first_refusal: Option<Duration> = None;
    while refused_in_a_row < 6 {
        assert!(start.elapsed() < Duration::from_secs(30), "the tenant was never held ({admitted} tokens admitted)");
        let envoy = &fleet.envoys[(sent % u64::from(ENVOYS)) as usize];
        let r = chat(envoy, "spread", PER_REQUEST / 2, PER_REQUEST / 2);
        sent += 1;
        match r.status {
            200 => {
                admitted += PER_REQUEST;
                refused_in_a_row = 0;
            }
            429 => {
                first_refusal.get_or_insert(start.elapsed());
                refused_in_a_row += 1;
                // At the limit: the window itself, or a request in flight elsewhere that would cross it.
                let reason = r.header("x-fusebox-reason");
                assert!(matches!(reason, Some("tokens_60s" | "reserved")), "{}", r.body);
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
        std::thread::sleep(pace);
    }
    let until = first_refusal.unwrap();
    // Tokens per second, fleet-wide. The stated bound: what the rest of the fleet admits while
    // its usage travels, one sync interval to reach control and one to reach the judging Envoy,
    // plus a round trip each.
    let rate = admitted as f64 / until.as_secs_f64().max(0.001);
    let bound = (rate * 2.0 * (SYNC_MS as f64 + 50.0) / 1000.0) as u64;
    let overshoot = admitted.saturating_sub(LIMIT);
    eprintln!(
        "fleet overshoot: {overshoot} tokens over {LIMIT} ({:.1}%), bound {bound}, at {rate:.0} tokens/s over {ENVOYS} Envoys",
        overshoot as f64 * 100.0 / LIMIT as f64
    );
    assert!(admitted >= LIMIT - PER_REQUEST, "refused early: {admitted} of {LIMIT}");
    assert!(overshoot <= bound, "{overshoot} tokens over the limit, more than the bound {bound}");
    assert!(admitted < 2 * LIMIT, "counted apart, three Envoys would admit up to 3x: {admitted}");
    // Every Envoy refuses the tenant now; another tenant is untouched on each of them.
    for envoy in &fleet.envoys {
        assert_eq!(chat(envoy, "spread", 1, 1).status, 429);
        assert_eq!(chat(envoy, "bystander", 50, 50).status, 200);
    }
    // Control metered exactly what the mock served, from all three Envoys' events.
    let mock = fleet.control().mock_stats();
    let served = mock["tenants"]["spread"]["requests"].as_u64().unwrap();
    assert_eq!(served * PER_REQUEST, admitted, "the mock served what was admitted");
    wait_until("control to meter all three Envoys' usage", 20, || {
        let u = fleet.control().control_get("/v1/usage?tenant=spread");
        u["tenants"][0]["usage"]["total_tokens"].as_u64() == Some(admitted)
    });
}

#[test]
fn a_day_budget_is_spent_once_across_the_fleet() {
    const BUDGET: u64 = 1_500;
    let fleet = Fleet::start(&demo_policy(json!({"free": tier(json!({"budget_tokens_day": BUDGET}))}), json!({})));
    let mut admitted = 0;
    let refusal = loop {
        let envoy = &fleet.envoys[(admitted / 100 % u64::from(ENVOYS)) as usize];
        let r = chat(envoy, "spender", 50, 50);
        if r.status != 200 {
            break r;
        }
        admitted += 100;
        assert!(admitted < 2 * BUDGET, "the budget was not held fleet-wide: {admitted}");
        // Slower than the sync: each Envoy knows the others' spending before it admits again.
        std::thread::sleep(Duration::from_millis(2 * SYNC_MS + 100));
    };
    assert_eq!(refusal.status, 429, "{}", refusal.body);
    assert_eq!(refusal.header("x-fusebox-reason"), Some("budget_tokens_day"));
    assert!((BUDGET..=BUDGET + 100).contains(&admitted), "{admitted} admitted against a budget of {BUDGET}");
    for envoy in &fleet.envoys {
        assert_eq!(chat(envoy, "spender", 1, 1).header("x-fusebox-reason"), Some("budget_tokens_day"));
    }
}

#[test]
fn an_agent_runs_step_limit_holds_across_the_fleet_and_a_sub_agent_on_another_envoy_counts_toward_it() {
    let fleet = Fleet::start(&demo_policy(json!({"free": tier(json!({"run_steps": 6, "run_ttl_s": 600}))}), json!({})));
    let t = token("agent", None);
    let step = |envoy: usize, run: &str, parent: Option<&str>| {
        let mut h = vec![("x-agent-run-id", run)];
        h.extend(parent.map(|p| ("x-agent-parent-run-id", p)));
        let r = fleet.envoys[envoy].chat(Some(&t), &h);
        // Long enough for the step to reach every other Envoy (two sync intervals and round trips).
        std::thread::sleep(Duration::from_millis(3 * SYNC_MS));
        r
    };
    // The sub-agent's first step lands on envoy-c, which has not seen its parent: it counts
    // toward the root run all the same.
    let plan = [(0, "root", None), (1, "root", None), (2, "sub", Some("root")), (0, "root", None), (1, "root", None)];
    for (i, (envoy, run, parent)) in plan.into_iter().enumerate() {
        assert_eq!(step(envoy, run, parent).status, 200, "step {} of 6", i + 1);
    }
    assert_eq!(step(2, "root", None).status, 200, "step 6 of 6");
    for envoy in 0..fleet.envoys.len() {
        let r = step(envoy, "root", None);
        assert_eq!((r.status, r.header("x-fusebox-reason")), (429, Some("run_steps")), "envoy {envoy}: {}", r.body);
        assert!(r.body.contains("(7 > 6)"), "the refusal counts the whole fleet's steps: {}", r.body);
        let sub = step(envoy, "sub", Some("root"));
        assert_eq!(sub.status, 429, "the sub-agent is refused with its tree on envoy {envoy}");
    }
    assert_eq!(step(1, "another-run", None).status, 200, "the tenant's other runs are untouched");
}

#[test]
fn requests_in_flight_on_one_envoy_hold_the_cap_on_another_until_that_envoy_is_killed() {
    let fleet = Fleet::start(&demo_policy(json!({"free": tier(json!({"concurrency": 2}))}), json!({})));
    let (mut envoys, redis) = (fleet.envoys, fleet.redis);
    let t = token("slots", None);
    let b_port = envoys[1].ports.listen;
    // An Envoy syncs the keys it has used: A has seen this tenant before B fills its slots.
    assert_eq!(envoys[0].chat(Some(&t), &[]).status, 200);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let t = t.clone();
            scope.spawn(move || {
                // Held until Envoy B is killed under it.
                let agent = Stack::start_client();
                let url = format!("http://127.0.0.1:{b_port}/v1/chat/completions");
                let _ = agent
                    .post(url)
                    .header("authorization", format!("Bearer {t}"))
                    .header("x-mock-latency-ms", "15000")
                    .send(r#"{"model":"m","messages":[]}"#);
            });
        }
        wait_until("Envoy A to see B's two requests in flight", 10, || {
            observed(&envoys[0].status(&t), "concurrency") == 2
        });
        let refused = envoys[0].chat(Some(&t), &[]);
        assert_eq!(refused.status, 429, "the cap of 2 holds across Envoys: {}", refused.body);
        assert_eq!(refused.header("x-fusebox-reason"), Some("concurrency"));
        // B dies with its two slots taken; A must not keep them for good.
        envoys[1].kill("envoy");
        let freed = wait_until("B's slots to expire", 10, || envoys[0].chat(Some(&t), &[]).status == 200);
        eprintln!("a killed Envoy's slots were free again after {} ms", freed.as_millis());
        assert!(observed(&envoys[0].status(&t), "concurrency") <= 1);
    });
    drop(redis);
}

#[test]
fn with_redis_down_each_envoy_enforces_its_share_and_fleet_counting_returns_with_redis() {
    const LIMIT: u64 = 3_000;
    let mut fleet = Fleet::start(&demo_policy(json!({"free": tier(json!({"tokens_60s": LIMIT}))}), json!({})));
    let a = &fleet.envoys[0];
    assert_eq!(a.envoy_stat(FALLBACK), Some(0));
    fleet.redis.stop();
    for envoy in &fleet.envoys {
        wait_until("every Envoy to fall back", 10, || envoy.envoy_stat(FALLBACK) == Some(1));
    }
    let a = &fleet.envoys[0];
    wait_until("the fallback's log line", 5, || a.log("envoy.log").contains("fleet counts unavailable"));
    assert_eq!(a.log("envoy.log").matches("fleet counts unavailable").count(), 1, "said once");
    // Alone, Envoy A holds the tenant to a third of the limit.
    let mut admitted = 0;
    let refusal = loop {
        let r = chat(a, "alone", 50, 50);
        if r.status != 200 {
            break r;
        }
        admitted += 100;
        assert!(admitted <= LIMIT, "the share was not enforced");
    };
    assert_eq!(refusal.status, 429, "{}", refusal.body);
    assert_eq!(refusal.json()["error"]["fusebox"]["threshold"], LIMIT / u64::from(ENVOYS));
    let share = LIMIT / u64::from(ENVOYS);
    // As on one Envoy: the request that crosses the threshold is the last one admitted.
    assert!((share..=share + 100).contains(&admitted), "{admitted} admitted against a share of {share}");
    assert!(a.envoy_counter("fusebox.fleet.sync_failures") >= 1);
    // Redis back: every Envoy counts fleet-wide against the whole limit again.
    fleet.redis.restart();
    for envoy in &fleet.envoys {
        wait_until("fleet counting to return", 15, || envoy.envoy_stat(FALLBACK) == Some(0));
    }
    let a = &fleet.envoys[0];
    wait_until("the return's log line", 5, || a.log("envoy.log").contains("fleet counts are back"));
    assert_eq!(chat(&fleet.envoys[1], "fresh", 50, 50).status, 200);
    // The usage ledger (control's database, not Redis) lost nothing while Redis was down.
    wait_until("control to meter the tenant's usage", 20, || {
        let u = a.control_get("/v1/usage?tenant=alone");
        u["tenants"][0]["usage"]["total_tokens"].as_u64() == Some(admitted)
    });
}

#[test]
fn with_one_control_replica_killed_the_fleet_keeps_syncing_and_reporting_through_the_other() {
    let replica = free_port();
    let mut fleet = Fleet::start_with(
        &demo_policy(json!({"free": generous()}), json!({"steady": {"tokens_60s": 1_000_000}})),
        Some(Postgres::start()),
        Some(replica),
    );
    for envoy in &fleet.envoys {
        assert_eq!(chat(envoy, "steady", 50, 50).status, 200);
    }
    // A kill switch thrown on the replica is enforced by every Envoy, whichever replica each
    // long-polls (the other picks the change up from the shared database).
    let agent = Stack::start_client();
    let on_replica = |method: &str, path: &str, body: &str| {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{replica}{path}"))
            .header("authorization", format!("Bearer {DEMO_ADMIN_TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap();
        let mut r = agent.run(req).unwrap();
        serde_json::from_str::<Value>(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
    };
    for envoy in &fleet.envoys {
        assert_eq!(chat(envoy, "runaway", 1, 1).status, 200);
    }
    let thrown = Instant::now();
    on_replica("POST", "/v1/tenants/runaway/breaker", r#"{"action": "open", "reason": "fleet-wide", "create": true}"#);
    let mut slowest = Duration::ZERO;
    for envoy in &fleet.envoys {
        wait_until("the kill switch on every Envoy", 5, || {
            chat(envoy, "runaway", 1, 1).header("x-fusebox-reason") == Some("kill_switch")
        });
        slowest = slowest.max(thrown.elapsed());
    }
    // Reported, not asserted (timing belongs in benchmarks).
    println!("kill switch enforced by all {ENVOYS} Envoys {} ms after the API call", slowest.as_millis());
    let synced: Vec<u64> = fleet.envoys.iter().map(|e| e.envoy_counter("fusebox.fleet.syncs")).collect();
    fleet.envoys[0].kill("fusebox-control");
    // Traffic on every Envoy while one replica is gone.
    let mut admitted = 300;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for envoy in &fleet.envoys {
            assert_eq!(chat(envoy, "steady", 50, 50).status, 200);
            admitted += 100;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (envoy, before) in fleet.envoys.iter().zip(synced) {
        wait_until("syncs through the surviving replica", 10, || {
            envoy.envoy_counter("fusebox.fleet.syncs") > before + 4
        });
        assert_eq!(envoy.envoy_counter("fusebox.fleet.fallbacks"), 0, "never fell back to its share");
    }
    // Every Envoy still sees the others: each one's 60 s window holds the whole fleet's tokens.
    for envoy in &fleet.envoys {
        wait_until("the whole fleet's tokens", 5, || {
            observed(&envoy.status(&token("steady", None)), "tokens_60s") == admitted
        });
    }
    // What the mock served, by the tenant fusebox named to it, is what every Envoy counted ...
    let served = &fleet.control().mock_stats()["tenants"]["steady"];
    let served = served["input_tokens"].as_u64().unwrap() + served["output_tokens"].as_u64().unwrap();
    assert_eq!(served, admitted, "the mock served {served} tokens to the tenant, fusebox counted {admitted}");
    // ... and the events of all three were metered through the surviving replica, to the token.
    let mut metered = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metered["tenants"][0]["usage"]["total_tokens"].as_u64() != Some(admitted) {
        assert!(Instant::now() < deadline, "the survivor metered {metered} of {admitted} tokens");
        std::thread::sleep(Duration::from_millis(100));
        metered = on_replica("GET", "/v1/usage?tenant=steady", "");
    }
}

#[test]
fn with_postgres_down_enforcement_goes_on_and_no_event_is_lost_when_it_is_back() {
    let mut fleet = Fleet::start_with(
        &demo_policy(json!({"free": generous()}), json!({"held": {"forced": {"state": "open"}}})),
        Some(Postgres::start()),
        None,
    );
    let send = |fleet: &Fleet, n: u64| {
        for envoy in &fleet.envoys {
            for _ in 0..n {
                assert_eq!(chat(envoy, "busy", 50, 50).status, 200);
            }
        }
    };
    send(&fleet, 2);
    fleet.postgres.as_mut().unwrap().stop();
    // Enforcement needs no database: traffic is served and the held tenant stays refused.
    send(&fleet, 5);
    for envoy in &fleet.envoys {
        assert_eq!(chat(envoy, "held", 1, 1).header("x-fusebox-reason"), Some("kill_switch"));
    }
    let a = &fleet.envoys[0];
    wait_until("an event post to fail while the database is down", 10, || {
        a.envoy_counter("fusebox.events.ship_failures") > 0
    });
    assert!(a.control("GET", "/v1/usage?tenant=busy", "").status >= 500, "control says it cannot read");
    fleet.postgres.as_mut().unwrap().restart();
    send(&fleet, 1);
    let served = 3 * (2 + 5 + 1) * 100;
    wait_until("every event to reach the database once it is back", 30, || {
        let u = fleet.control().control_get("/v1/usage?tenant=busy");
        u["tenants"][0]["usage"]["total_tokens"].as_u64() == Some(served)
    });
    assert_eq!(a.envoy_counter("fusebox.events.dropped"), 0);
}

/// `n` consecutive free ports.
fn free_ports(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base > 0 && (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

#[test]
fn make_fleet_serves_on_three_listeners_and_sigterm_stops_every_process() {
    let (listen, admin, control, mock) = (free_ports(3), free_ports(3), free_ports(2), free_port());
    let mut child = std::process::Command::new(fusebox_integration::sibling_binary("fusebox-fleet").unwrap())
        .env("FUSEBOX_LISTEN_PORT", listen.to_string())
        .env("FUSEBOX_ADMIN_PORT", admin.to_string())
        .env("FUSEBOX_CONTROL_PORT", control.to_string())
        .env("FUSEBOX_MOCK_PORT", mock.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("Ctrl-C stops everything") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "fusebox-fleet stopped:\n{banner}");
        banner.push_str(&line);
    }
    assert!(banner.contains(&format!("localhost:{listen}  :{}  :{}", listen + 1, listen + 2)), "{banner}");
    // The banner's request, sent to each Envoy in turn: one limit for the whole fleet.
    let agent = Stack::start_client();
    let acme = token("acme", None);
    let mut statuses = Vec::new();
    for i in 0..12 {
        let url = format!("http://127.0.0.1:{}/v1/chat/completions", listen + i % 3);
        let r = agent
            .post(url)
            .header("authorization", format!("Bearer {acme}"))
            .header("content-type", "application/json")
            .send(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
        statuses.push(r.status().as_u16());
        std::thread::sleep(Duration::from_millis(2 * SYNC_MS + 200));
    }
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(admitted, 6, "2000 tokens at 400 a request, fleet-wide, as on one Envoy: {statuses:?}");
    assert!(statuses[admitted..].iter().all(|&s| s == 429), "{statuses:?}");
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "fusebox-fleet did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ports = [listen, listen + 1, listen + 2, admin, admin + 2, control, control + 1, mock];
    for port in ports {
        wait_until("every process to be gone", 10, || std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
