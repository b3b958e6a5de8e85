-- wrk script of the bench harness.
-- Arguments after "--": path, spread, api_key.
--   spread = 0: every request asks for path as is.
--   spread = N: request k asks for path .. (k mod N + 1), e.g. an agent id suffix;
--               each wrk thread starts at a different offset.
-- response() counts every non-2xx status by code; done() prints one line
-- "BENCH_JSON {...}" that the harness parses.

local next_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  spread = tonumber(args[2]) or 0
  headers = {}
  if args[3] ~= nil and args[3] ~= "" then
    headers["X-API-Key"] = args[3]
  end
  counter = (thread_id or 0) * 7919
  fixed = wrk.format("GET", path, headers)
  statuses = {}
end

function request()
  if spread <= 0 then
    return fixed
  end
  counter = counter + 1
  return wrk.format("GET", path .. ((counter % spread) + 1), headers)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {}
    for code, n in pairs(counts) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"statuses": {%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
