-- wrk script: send pre-signed requests, each once. The request file has one request per line:
-- tab-separated header values in the order of HEADER_NAMES (bench/lib/signed-requests.mjs).
-- Arguments: <file> <first line, 0-based> <count>. Run with -t1 (one Lua state, one cursor).
-- If the slice runs out it starts over (those replays are denied: the run is then invalid) and
-- done() reports how often that happened.
local HEADER_NAMES = { "authorization", "x-trustplane-transcript-sha256", "x-trustplane-proof", "x-trustplane-nonce", "x-trustplane-body-sha256" }
local reqs = {}
local cursor = 0
wrapped = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file, first, count = args[1], tonumber(args[2]), tonumber(args[3])
  local path = args[4] or "/v1/orders/search?status=open"
  local n = 0
  for line in io.lines(file) do
    if n >= first + count then break end
    if n >= first then
      local headers = { ["accept"] = "application/json" }
      local i = 1
      for value in string.gmatch(line, "[^\t]+") do
        headers[HEADER_NAMES[i]] = value
        i = i + 1
      end
      reqs[#reqs + 1] = wrk.format("GET", path, headers)
    end
    n = n + 1
  end
  if #reqs == 0 then error("no requests in " .. file .. " from line " .. first) end
end

function request()
  cursor = cursor + 1
  if cursor > #reqs then
    cursor = 1
    wrapped = wrapped + 1
  end
  return reqs[cursor]
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + (t:get("wrapped") or 0) end
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"wrapped":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, w))
end
