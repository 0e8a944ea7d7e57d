-- binarytrees: the Benchmarks Game binary trees, minimum depth 4. Size: maximum depth (default 16).
-- A node is { left, right }; a leaf is {}.
local MIN_DEPTH = 4

local function bottom_up(depth)
  if depth > 0 then
    return { bottom_up(depth - 1), bottom_up(depth - 1) }
  end
  return {}
end

local function check(node)
  if node[1] == nil then return 1 end
  return 1 + check(node[1]) + check(node[2])
end

local n = arg[1] and tonumber(arg[1]) or 16
local max_depth = math.max(n, MIN_DEPTH + 2)
local stretch = max_depth + 1
print("stretch tree of depth " .. stretch .. "\t check: " .. check(bottom_up(stretch)))
local long_lived = bottom_up(max_depth)
for depth = MIN_DEPTH, max_depth, 2 do
  -- 2^k is a float on Lua 5.4; math.floor turns it back into an integer so it prints as one.
  local iterations = math.floor(2 ^ (max_depth - depth + MIN_DEPTH))
  local total = 0
  for _ = 1, iterations do total = total + check(bottom_up(depth)) end
  print(iterations .. "\t trees of depth " .. depth .. "\t check: " .. total)
end
print("long lived tree of depth " .. max_depth .. "\t check: " .. check(long_lived))
