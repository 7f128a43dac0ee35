-- The summary line both make bench wrk scripts print at the end, read by bench/src/load.rs.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'FUSEBOX_BENCH {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
