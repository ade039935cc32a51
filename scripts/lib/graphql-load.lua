-- wrk script for scripts/bench-issue.ts: POSTs pre-built GraphQL bodies (one JSON document per line of the
-- file given as the first script argument) to /graphql, each thread starting at its own offset, and counts
-- what the answers carry. The second argument says what a success looks like:
--   query : an answer with data.__typename
--   issue : every "serial" in an answer is one issued certificate, every "code" one refused item
-- done() prints one JSON line that the TypeScript side parses.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

local bodies = {}
local next_body = 0
local mode = "issue"
local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  mode = args[2] or "issue"
  next_body = (thread_index - 1) * 7919
  ok = 0
  failed = 0
end

function request()
  next_body = next_body + 1
  return wrk.format("POST", "/graphql", headers, bodies[(next_body % #bodies) + 1])
end

local function count(text, needle)
  local found, from = 0, 1
  while true do
    local at = string.find(text, needle, from, true)
    if not at then return found end
    found = found + 1
    from = at + #needle
  end
end

function response(status, _, body)
  if mode == "query" then
    if status == 200 and string.find(body, '"__typename":"Query"', 1, true) then ok = ok + 1 else failed = failed + 1 end
    return
  end
  ok = ok + count(body, '"serial":"')
  local refused = count(body, '"code":"')
  if status ~= 200 and refused == 0 then refused = 1 end
  failed = failed + refused
end

function done(summary, latency, _)
  local succeeded, refused = 0, 0
  for _, thread in ipairs(threads) do
    succeeded = succeeded + thread:get("ok")
    refused = refused + thread:get("failed")
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"ok":%d,"failed":%d,"p50Us":%d,"p99Us":%d,"socketErrors":%d}\n',
    summary.requests, summary.duration, succeeded, refused, latency:percentile(50), latency:percentile(99),
    errors.connect + errors.read + errors.write + errors.timeout))
end
