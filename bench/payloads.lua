-- wrk script for bench/http.sh: POST a rotating set of JSON applicant bodies.
--
--   BODIES=bench/out/.../bodies.jsonl wrk -t2 -c16 -d10s -s bench/payloads.lua http://127.0.0.1:P/decide
--
-- BODIES holds one JSON body per line (bench/bodies.py, each checked to answer 200) whose
-- application_id is the placeholder @@ID@@; every request gets a fresh id
-- (wrk<start>-t<thread>-<n>), so a store that remembers applications never sees a repeat.
-- done() prints one line, WRK_RESULT key=value ..., that http.sh parses.

local path = os.getenv("BODIES") or "bench/out/bodies.jsonl"
local parts = {}
for line in io.lines(path) do
  if #line > 0 then
    local s, e = string.find(line, "@@ID@@", 1, true)
    if s then
      parts[#parts + 1] = { line:sub(1, s - 1), line:sub(e + 1) }
    else
      parts[#parts + 1] = { line }
    end
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
  local p = parts[(counter - 1) % #parts + 1]
  local body = p[1]
  if p[2] then
    body = p[1] .. "wrk" .. started .. "-t" .. tostring(tid) .. "-" .. counter .. p[2]
  end
  return wrk.format(nil, nil, nil, body)
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
