//! Any bytes as a policy (and as a plugin configuration): an error or a valid policy, never a panic.
#![no_main]
use fusebox_engine::config::PluginConfig;
use fusebox_engine::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = Policy::from_json(data) {
        // A valid policy must survive a round trip and resolve limits for any tenant.
        let again = serde_json_roundtrip(&policy);
        assert_eq!(again.as_ref(), Some(&policy));
        let _ = policy.limits_for("tenant", Some("pro"));
    }
    let _ = PluginConfig::from_json(data);
});

fn serde_json_roundtrip(p: &Policy) -> Option<Policy> {
    let text = fusebox_engine::policy::to_json(p)?;
    Policy::from_json(text.as_bytes()).ok()
}
