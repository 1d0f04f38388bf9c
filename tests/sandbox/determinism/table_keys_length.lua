-- `#t` of tables with holes whose keys include tables, functions (Lua and
-- C) and coroutines, after churn: Lua hashes such a key by its address, and where keys land decides when the
-- table rehashes and so what `#` gives. The sandbox's per-run heap makes
-- those addresses (as Lua hashes them) the same in every process; before,
-- five processes gave five results. The number of timers depends on the
-- results, so a replay that computed different lengths fails.
return function(input)
  local seed = 12345
  local function rnd(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return (seed >> 8) % n + 1
  end
  local cfuncs = {string.len, math.abs, table.insert, (ipairs({})), (utf8.codes("")), next, tostring}
  local function new_key(step)
    local kind = step % 4
    if kind == 0 then return {} end
    if kind == 1 then return function() return step end end
    if kind == 2 then return coroutine.create(function() end) end
    return cfuncs[step % #cfuncs + 1]
  end
  local h = 0
  for range = 8, 96, 8 do
    for trial = 1, 6 do
      local t, keys = {}, {}
      for step = 1, 250 do
        local op = rnd(6)
        if op <= 2 then
          local k = new_key(step)
          keys[#keys + 1] = k
          t[k] = true
        elseif op == 3 and #keys > 0 then
          t[keys[rnd(#keys)]] = nil
        elseif op == 4 then
          t[rnd(range)] = true
        elseif op == 5 then
          t[rnd(range)] = nil
        else
          h = (h * 31 + #t) % 1000000007
        end
      end
    end
  end
  for _ = 1, h % 3 + 1 do workflow.sleep(0.01) end
  return h
end
