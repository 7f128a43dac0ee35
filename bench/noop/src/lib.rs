//! The baselines of `make bench`. By default, what any Rust proxy-wasm filter costs: it reads
//! one request header per request (so the header-map hostcall is paid, as every real filter pays
//! it) and continues. Its configuration may ask for more reads (`{"header_reads": 20}`): the
//! bench uses that to measure what one hostcall costs, the unit a filter's cost is made of. With
//! `{"mode": "floor"}` it is the floor of a token counter instead (see `floor.rs`).

mod floor;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { reads: 1, floor: false }) });
}}

struct NoopRoot {
    reads: u32,
    floor: bool,
}

impl Context for NoopRoot {}
impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX);
        if let Ok(Some(bytes)) = config {
            let text = String::from_utf8_lossy(&bytes);
            // A tiny config, read without a JSON parser to keep this module minimal.
            let digits: String = text
                .split("\"header_reads\"")
                .nth(1)
                .map(|rest| rest.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect())
                .unwrap_or_default();
            self.reads = digits.parse().unwrap_or(1);
            self.floor = text.contains("\"floor\"");
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.floor {
            return Some(Box::<floor::Floor>::default());
        }
        Some(Box::new(Noop { reads: self.reads }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    reads: u32,
}

impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Read and drop: the cost of a header lookup across the ABI is the point. Bytes, not
        // the string getter, which panics on a non-UTF-8 value.
        for _ in 0..self.reads {
            let _ = proxy_wasm::hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "authorization");
        }
        Action::Continue
    }
}
