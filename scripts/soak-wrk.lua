-- wrk script for scripts/soak: scrapes /metrics the ways real scrapers do, in rotation, and
-- prints machine-readable totals at the end (the soak script parses the `soak:` lines).
--
-- The four variants cover both encoders and the gzip path: text 0.0.4 (Prometheus 2 without
-- OpenMetrics, curl), OpenMetrics 1.0 as Prometheus 2.x/3.x ask for it, and each gzipped.

local token = os.getenv("SOAK_TOKEN") or ""
local om = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

local variants = {
  {},
  { ["Accept"] = om },
  { ["Accept-Encoding"] = "gzip" },
  { ["Accept"] = om, ["Accept-Encoding"] = "gzip" },
}
if token ~= "" then
  for _, headers in ipairs(variants) do
    headers["Authorization"] = "Bearer " .. token
  end
end

-- Each wrk thread has its own Lua state, so the counter is per thread; that is enough for an
-- even mix.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/metrics", variants[(n % #variants) + 1])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("soak: requests=%d duration_us=%d bytes=%d\n",
    summary.requests, summary.duration, summary.bytes))
  io.write(string.format("soak: errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("soak: latency_p50_us=%d latency_p90_us=%d latency_p99_us=%d latency_max_us=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
