//! Control with many tenants: how long the operator's reads take (a dashboard page, a search,
//! the whole tenant list, `/metrics`), how long an Envoy's event batch takes alone and while
//! dashboards are being read (reads have their own connection and must not hold ingestion up),
//! and control's memory afterwards.

use serde::Serialize;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Events per batch (control's maximum).
const BATCH: u64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ControlScale {
    pub(crate) tenants: u64,
    pub(crate) dashboard_page_ms: f64,
    pub(crate) dashboard_search_ms: f64,
    pub(crate) tenant_list_ms: f64,
    pub(crate) metrics_ms: f64,
    pub(crate) batch_alone_ms: f64,
    pub(crate) batch_during_reads_ms: f64,
    pub(crate) rss_mb: f64,
}

impl ControlScale {
    pub(crate) fn line(&self) -> String {
        format!(
            "control at {} tenants: dashboard page {:.0} ms, search {:.0} ms, tenant list {:.0} ms, /metrics {:.0} ms; \
             a {BATCH}-event batch {:.0} ms alone, {:.0} ms while dashboards are read; RSS {:.0} MB\n",
            self.tenants,
            self.dashboard_page_ms,
            self.dashboard_search_ms,
            self.tenant_list_ms,
            self.metrics_ms,
            self.batch_alone_ms,
            self.batch_during_reads_ms,
            self.rss_mb
        )
    }
}

fn batch(id: &str, first: u64, minute: u64) -> String {
    let events: Vec<serde_json::Value> = (first..first + BATCH)
        .map(|i| {
            serde_json::json!({"kind": "usage", "tenant": format!("scale-{i:07}"), "model": "gpt-4o-mini",
                "route": "/v1/", "status": 200, "minute": minute, "requests": 1, "input_tokens": 27 + i % 100,
                "output_tokens": 36})
        })
        .collect();
    serde_json::json!({"batch_id": id, "source": "bench", "events": events}).to_string()
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kb.and_then(|k| k.parse::<f64>().ok()).map_or(0.0, |k| k / 1024.0)
}

/// Fills a fresh control on `port` with `tenants` tenants and measures it.
pub(crate) fn measure(port: u16, pid: u32, filter_token: &str, tenants: u64) -> Result<ControlScale, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(300))).build().into();
    let base = format!("http://127.0.0.1:{port}");
    let auth = format!("Bearer {filter_token}");
    let minute = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 60 * 60;
    let post = |body: &str| -> Result<f64, String> {
        let t = Instant::now();
        let mut r = agent
            .post(format!("{base}/v1/events"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if !text.contains(&format!("\"accepted\":{BATCH}")) {
            return Err(format!("a batch was not taken whole: {text}"));
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let get = |path: &str| -> Result<f64, String> {
        let t = Instant::now();
        let mut r =
            agent.get(format!("{base}{path}")).header("authorization", &auth).call().map_err(|e| e.to_string())?;
        r.body_mut().with_config().limit(1 << 30).read_to_vec().map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let mut n = 0;
    while n < tenants {
        post(&batch(&format!("fill-{n}"), n, minute))?;
        n += BATCH;
    }
    let dashboard_page_ms = get("/v1/dashboard?limit=50")?;
    let dashboard_search_ms = get("/v1/dashboard?limit=50&q=scale-00123")?;
    let tenant_list_ms = get("/v1/tenants")?;
    let metrics_ms = get("/metrics")?;
    // The same tenants again (updates, not new rows), alone and then under two dashboards.
    let batch_alone_ms = post(&batch("again-alone", 0, minute))?;
    let batch_during_reads_ms = std::thread::scope(|s| -> Result<f64, String> {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..3 {
                        let _ = get("/v1/dashboard?limit=50");
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let during = post(&batch("again-during", 0, minute));
        readers.into_iter().for_each(|r| {
            let _ = r.join();
        });
        during
    })?;
    Ok(ControlScale {
        tenants: n,
        dashboard_page_ms,
        dashboard_search_ms,
        tenant_list_ms,
        metrics_ms,
        batch_alone_ms,
        batch_during_reads_ms,
        rss_mb: rss_mb(pid),
    })
}
