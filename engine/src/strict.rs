//! Strict JSON for configuration: unknown fields and impossible values are refused with a
//! message that names the field (`tiers.free.breaker.cooldown_s: must be at least 1`), so a bad
//! policy or plugin configuration is refused where it is written and never reaches a worker.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Dotted path of the offending field (`tiers.free.tokens_60s`), empty for the document.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for PolicyError {}

pub(crate) fn field_error(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError { field: field.into(), message: message.into() }
}

/// Deserializes `T` strictly, reporting the path of the field serde stopped at.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, PolicyError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        field_error(field, e.inner().to_string())
    })?;
    de.end().map_err(|e| field_error("", e.to_string()))?;
    Ok(value)
}
