-- wrk script for bench/run.py: counts what wrk's own summary does not (responses per
-- status, responses carrying Set-Cookie) and prints every number run.py needs as one JSON
-- line, so that nothing is parsed out of wrk's human-readable text.
-- Headers (cookie, HX-Request, X-Session-State) come from wrk's -H options.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  set_cookie = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  for name, _ in pairs(headers) do
    if string.lower(name) == "set-cookie" then
      set_cookie = set_cookie + 1
      break
    end
  end
end

function done(summary, latency, requests)
  local totals, cookies = {}, 0
  for _, thread in ipairs(threads) do
    cookies = cookies + thread:get("set_cookie")
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"set_cookie":%d,"socket_errors":%d,"timeouts":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), cookies,
    e.connect + e.read + e.write, e.timeout, table.concat(parts, ",")))
end
