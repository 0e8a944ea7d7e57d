-- loop: an integer loop whose bound is read at run time. Size: n (default 100,000,000).
-- On LuaJIT every number is a double: the values stay below 2^53, so the sum stays exact.
local function run(n)
  local s = 0
  for i = 0, n - 1 do
    local x = i % 1000003
    s = s + x * x % 7
  end
  return s
end

local n = arg[1] and tonumber(arg[1]) or 100000000
print(run(n))
