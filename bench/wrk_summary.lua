-- wrk script of the bench harness.
-- Arguments after "--": path, spread, api_key.
--   spread = 0: every request asks for path as is.
--   spread = N: request k asks for path .. (k mod N + 1), e.g. an agent id suffix;
--               each wrk thread starts at a different offset.
-- done() prints one line "BENCH_JSON {...}" that the harness parses.

local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
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
end

function request()
  if spread <= 0 then
    return fixed
  end
  counter = counter + 1
  return wrk.format("GET", path .. ((counter % spread) + 1), headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
