//! Thin wrappers over proxy-wasm hostcalls. Every result is handled here: a failed hostcall
//! is logged and turned into `None`/`false`, never a panic (a panic traps the VM and fails
//! every request on the worker).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::time::{Duration, UNIX_EPOCH};

/// Milliseconds since the unix epoch, from Envoy's clock.
pub fn now_ms() -> u64 {
    match hostcalls::get_current_time() {
        Ok(t) => t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        Err(s) => {
            log::warn!("get_current_time failed: {s:?}");
            0
        }
    }
}

/// A header map read in one hostcall (one crossing instead of one per header: hostcalls are
/// most of what a filter costs). Values are kept as bytes because a client may send any octet
/// and proxy-wasm's string getters panic on non-UTF-8, which would trap the VM; such a value
/// reads as lossy UTF-8 here and then fails validation like any other bad value.
#[derive(Debug, Default)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name` (lower-case, as Envoy stores names).
    pub fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        // `from_utf8` first: the lossy conversion's chunked walk costs more on the valid values
        // that are nearly all of them.
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| match std::str::from_utf8(v) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(v),
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

fn headers(map: MapType) -> Headers {
    // Names are safe to read as strings: Envoy's codecs refuse non-token header names.
    Headers(hostcalls::get_map_bytes(map).unwrap_or_else(|s| {
        log::warn!("reading {map:?} failed: {s:?}");
        Vec::new()
    }))
}

pub fn request_headers() -> Headers {
    headers(MapType::HttpRequestHeaders)
}

pub fn response_headers() -> Headers {
    headers(MapType::HttpResponseHeaders)
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(s) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        log::warn!("setting request header {name} failed: {s:?}");
    }
}

pub fn add_response_header(name: &str, value: &str) {
    if let Err(s) = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value) {
        log::warn!("adding response header {name} failed: {s:?}");
    }
}

pub fn set_response_header(name: &str, value: &str) {
    if let Err(s) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)) {
        log::warn!("setting response header {name} failed: {s:?}");
    }
}

pub fn replace_response_body(old_size: usize, body: &[u8]) {
    if let Err(s) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, old_size, body) {
        log::warn!("replacing response body failed: {s:?}");
    }
}

pub fn response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).unwrap_or_else(|s| {
        log::warn!("reading response body failed: {s:?}");
        None
    })
}

pub fn request_body(size: usize) -> Option<Vec<u8>> {
    request_body_range(0, size)
}

pub fn request_body_range(start: usize, len: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, start, len).unwrap_or_else(|s| {
        log::warn!("reading request body failed: {s:?}");
        None
    })
}

pub fn replace_request_body(old_size: usize, body: &[u8]) -> bool {
    hostcalls::set_buffer(BufferType::HttpRequestBody, 0, old_size, body)
        .map_err(|s| log::warn!("replacing request body failed: {s:?}"))
        .is_ok()
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).unwrap_or(None)
}

pub fn send_reply(reply: &fusebox_engine::reply::Reply) {
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(s) = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())) {
        log::error!("sending local reply {} failed: {s:?}", reply.status);
    }
}

/// A string-valued property (e.g. a claim in dynamic metadata), if present and UTF-8.
pub fn property_string(path: &[&str]) -> Option<String> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// Filter state readable by access logs as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_filter_state(name: &str, value: &str) {
    if let Err(s) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log::debug!("set_property {name} failed: {s:?}");
    }
}

/// Value and CAS token of a shared-data key; `(None, None)` when the key does not exist.
pub fn shared_get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    hostcalls::get_shared_data(key)
}

pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

pub fn set_tick_period(period: Duration) -> bool {
    hostcalls::set_tick_period(period).map_err(|s| log::error!("set_tick_period failed: {s:?}")).is_ok()
}

pub fn http_call(cluster: &str, headers: Vec<(&str, &str)>, timeout: Duration) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout)
}

pub fn http_call_header(name: &str) -> Option<String> {
    // Bytes, not the string getter: control's reply must not be able to trap the singleton.
    let value = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name).unwrap_or(None)?;
    String::from_utf8(value).ok()
}

pub fn http_call_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size).unwrap_or(None)
}

pub fn http_call_with_body(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout)
}

/// Registers a shared queue (singleton); its id, or `None` with a log line.
pub fn register_queue(name: &str) -> Option<u32> {
    hostcalls::register_shared_queue(name).map_err(|s| log::error!("register_shared_queue failed: {s:?}")).ok()
}

/// The id of a queue another VM registered, if it exists yet.
pub fn resolve_queue(vm_id: &str, name: &str) -> Option<u32> {
    hostcalls::resolve_shared_queue(vm_id, name).unwrap_or(None)
}

pub fn enqueue(queue: u32, value: &[u8]) -> Result<(), Status> {
    hostcalls::enqueue_shared_queue(queue, Some(value))
}

/// The next item of a queue, `None` when it is empty (or unreadable).
pub fn dequeue(queue: u32) -> Option<Vec<u8>> {
    hostcalls::dequeue_shared_queue(queue).unwrap_or(None)
}
