-- wrk script of login_flood.py: bad sign-ins (a new unknown e-mail and a wrong password each time) from
-- `addresses` client addresses, given to the server in X-Forwarded-For (it trusts 127.0.0.1 as its proxy).
--   wrk -t1 -c40 -d12s -s login_flood.lua http://127.0.0.1:8000 -- <addresses> <first octets>
-- Prints "status <code> <count>" lines at the end.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   addresses = tonumber(args[1] or "1")
   prefix = args[2] or "10.1.0"
   sent = 0
   counts = {}
end

function request()
   sent = sent + 1
   local address = prefix .. "." .. ((sent % addresses) + 1)
   local body = string.format('{"email":"victim-%d-%d@example.com","password":"wrong guess %d"}',
      math.random(1, 1000000000), sent, sent)
   return wrk.format("POST", "/api/v1/auth/token",
      {["Content-Type"] = "application/json", ["X-Forwarded-For"] = address}, body)
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      local c = thread:get("counts")
      for status, n in pairs(c) do
         total[status] = (total[status] or 0) + n
      end
   end
   for status, n in pairs(total) do
      io.write(string.format("status %d %d\n", status, n))
   end
end
