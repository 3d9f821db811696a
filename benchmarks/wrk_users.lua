-- wrk script for benchmarks/router_vs_nginx.py.
--
-- Every request carries an X-User-Id header drawn at random from a pool of
-- distinct user ids, so the stickiness key (router) and the split_clients key
-- (nginx) change from request to request.  The requests are formatted once in
-- init() and picked at random in request(): formatting a request per call
-- (wrk.format) costs wrk CPU, and on a small machine wrk must not be the
-- bottleneck.
--
-- Environment: WRK_USERS (pool size per thread, default 10000).
-- At the end done() prints one line "BAKEOFF_WRK {json}" with exact figures
-- (latencies in microseconds) that the benchmark parses in preference to
-- wrk's rounded text output.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

local pool = {}
local npool = 0

function init(args)
   local n = tonumber(os.getenv("WRK_USERS") or "10000") or 10000
   local id = tid or 0
   math.randomseed(os.time() + 7919 * id)
   for i = 1, n do
      -- ids are distinct within a thread and differ between threads
      local uid = string.format("user-%d-%d", id, math.random(1, 1000000000))
      pool[i] = wrk.format(nil, nil, {["X-User-Id"] = uid})
   end
   npool = n
end

function request()
   return pool[math.random(1, npool)]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BAKEOFF_WRK {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.2f, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
