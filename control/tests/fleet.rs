#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! `POST /v1/fleet/sync` in process, over both stores: in memory, and a real `redis-server`
//! started on a free port (the test fails if it is not installed: `make fleet-servers`).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use fusebox_control::db::{now_ms, Db};
use fusebox_control::{app, AppState, Config};
use fusebox_engine::policy::Policy;
use fusebox_integration::Redis;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const FILTER: &str = "filter-token-0123";

fn replica(fleet_redis: Option<String>) -> Router {
    let seed =
        Policy::from_json(br#"{"identity": {"jwt_authn": {}}, "tenants": {"acme": {"tokens_60s": 100}}}"#).unwrap();
    let config = Config { filter_token: Some(FILTER.into()), fleet_redis, ..Config::default() };
    app(AppState::new(Db::in_memory().unwrap(), Some((seed, "test".into())), config).unwrap())
}

async fn sync(app: &Router, body: &Value) -> (StatusCode, Value) {
    let req = Request::post("/v1/fleet/sync")
        .header("authorization", format!("Bearer {FILTER}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// One Envoy's sync of `acme`: `tokens` in the current second and `in_flight` requests.
fn usage(node: &str, tokens: u64, in_flight: u64) -> Value {
    let now_s = now_ms() / 1000;
    json!({"node": node, "instance": format!("{node}/1"),
           "keys": [{"key": "acme", "usage": {"tokens": [[now_s, tokens]], "in_flight": in_flight}}]})
}

fn tokens_of(reply: &Value) -> u64 {
    reply["keys"][0]["usage"]["tokens"].as_array().map_or(0, |b| b.iter().map(|b| b[1].as_u64().unwrap()).sum())
}

async fn each_envoy_learns_the_others_usage_and_never_its_own(a: &Router, b: &Router) {
    let (status, reply) = sync(a, &usage("envoy-a", 300, 2)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(tokens_of(&reply), 0, "nobody else has used anything yet");
    let (_, reply) = sync(b, &usage("envoy-b", 40, 1)).await;
    assert_eq!(tokens_of(&reply), 300);
    assert_eq!(reply["keys"][0]["usage"]["in_flight"], 2);
    // The same absolute usage again (a retried sync) is not counted twice.
    sync(a, &usage("envoy-a", 300, 2)).await;
    let (_, reply) = sync(b, &usage("envoy-b", 40, 1)).await;
    assert_eq!(tokens_of(&reply), 300);
    let (_, reply) = sync(a, &usage("envoy-a", 310, 0)).await;
    assert_eq!(tokens_of(&reply), 40);
    assert_eq!(reply["keys"][0]["usage"]["in_flight"], 1);
}

/// One Envoy's part of acme's run `r1`: `steps`, 100 tokens each, started `ago_ms` ago.
fn run_part(node: &str, steps: u64, ago_ms: u64) -> Value {
    let now = now_ms();
    json!({"node": node, "instance": format!("{node}/1"), "keys": [],
           "runs": [{"run": "acme/r1", "part": {"steps": steps, "tokens": steps * 100,
                     "started_ms": now - ago_ms, "last_seen_ms": now, "ttl_s": 600}}]})
}

async fn each_envoy_learns_the_others_part_of_a_run(a: &Router, b: &Router) {
    let (status, reply) = sync(a, &run_part("envoy-a", 3, 9_000)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["runs"][0]["part"], json!({}), "nobody else has served the run yet");
    let (_, reply) = sync(b, &run_part("envoy-b", 2, 1_000)).await;
    let part = &reply["runs"][0]["part"];
    assert_eq!(
        (&reply["runs"][0]["run"], &part["steps"], &part["tokens"]),
        (&json!("acme/r1"), &json!(3), &json!(300))
    );
    let started = part["started_ms"].as_u64().unwrap();
    assert!(now_ms() - started >= 9_000, "the run started on envoy-a 9 s ago");
    let (_, reply) = sync(a, &run_part("envoy-a", 4, 9_000)).await;
    assert_eq!(reply["runs"][0]["part"]["steps"], 2, "envoy-b's steps, never envoy-a's own");
}

#[tokio::test]
async fn envoys_on_one_replica_with_counters_in_memory_see_each_other() {
    let app = replica(None);
    each_envoy_learns_the_others_usage_and_never_its_own(&app, &app).await;
    each_envoy_learns_the_others_part_of_a_run(&app, &app).await;
}

#[tokio::test]
async fn envoys_on_two_replicas_sharing_redis_see_each_other() {
    let redis = Redis::start();
    let (one, two) = (replica(Some(redis.url())), replica(Some(redis.url())));
    each_envoy_learns_the_others_usage_and_never_its_own(&one, &two).await;
    each_envoy_learns_the_others_part_of_a_run(&one, &two).await;
}

#[tokio::test]
async fn a_sync_of_more_keys_than_one_redis_pipeline_answers_every_key_in_order() {
    let redis = Redis::start();
    let app = replica(Some(redis.url()));
    let now_s = now_ms() / 1000;
    let many = |node: &str, tokens: u64| {
        let keys: Vec<Value> =
            (0..4_500).map(|i| json!({"key": format!("t{i}"), "usage": {"tokens": [[now_s, tokens + i]]}})).collect();
        json!({"node": node, "instance": format!("{node}/1"), "keys": keys})
    };
    assert_eq!(sync(&app, &many("envoy-a", 10)).await.0, StatusCode::OK);
    let (status, reply) = sync(&app, &many("envoy-b", 0)).await;
    assert_eq!(status, StatusCode::OK);
    let keys = reply["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4_500);
    for i in [0usize, 1_999, 2_000, 4_499] {
        assert_eq!(keys[i]["key"], format!("t{i}"));
        assert_eq!(keys[i]["usage"]["tokens"][0][1], 10 + i as u64, "envoy-a's usage of t{i}");
    }
}

#[tokio::test]
async fn a_sync_without_redis_is_refused_with_503_and_works_again_once_redis_is_back() {
    let mut redis = Redis::start();
    let app = replica(Some(redis.url()));
    assert_eq!(sync(&app, &usage("envoy-a", 5, 0)).await.0, StatusCode::OK);
    let idle = json!({"node": "envoy-b", "instance": "envoy-b/1", "keys": []});
    assert_eq!(sync(&app, &idle).await, (StatusCode::OK, json!({"keys": []})), "an idle Envoy's heartbeat");
    redis.stop();
    let (status, body) = sync(&app, &usage("envoy-a", 5, 0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(sync(&app, &idle).await.0, StatusCode::SERVICE_UNAVAILABLE, "a heartbeat learns it too");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = sync(&app, &usage("envoy-a", 5, 0)).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "control did not reconnect to redis ({status})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn syncs_that_no_honest_envoy_sends_are_refused() {
    let app = replica(None);
    let now_s = now_ms() / 1000;
    let future = json!({"node": "n", "instance": "n/1",
                        "keys": [{"key": "acme", "usage": {"tokens": [[now_s + 3600, 1]]}}]});
    let (status, body) = sync(&app, &future).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("tokens"), "{body}");
    let foreign = json!({"node": "n", "instance": "m/1", "keys": []});
    assert_eq!(sync(&app, &foreign).await.0, StatusCode::BAD_REQUEST);
    let bad_key = json!({"node": "n", "instance": "n/1", "keys": [{"key": "a b", "usage": {}}]});
    assert_eq!(sync(&app, &bad_key).await.0, StatusCode::BAD_REQUEST);
    let mut forged_run = run_part("n", 1, 0);
    forged_run["runs"][0]["part"]["last_seen_ms"] = json!(now_s * 1000 + 86_400_000);
    let (status, body) = sync(&app, &forged_run).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("last_seen_ms"), "{body}");
    let req = Request::post("/v1/fleet/sync").body(Body::from(usage("n", 1, 0).to_string())).unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
