-- wrk script for bench/http.sh: POST a rotating set of JSON applicant bodies.
--
--   BODIES=bench/out/.../bodies.jsonl wrk -t2 -c16 -d10s -s bench/payloads.lua http://127.0.0.1:P/decide
--
-- BODIES holds one JSON body per line (bench/bodies.py, each checked to answer 200) whose
-- application_id and user_id hold the placeholder @@ID@@; every request gets a fresh id
-- (wrk<start>-t<thread>-<n>): a new application of a new user, so per-user state (T1 cooldown,
-- T3 counts) and a store of applications never turn the run into repeats or early refusals.
-- done() prints one line, WRK_RESULT key=value ..., that http.sh parses.

local path = os.getenv("BODIES") or "bench/out/bodies.jsonl"
-- each body as the pieces around its placeholders, joined with a fresh id per request
local parts = {}
for line in io.lines(path) do
  if #line > 0 then
    local pieces, start = {}, 1
    while true do
      local s, e = string.find(line, "@@ID@@", start, true)
      if not s then break end
      pieces[#pieces + 1] = line:sub(start, s - 1)
      start = e + 1
    end
    pieces[#pieces + 1] = line:sub(start)
    parts[#parts + 1] = pieces
  end
end
assert(#parts > 0, "no bodies in " .. path)

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local started = tostring(os.time())
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local counter = 0

function request()
  counter = counter + 1
  local pieces = parts[(counter - 1) % #parts + 1]
  local id = "wrk" .. started .. "-t" .. tostring(tid) .. "-" .. counter
  return wrk.format(nil, nil, nil, table.concat(pieces, id))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f " ..
    "mean_ms=%.3f max_ms=%.3f bytes_per_req=%d non2xx=%d connect_err=%d read_err=%d " ..
    "write_err=%d timeouts=%d bodies=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000,
    summary.requests > 0 and math.floor(summary.bytes / summary.requests) or 0,
    e.status, e.connect, e.read, e.write, e.timeout, #parts))
end
