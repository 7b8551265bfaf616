-- wrk script for bench/http.sh: POST /decide with a mix of applicants.
--
--   BODIES=bench/out/.../bodies.tsv RUN_TAG=x wrk -t2 -c16 -d10s -s bench/payloads.lua http://127.0.0.1:P/decide
--
-- BODIES is bench/bodies.py's output: a `#mix name:weight,...` line, then `pool<TAB>json` lines
-- whose application_id is @@APP@@ and user_id @@USER@@. Each wrk thread schedules the pools by
-- the mix weights (a slot table of sum(weights) entries, shuffled with the thread's own seed,
-- walked in turn) and cycles through each pool's bodies.
--   every request: a fresh application_id (a<RUN_TAG>-t<thread>-<n>): never a replay or a 409
--   "cooldown" slots: one of COOLDOWN_USERS (default 32) user ids of this thread, in turn; the
--       user's first request is a cooldown_first body (rejected, opens the 90-day window), every
--       later one an approved-pool body, which the service refuses by state (REAPPLY_COOLDOWN)
--   other slots: a new user (u-<application_id>), so no other state carries over
-- RUN_TAG (default: the time) keeps ids of separate wrk runs apart.
-- done() prints one line, WRK_RESULT key=value ..., that http.sh parses.

local path = os.getenv("BODIES") or "bench/out/bodies.tsv"
local run = os.getenv("RUN_TAG") or tostring(os.time())
local cooldown_users = tonumber(os.getenv("COOLDOWN_USERS") or "32")

local pools, mix, total = {}, {}, 0
for line in io.lines(path) do
  if line:sub(1, 5) == "#mix " then
    for name, weight in line:sub(6):gmatch("([%w_]+):(%d+)") do
      mix[#mix + 1] = {name, tonumber(weight)}
    end
  elseif #line > 0 then
    local pool, body = line:match("^([%w_]+)\t(.*)$")
    assert(pool, "bad line in " .. path)
    pools[pool] = pools[pool] or {}
    table.insert(pools[pool], body)
  end
end
assert(#mix > 0, "no #mix line in " .. path)
for _, entry in ipairs(mix) do
  local need = entry[1] == "cooldown" and {"cooldown_first", "approved"} or {entry[1]}
  for _, pool in ipairs(need) do assert(pools[pool], "no " .. pool .. " bodies in " .. path) end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local slots, used, started = {}, {}, {}
local counter, cooldown_n = 0, 0

function init(args)
  for _, entry in ipairs(mix) do
    for _ = 1, entry[2] do slots[#slots + 1] = entry[1] end
  end
  math.randomseed(1000 + (tid or 0))
  for i = #slots, 2, -1 do                 -- Fisher-Yates
    local j = math.random(i)
    slots[i], slots[j] = slots[j], slots[i]
  end
end

local function next_body(pool)
  used[pool] = (used[pool] or 0) + 1
  local list = pools[pool]
  return list[(used[pool] - 1) % #list + 1]
end

function request()
  counter = counter + 1
  local slot = slots[(counter - 1) % #slots + 1]
  local app = "a" .. run .. "-t" .. tostring(tid) .. "-" .. counter
  local user, body
  if slot == "cooldown" then
    cooldown_n = cooldown_n + 1
    local k = (cooldown_n - 1) % cooldown_users + 1
    user = "u-cd" .. run .. "-t" .. tostring(tid) .. "-" .. k
    if started[k] then
      body = next_body("approved")
    else
      started[k] = true
      body = next_body("cooldown_first")
    end
  else
    user = "u-" .. app
    body = next_body(slot)
  end
  body = body:gsub("@@(%u+)@@", {APP = app, USER = user})
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f " ..
    "mean_ms=%.3f max_ms=%.3f bytes_per_req=%d non2xx=%d connect_err=%d read_err=%d " ..
    "write_err=%d timeouts=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000,
    summary.requests > 0 and math.floor(summary.bytes / summary.requests) or 0,
    e.status, e.connect, e.read, e.write, e.timeout))
end
