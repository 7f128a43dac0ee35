-- make bench's memory figure: POST one OpenAI chat completion per bearer token in the file given
-- as the first script argument, each token once, then stop; print the same summary line as wrk.lua.
-- Requests are formatted as they are sent (a million preformatted ones would be half a GB).
local tokens = {}
local body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
local sent, answered, failed = 0, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  if #tokens == 0 then error("no tokens in " .. tostring(args[1])) end
end

function request()
  sent = sent % #tokens + 1
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[sent] }
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then failed = failed + 1 end
  if answered >= #tokens then wrk.thread:stop() end
end

-- The shared `done` (the summary line), from beside this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk-summary.lua")
