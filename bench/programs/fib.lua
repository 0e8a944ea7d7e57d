-- fib: naive doubly recursive Fibonacci. Size: n (default 32).
local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local n = arg[1] and tonumber(arg[1]) or 32
print(fib(n))
