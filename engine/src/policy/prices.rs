//! Prices per model, for cost budgets and metering.

use crate::usage::{CacheTokens, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Price of a model, per million tokens, in the budget currency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Input read from the provider's prompt cache (default: `input_per_mtok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// Input written to the prompt cache (Anthropic's cache creation; default: `input_per_mtok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
}

/// Cost of `usage` on `model` under `prices` (by model name prefix, longest match wins; `*`
/// for anything else), in millionths of the currency; 0 when no price matches.
pub(crate) fn cost_micros(
    prices: &BTreeMap<String, Price>,
    model: Option<&str>,
    usage: Usage,
    cache: CacheTokens,
) -> u64 {
    let by_prefix = model.and_then(|m| {
        prices
            .iter()
            .filter(|(prefix, _)| *prefix != "*" && m.starts_with(prefix.as_str()))
            .max_by_key(|(p, _)| p.len())
    });
    let Some((_, price)) = by_prefix.or_else(|| prices.get_key_value("*")) else { return 0 };
    // Validated finite and non-negative; token counts are far below 2^53.
    let cache = cache.within(usage.input_tokens);
    let fresh = usage.input_tokens - cache.read - cache.write;
    let micros = fresh as f64 * price.input_per_mtok
        + cache.read as f64 * price.cached_input_per_mtok.unwrap_or(price.input_per_mtok)
        + cache.write as f64 * price.cache_write_per_mtok.unwrap_or(price.input_per_mtok)
        + usage.output_tokens as f64 * price.output_per_mtok;
    micros.round() as u64
}

/// Checks every price is finite and within range.
pub(crate) fn validate(prices: &BTreeMap<String, Price>) -> Result<(), crate::strict::PolicyError> {
    for (model, p) in prices {
        let ok = |v: f64| v.is_finite() && (0.0..=1e6).contains(&v);
        let optional = [p.cached_input_per_mtok, p.cache_write_per_mtok].into_iter().flatten();
        if !ok(p.input_per_mtok) || !ok(p.output_per_mtok) || !optional.into_iter().all(ok) {
            return Err(crate::strict::field_error(
                format!("prices.{model}"),
                "prices must be between 0 and 1e6 per million tokens",
            ));
        }
    }
    Ok(())
}
