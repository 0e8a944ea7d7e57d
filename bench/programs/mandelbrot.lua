-- mandelbrot: escape-time count over an n*n grid, 50 iterations at most. Size: n (default 1000).
local function mandelbrot(n)
  local count = 0
  for y = 0, n - 1 do
    local ci = 2.0 * y / n - 1.0
    for x = 0, n - 1 do
      local cr = 2.0 * x / n - 1.5
      local zr, zi = 0.0, 0.0
      local i = 0
      while i < 50 do
        local tr = zr * zr - zi * zi + cr
        zi = 2.0 * zr * zi + ci
        zr = tr
        if zr * zr + zi * zi > 4.0 then break end
        i = i + 1
      end
      if i == 50 then count = count + 1 end
    end
  end
  return count
end

local n = arg[1] and tonumber(arg[1]) or 1000
print(mandelbrot(n))
