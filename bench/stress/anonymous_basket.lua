-- wrk script for bench/stress/run.py: anonymous visitors who each put one product in a basket.
-- Every request is POST /basket/items with an anonymous CSRF cookie and its token (args: visits
-- per thread, the Cookie header, the form body, the marker every user's data carries) and no
-- session cookie, so each one is a new visitor whose basket makes a new store entry. Each
-- thread stops after its share and says so; the counts come back as one JSON line, in the
-- shape anonymous.lua gives.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  quota = tonumber(args[1])
  cookie = args[2]
  body = args[3]
  marker = args[4]
  answered = 0
  statuses = {}
  csrf_cookie, session_cookie, user_data = 0, 0, 0
end

function request()
  return wrk.format("POST", "/basket/items", {
    ["Cookie"] = cookie,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, body)
end

function response(status, headers, body)
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  for name, value in pairs(headers) do
    if string.lower(name) == "set-cookie" and string.find(value, "session=", 1, true) then
      session_cookie = session_cookie + 1
    end
  end
  if body and string.find(body, marker, 1, true) then
    user_data = user_data + 1
  end
  if answered == quota then
    io.write("STRESS_THREAD_DONE\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local totals, session, users = {}, 0, 0
  for _, thread in ipairs(threads) do
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
    '"csrf_cookie":0,"session_cookie":%d,"user_data":%d,"socket_errors":%d,' ..
    '"timeouts":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    session, users, e.connect + e.read + e.write, e.timeout, table.concat(parts, ",")))
end
