-- methods: a method call on an object with fields, n times. Size: n (default 10,000,000).
local Counter = {}
Counter.__index = Counter

function Counter.new()
  return setmetatable({ total = 0, step = 3 }, Counter)
end

function Counter:add(x)
  self.total = self.total + x % self.step
end

local function run(n)
  local c = Counter.new()
  for i = 0, n - 1 do c:add(i) end
  return c.total
end

local n = arg[1] and tonumber(arg[1]) or 10000000
print(run(n))
