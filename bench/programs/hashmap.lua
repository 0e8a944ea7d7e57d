-- hashmap: insert keys i*7919 mod 10000019 -> i for i in 1..n, then look each up and sum.
-- Size: n (default 1,000,000). A Lua table keeps no count of its hash part, so the
-- entries are counted with next() at the end.
local function run(n)
  local m = {}
  for i = 1, n do m[i * 7919 % 10000019] = i end
  local sum = 0
  for i = 1, n do sum = sum + m[i * 7919 % 10000019] end
  local count = 0
  for _ in next, m do count = count + 1 end
  return count, sum
end

local n = arg[1] and tonumber(arg[1]) or 1000000
local count, sum = run(n)
print(count .. " " .. sum)
