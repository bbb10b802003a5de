-- wrk script of checkout_throughput.py --client wrk: one POST /api/v1/checkout per buyer, whose bearer tokens are
-- the lines of the file given as the script's argument, each with an Idempotency-Key of its own. A connection
-- with no buyer left waits (delay) rather than send anything. After the last answer (one buyer fewer than the
-- file's lines: see init) the script writes `<file>.done`: the caller times the run by it, and stops wrk with
-- SIGINT (wrk itself runs for its whole -d).
--   wrk -t1 -c16 -d600s -s checkout.lua http://127.0.0.1:8000 -- tokens.txt
-- Prints "status <code> <count>" and "latency_us <p50> <p95> <p99>" lines at the end.

local BODY = '{"payment_method":{"type":"card","token":"tok_visa"}}'
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   marker = args[1] .. ".done"
   tokens = {}
   for line in io.lines(args[1]) do
      tokens[#tokens + 1] = line
   end
   sent, answered, counts = 0, 0, {}
   -- wrk calls request() once before the run, to check what it returns: that first buyer never checks out.
   expected = #tokens - 1
end

function delay()
   if sent >= #tokens then
      return 3600000
   end
   return 0
end

function request()
   sent = sent + 1
   local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. tokens[math.min(sent, #tokens)],
      ["Idempotency-Key"] = string.format("bench-%d-%d", sent, math.random(1, 1000000000)),
   }
   return wrk.format("POST", "/api/v1/checkout", headers, BODY)
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
   answered = answered + 1
   if answered == expected then
      io.open(marker, "w"):close()
   end
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("counts")) do
         io.write(string.format("status %d %d\n", status, n))
      end
   end
   io.write(string.format("latency_us %d %d %d\n",
      latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
