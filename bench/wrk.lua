-- make bench load for wrk: POST one OpenAI chat completion request per call, rotating through
-- the bearer tokens in the file given as the first script argument (one per line), and print a
-- machine-readable summary line at the end. Requests are formatted once, in init, so that the
-- load generator spends its time sending rather than building requests.
local requests = {}
local body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},' ..
  '{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}],"max_tokens":128}'
local headers = { ["Content-Type"] = "application/json" }
local next_token = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      headers["Authorization"] = "Bearer " .. line
      requests[#requests + 1] = wrk.format("POST", "/v1/chat/completions", headers, body)
    end
  end
  if #requests == 0 then error("no tokens in " .. tostring(args[1])) end
end

function request()
  next_token = next_token % #requests + 1
  return requests[next_token]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'FUSEBOX_BENCH {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
