//! fusebox Envoy Wasm module. One `.wasm` plays two roles, told apart by its configuration:
//! the HTTP filter (per worker) and the background singleton (`{"singleton": {...}}`).
//! All policy logic lives in `fusebox-engine`; this crate only translates to and from Envoy.

pub mod active;
pub mod claims;
pub mod counter;
pub mod events;
pub mod fleet_keys;
pub mod host;
pub mod metrics;
pub mod queue;
pub mod request;
pub mod root;
pub mod runs;
pub mod singleton;
pub mod states;
pub mod store;

use fusebox_engine::config::PluginConfig;
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use root::FilterRoot;
use singleton::SingletonRoot;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::Unconfigured) });
}}

/// HTTP context for roots that are not a configured filter.
struct PassThrough;
impl Context for PassThrough {}
impl HttpContext for PassThrough {}

enum Root {
    Unconfigured,
    Filter(FilterRoot),
    Singleton(Box<SingletonRoot>),
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Root::Singleton(s) = self {
            s.on_http_call_response(token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(raw) = host::plugin_configuration() else {
            log::error!("no plugin configuration; expected the filter config or {{\"singleton\": ...}}");
            return false;
        };
        log::info!("fusebox {} ({}) loading its configuration", env!("CARGO_PKG_VERSION"), env!("FUSEBOX_GIT_HASH"));
        let metrics = Rc::new(Metrics::define());
        match PluginConfig::from_json(&raw) {
            Ok(PluginConfig::Filter(cfg)) => match FilterRoot::new(*cfg, metrics) {
                Ok(root) => {
                    root.start();
                    *self = Root::Filter(root);
                    true
                }
                Err(e) => {
                    log::error!("invalid configuration: {e}");
                    false
                }
            },
            Ok(PluginConfig::Singleton(cfg)) => {
                let mut s = SingletonRoot::new(*cfg, metrics);
                let ok = s.start();
                *self = Root::Singleton(Box::new(s));
                ok
            }
            Err(e) => {
                log::error!("invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        match self {
            Root::Singleton(s) => s.on_tick(),
            Root::Filter(f) => f.on_tick(),
            Root::Unconfigured => {}
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Root::Singleton(s) = self {
            s.on_queue_ready(queue_id);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self {
            Root::Filter(f) => Some(Box::new(f.new_request())),
            // Returning None would make the SDK panic; a misplaced singleton config passes traffic.
            _ => Some(Box::new(PassThrough)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
