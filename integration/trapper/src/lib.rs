//! A test-only HTTP filter whose VM traps when a request carries `x-trap`. fusebox itself never
//! panics; this module exists so that the tests can show what Envoy's plugin `failure_policy`
//! does to traffic once a Wasm VM has failed.
#![allow(clippy::panic)] // trapping is this module's whole purpose

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trapper))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Trapper;
impl Context for Trapper {}
impl HttpContext for Trapper {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Ok(Some(_)) = proxy_wasm::hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-trap") {
            panic!("trap requested");
        }
        Action::Continue
    }
}
