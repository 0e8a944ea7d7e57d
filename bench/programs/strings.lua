-- strings: append tostring(i) .. ";" n times, join, count the "7"s byte by byte.
-- Size: n (default 1,000,000).
local byte = string.byte

local function run(n)
  local parts = {}
  for i = 0, n - 1 do parts[i + 1] = tostring(i) .. ";" end
  local s = table.concat(parts)
  local sevens = 0
  for i = 1, #s do
    if byte(s, i) == 55 then sevens = sevens + 1 end
  end
  return #s, sevens
end

local n = arg[1] and tonumber(arg[1]) or 1000000
local length, sevens = run(n)
print(length .. " " .. sevens)
