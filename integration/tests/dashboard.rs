#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! The operator dashboard in real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `make test`), driven over WebDriver against a live stack: it shows the tenants,
//! their breakers and usage, and its kill-switch button stops a tenant at Envoy. Screenshots go
//! to `target/dashboard*.png`.

use fusebox_integration::{
    demo_policy, free_port, generous, on_path, token, token_with, wait_until, workspace_root, Stack, DEMO_ADMIN_TOKEN,
};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A chromedriver process and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

fn find_tool(name: &str) -> std::path::PathBuf {
    on_path(name)
        .unwrap_or_else(|| panic!("{name} not found: `make test` installs Debian's chromium and chromium-driver"))
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(find_tool("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !agent
            .get(format!("{base}/status"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"] == true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let chromium = find_tool("chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }}}});
        let mut b = Browser { driver, base, session: String::new(), agent };
        let created = b.post("/session", &caps);
        b.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        b
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let mut r = self.agent.post(format!("{}{path}", self.base)).send_json(body).unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        v["value"].clone()
    }

    fn get(&self, path: &str) -> Value {
        let mut r = self.agent.get(format!("{}{path}", self.base)).call().unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        v["value"].clone()
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    fn goto(&self, url: &str) {
        self.post(&self.s("/url"), &json!({"url": url}));
    }

    /// The element matching a CSS selector, if there is one now.
    fn find(&self, css: &str) -> Option<String> {
        let v = self.post(&self.s("/element"), &json!({"using": "css selector", "value": css}));
        // W3C WebDriver names the reference `element-6066-...`; an error comes back as `error`.
        v.as_object()?.iter().find(|(k, _)| k.starts_with("element-"))?.1.as_str().map(str::to_string)
    }

    /// Waits for an element whose attribute has a value; returns the element.
    fn wait_attr(&self, css: &str, attr: &str, value: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(e) = self.find(css) {
                if self.get(&self.s(&format!("/element/{e}/attribute/{attr}"))) == json!(value) {
                    return e;
                }
            }
            assert!(Instant::now() < deadline, "{css} never had {attr}={value}: {}", self.text("body"));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn text(&self, css: &str) -> String {
        self.find(css)
            .map(|e| self.get(&self.s(&format!("/element/{e}/text"))))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn find_all(&self, css: &str) -> usize {
        let found = self.post(&self.s("/elements"), &json!({"using": "css selector", "value": css}));
        found.as_array().map_or(0, Vec::len)
    }

    fn click(&self, css: &str) {
        let e = self.find(css).unwrap_or_else(|| panic!("{css} not found"));
        self.post(&self.s(&format!("/element/{e}/click")), &json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).unwrap_or_else(|| panic!("{css} not found"));
        self.post(&self.s(&format!("/element/{e}/value")), &json!({"text": text}));
    }

    fn screenshot(&self, name: &str) {
        let png = b64decode(self.get(&self.s("/screenshot")).as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = workspace_root().join("target");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn b64decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_dashboard_shows_breakers_and_usage_and_its_kill_switch_stops_a_tenant() {
    let mut tier = generous();
    tier["tokens_60s"] = json!(500);
    tier["budget_cost_month"] = json!(100);
    // calm may send as much as it likes: only the kill switch can refuse it.
    // Its one request a second is only shadowed: the dashboard shows what enforcing it would refuse.
    let calm_entry = json!({"tokens_60s": 100_000_000, "requests_10s": 1, "shadow": ["requests_10s"]});
    // calm is in org initech: the page groups today's usage by org.
    let mut policy: Value =
        serde_json::from_str(&demo_policy(json!({"free": tier}), json!({"calm": calm_entry}))).unwrap();
    policy["scopes"] = json!({"org": {"limits": {"budget_cost_month": 100}}});
    let stack = Stack::start(&policy.to_string());
    stack.wait_policy_version(1);
    let calm = token_with("calm", json!({"org": "initech"}).as_object().unwrap().clone());
    let noisy = token("noisy", None);
    for _ in 0..2 {
        assert_eq!(stack.chat(Some(&calm), &[]).status, 200);
    }
    // 400 tokens a response: the second trips tokens_60s, the third is refused.
    for _ in 0..2 {
        assert_eq!(stack.chat(Some(&noisy), &[]).status, 200);
    }
    assert_eq!(stack.chat(Some(&noisy), &[]).status, 429);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.control_get("/v1/tenants/noisy")["breaker"]["state"] != "open" {
        assert!(Instant::now() < deadline, "the trip never reached control");
        std::thread::sleep(Duration::from_millis(100));
    }

    let browser = Browser::start();
    browser.goto(&format!("{}#token={DEMO_ADMIN_TOKEN}", stack.control_url("/dashboard")));
    browser.wait_attr("body", "data-loaded", "true");
    browser.wait_attr(r#"tr[data-tenant="noisy"]"#, "data-state", "open");
    let noisy_row = browser.text(r#"tr[data-tenant="noisy"]"#);
    assert!(noisy_row.contains("last trip: tokens_60s"), "{noisy_row}");
    assert!(noisy_row.contains("tokens_60s: 800 / 500"), "usage against the limit: {noisy_row}");
    browser.wait_attr(r#"tr[data-tenant="calm"]"#, "data-state", "closed");
    assert!(browser.text("#trips").contains("noisy"));
    assert!(browser.text("#audit").contains("breaker.transition"));
    browser.screenshot("dashboard.png");
    wait_text(&browser, "#scope-usage", "initech");
    // The org's budget, topped up from its row.
    browser.type_into(r#"tr[data-scope-value="initech"] input.topup-amount"#, "10");
    browser.click(r#"tr[data-scope-value="initech"] button.topup"#);
    wait_text(&browser, "#status", "budget_cost_month of org:initech raised by 10");
    let org = stack.control_get("/v1/policy")["scopes"]["org"]["values"]["initech"].clone();
    assert_eq!(org["topup"]["budget_cost_month"]["amount"], 10.0, "{org}");

    // noisy's usage over the last hour, against its limit, and its denials by reason.
    browser.click(r#"tr[data-tenant="noisy"] button.expand"#);
    browser.wait_attr(r#"svg[data-chart="noisy"]"#, "data-chart", "noisy");
    assert_eq!(browser.find_all(r#"svg[data-chart="noisy"] rect"#), 60, "a bar a minute");
    assert_eq!(browser.find_all(r#"svg[data-chart="noisy"] line.limit"#), 1, "the tokens_60s line");
    assert!(browser.text(r#"svg[data-chart="noisy"]"#).contains("tokens_60s 500"), "{}", browser.text("tr.detail"));
    wait_text(&browser, r#"tr[data-detail-for="noisy"] [data-role="denials"]"#, "denials by reason: ");
    browser.screenshot("dashboard-chart.png");
    browser.click(r#"tr[data-tenant="noisy"] button.expand"#);
    assert_eq!(browser.find_all("tr.detail"), 0, "closed again");
    let shadowed = json!({"requests_10s": 1});
    wait_until("calm's shadow denial to reach control", 10, || {
        stack.control_get("/v1/tenants/calm/series?minutes=5")["shadow_denials"] == shadowed
    });
    browser.click(r#"tr[data-tenant="calm"] button.expand"#);
    wait_text(
        &browser,
        r#"tr[data-detail-for="calm"] [data-role="shadow-denials"]"#,
        "would have refused: requests_10s 1",
    );
    // A top-up from the page raises this month's budget, and the detail shows it.
    let budgets = r#"tr[data-detail-for="calm"] [data-role="budgets"]"#;
    wait_text(&browser, budgets, "budget_cost_month 100");
    browser.type_into(r#"tr[data-detail-for="calm"] input.topup-amount"#, "25");
    browser.click(r#"tr[data-detail-for="calm"] button.topup"#);
    wait_text(&browser, "#status", "budget_cost_month of calm raised by 25");
    wait_text(&browser, budgets, "budget_cost_month 125 (topped up by 25 for ");
    assert_eq!(stack.control_get("/v1/policy")["tenants"]["calm"]["topup"]["budget_cost_month"]["amount"], 25.0);
    browser.click(r#"tr[data-tenant="calm"] button.expand"#);

    // The kill switch, from the page: control holds calm open and Envoy refuses calm.
    browser.type_into(r#"tr[data-tenant="calm"] input.reason"#, "browser test");
    browser.click(r#"tr[data-tenant="calm"] button.kill"#);
    // The first click only arms the switch, saying what it will do.
    let armed = browser.text(r#"tr[data-tenant="calm"] button.kill"#);
    assert_eq!(armed, "Confirm: stop calm");
    assert!(stack.control_get("/v1/tenants/calm")["forced"].is_null(), "nothing thrown yet");
    browser.click(r#"tr[data-tenant="calm"] button.kill"#);
    browser.wait_attr(r#"tr[data-tenant="calm"]"#, "data-state", "kill_switch");
    assert!(browser.text("#status").contains("Kill switch set for calm"));
    let held = stack.control_get("/v1/tenants/calm");
    assert_eq!(held["forced"]["state"], "open");
    assert_eq!(held["forced"]["reason"], "browser test");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = stack.chat(Some(&calm), &[]);
        if r.status == 429 {
            assert_eq!(r.header("x-fusebox-reason"), Some("kill_switch"));
            break;
        }
        assert!(Instant::now() < deadline, "Envoy never applied the kill switch");
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.screenshot("dashboard-kill-switch.png");

    // A token that may only read cannot pull the switch: the page says so.
    // (A new URL, not just a new fragment, so that the page loads afresh with this token.)
    browser.goto(&format!("{}?as=reader#token=fusebox-demo-filter-token", stack.control_url("/dashboard")));
    browser.wait_attr("body", "data-loaded", "true");
    browser.click(r#"tr[data-tenant="noisy"] button.kill"#);
    browser.click(r#"tr[data-tenant="noisy"] button.kill"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.text("#status").contains("open noisy: 40") {
        assert!(Instant::now() < deadline, "no refusal shown: {}", browser.text("#status"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stack.control_get("/v1/tenants/noisy")["forced"].is_null());

    ten_thousand_tenants_page_search_and_sort(&stack, &browser);
}

/// Text of `css` once it contains `expected` (the page reloads asynchronously).
fn wait_text(browser: &Browser, css: &str, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = browser.text(css);
        if text.contains(expected) {
            return text;
        }
        assert!(Instant::now() < deadline, "{css} never said {expected:?}: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 10 000 more tenants reported to control: the page shows 50 at a time, pages, searches and
/// sorts, and counts every state.
fn ten_thousand_tenants_page_search_and_sort(stack: &Stack, browser: &Browser) {
    let minute = fusebox_integration::now_s() / 60 * 60;
    let events: Vec<Value> = (0..10_000u64)
        .map(|i| {
            json!({"kind": "usage", "tenant": format!("t{i:05}"), "model": "m", "route": "/v1/", "status": 200,
                   "minute": minute, "requests": 1, "input_tokens": i, "output_tokens": 0})
        })
        .collect();
    let batch = json!({"batch_id": "fixture-10k", "source": "fixture", "events": events});
    let posted = Stack::start_client()
        .post(&stack.control_url("/v1/events"))
        .header("authorization", &format!("Bearer {}", fusebox_integration::DEMO_FILTER_TOKEN))
        .header("content-type", "application/json")
        .send(batch.to_string())
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(posted.contains(r#""accepted":10000"#), "{posted}");
    browser.goto(&format!("{}?as=admin#token={DEMO_ADMIN_TOKEN}", stack.control_url("/dashboard")));
    browser.wait_attr("body", "data-loaded", "true");
    let range = wait_text(browser, "#range", "of 10,00");
    assert!(range.starts_with("1–50 of 10,00"), "{range}");
    assert_eq!(browser.find_all("#tenants tbody tr"), 50, "one page of rows");
    // calm (stopped) and noisy (tripped) need attention: first, then the busiest.
    let first_two = [1, 2].map(|n| browser.text(&format!("#tenants tbody tr:nth-child({n}) td:first-child")));
    assert!(first_two.contains(&"calm".to_string()) && first_two.contains(&"noisy".to_string()), "{first_two:?}");
    assert!(browser.text("#tenants tbody tr:nth-child(3)").starts_with("t09999"), "{}", browser.text("#tenants tbody"));
    assert!(browser.text("#states").contains("1 kill switch"), "{}", browser.text("#states"));
    browser.screenshot("dashboard-10k.png");
    browser.click("#next");
    wait_text(browser, "#range", "51–100 of");
    browser.type_into("#search", "t0999");
    wait_text(browser, "#range", "1–10 of 10");
    assert!(browser.text("#tenants tbody tr:first-child").starts_with("t09999"));
    browser.screenshot("dashboard-10k-search.png");
}
