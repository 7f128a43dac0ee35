//! Calls from the singleton to control: the headers every call carries.

use crate::host;
use fusebox_engine::config::ControlConfig;

/// The node this Envoy is to control: the configured `node_id`, else Envoy's `node.id`, else
/// `envoy`. Event batch ids and the fleet instance start with it; a node token is bound to it.
pub fn node_id(config: &ControlConfig) -> String {
    config
        .node_id
        .clone()
        .or_else(|| host::property_string(&["node", "id"]).filter(|id| !id.is_empty()))
        .unwrap_or_else(|| "envoy".into())
}

/// How the singleton reaches control (built once from its configuration).
pub struct ControlCalls {
    pub config: ControlConfig,
    /// `Bearer <token>` for control, if configured.
    authorization: Option<String>,
}

impl ControlCalls {
    pub fn new(config: ControlConfig) -> ControlCalls {
        let authorization = config.token.as_ref().map(|t| format!("Bearer {t}"));
        ControlCalls { config, authorization }
    }

    /// Headers of a call to control: method, path, authority and the bearer token.
    pub fn headers<'a>(&'a self, method: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut headers = vec![(":method", method), (":path", path), (":authority", self.config.authority.as_str())];
        if let Some(auth) = &self.authorization {
            headers.push(("authorization", auth.as_str()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(token: Option<&str>) -> ControlConfig {
        let mut json = serde_json::json!({"cluster": "control", "authority": "control.internal"});
        if let Some(t) = token {
            json["token"] = t.into();
        }
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_call_names_its_method_path_and_authority() {
        let calls = ControlCalls::new(control(None));
        assert_eq!(
            calls.headers("GET", "/v1/policy"),
            [(":method", "GET"), (":path", "/v1/policy"), (":authority", "control.internal")]
        );
    }

    #[test]
    fn a_configured_token_is_sent_as_a_bearer() {
        let calls = ControlCalls::new(control(Some("s3cret")));
        assert!(calls.headers("POST", "/v1/events").contains(&("authorization", "Bearer s3cret")));
    }
}
