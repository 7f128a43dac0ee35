//! The CLI's side of the API: a small blocking HTTP client and readable renderings.
// Reading a serde_json `Value` by index never panics (a missing key reads as `Null`).
#![allow(clippy::indexing_slicing)]

use crate::timefmt;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// How the CLI trusts an https:// control and proves itself to one that requires it.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA of control's certificate (PEM); `None`: the public web roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and its key (PEM), for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = read_pem(path)?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(format!("{}: {e}", path.display()))),
        })
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

impl ClientTls {
    fn config(&self) -> Result<TlsConfig, String> {
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &self.ca {
            tls = tls.root_certs(RootCerts::new_with_certs(&pem_certs(ca)?));
        }
        if let Some((cert, key)) = &self.identity {
            let key = PrivateKey::from_pem(&read_pem(key)?).map_err(|e| format!("{}: {e}", key.display()))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&pem_certs(cert)?, key)));
        }
        Ok(tls.build())
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>, tls: &ClientTls) -> Result<Client, String> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls.config()?)
            .build()
            .into();
        Ok(Client { base: base.trim_end_matches('/').to_string(), token, agent })
    }

    /// Sends a request; a non-2xx reply becomes an error carrying the API's message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req =
            ureq::http::Request::builder().method(method).uri(&url).header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let payload = body.map(Value::to_string).unwrap_or_default();
        let req = req.body(payload).map_err(|e| e.to_string())?;
        let mut resp = self.agent.run(req).map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| format!("{url}: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let msg = value["error"]["message"].as_str().map_or_else(|| value.to_string(), str::to_string);
            Err(format!("{method} {path}: {status}: {msg}"))
        }
    }
}

/// Left-aligned text columns.
/// `text` safe to print on a terminal: control characters (escape sequences among them, C1
/// included) that came from control's data, an upstream's model name say, are shown escaped
/// instead of acting on the terminal. Line breaks stay.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn render_usage(u: &Value) -> String {
    // By tenant, or by the values of one scope (`/v1/usage?scope=org`).
    let (list, key, head) = match u["scope"].as_str() {
        Some(scope) => ("values", "value", scope.to_ascii_uppercase()),
        None => ("tenants", "tenant", "TENANT".to_string()),
    };
    let mut rows = Vec::new();
    for t in u[list].as_array().into_iter().flatten() {
        for m in t["models"].as_array().into_iter().flatten() {
            let l = &m["usage"];
            rows.push(vec![
                num(&t[key]),
                num(&m["model"]),
                num(&l["requests"]),
                num(&l["input_tokens"]),
                num(&l["output_tokens"]),
                num(&l["total_tokens"]),
                format!("{:.6}", l["cost"].as_f64().unwrap_or(0.0)),
            ]);
        }
    }
    let mut out = format!("usage from {} to {}\n", num(&u["from"]), num(&u["to"]));
    out.push_str(&table(&[&head, "MODEL", "REQUESTS", "INPUT", "OUTPUT", "TOTAL", "COST"], &rows));
    out
}

pub fn render_tenants(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                num(&t["tenant"]),
                num(&t["tier"]),
                num(&t["breaker"]),
                num(&t["forced"]),
                num(&t["totals"]["total_tokens"]),
            ]
        })
        .collect();
    table(&["TENANT", "TIER", "BREAKER", "FORCED", "TOKENS"], &rows)
}

pub fn render_audit(a: &Value) -> String {
    let rows: Vec<Vec<String>> = a["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                num(&e["seq"]),
                timefmt::format_ms(e["timestamp_ms"].as_u64().unwrap_or(0)),
                num(&e["tenant_id"]),
                num(&e["actor_id"]),
                num(&e["action"]),
                num(&e["reason_code"]),
                num(&e["outcome"]),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "TENANT", "ACTOR", "ACTION", "REASON", "OUTCOME"], &rows)
}

pub fn render_tenant(t: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tenant   {}", num(&t["tenant"]));
    let _ = writeln!(out, "tier     {}", num(&t["tier"]));
    let forced = &t["forced"];
    if forced.is_object() {
        let _ = writeln!(
            out,
            "forced   {} by {} since {}: {}",
            num(&forced["state"]),
            num(&forced["actor"]),
            timefmt::format_ms(forced["since_s"].as_u64().unwrap_or(0) * 1000),
            num(&forced["reason"])
        );
    }
    let b = &t["breaker"];
    if b.is_object() {
        let _ = writeln!(
            out,
            "breaker  {} at {} ({} {} > {})",
            num(&b["state"]),
            timefmt::format_ms(b["at_ms"].as_u64().unwrap_or(0)),
            num(&b["metric"]),
            num(&b["observed"]),
            num(&b["threshold"])
        );
    } else {
        let _ = writeln!(out, "breaker  no transition reported");
    }
    let tot = &t["totals"];
    let _ = writeln!(
        out,
        "totals   {} requests, {} tokens, cost {}, {} denials, {} trips, {} warnings",
        num(&tot["requests"]),
        num(&tot["total_tokens"]),
        num(&tot["cost"]),
        num(&tot["denials"]),
        num(&tot["trips"]),
        num(&tot["warnings"])
    );
    if t["escalated"] == Value::Bool(true) {
        let _ = writeln!(out, "ESCALATED: repeated trips within the escalation window");
    }
    let _ = writeln!(out, "limits   {}", t["limits"]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_output_shows_control_characters_escaped_and_keeps_lines() {
        assert_eq!(terminal_safe("gpt\u{1b}[31m-red\u{9b}2J\nnext\u{7}"), "gpt\\u{1b}[31m-red\\u{9b}2J\nnext\\u{7}");
        assert_eq!(terminal_safe("plain text, ünïcode ok"), "plain text, ünïcode ok");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1\n");
    }
}
