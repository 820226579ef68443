-- wrk script for bench/stress/run.py: anonymous visits to pages with forms. wrk sends no
-- cookies, so every visit is a browser with an empty cookie jar. Each thread stops after its
-- share of the visits (args: visits per thread, the marker every user's data carries) and
-- says so; the counts come back as one JSON line.

local threads = {}
local paths = { "/login", "/signup", "/" }

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  quota = tonumber(args[1])
  marker = args[2]
  sent, answered = 0, 0
  statuses = {}
  csrf_cookie, session_cookie, user_data = 0, 0, 0
end

function request()
  sent = sent + 1
  return wrk.format("GET", paths[(sent % #paths) + 1])
end

function response(status, headers, body)
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  for name, value in pairs(headers) do
    if string.lower(name) == "set-cookie" then
      -- wrk keeps one value per header name: the store count is the real check.
      if string.find(value, "^csrf=") or string.find(value, "^__Host%-csrf=") then
        csrf_cookie = csrf_cookie + 1
      end
      if string.find(value, "session=", 1, true) then
        session_cookie = session_cookie + 1
      end
    end
  end
  if body and string.find(body, marker, 1, true) then
    user_data = user_data + 1
  end
  if answered == quota then
    -- wrk's main thread sleeps until -d runs out: run.py interrupts it (SIGINT) once every
    -- thread has said this, and wrk then prints its summary at once.
    io.write("STRESS_THREAD_DONE\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local totals, csrf, session, users = {}, 0, 0, 0
  for _, thread in ipairs(threads) do
    csrf = csrf + thread:get("csrf_cookie")
    session = session + thread:get("session_cookie")
    users = users + thread:get("user_data")
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
    'STRESS_ANONYMOUS {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"csrf_cookie":%d,"session_cookie":%d,"user_data":%d,"socket_errors":%d,' ..
    '"timeouts":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    csrf, session, users, e.connect + e.read + e.write, e.timeout, table.concat(parts, ",")))
end
