-- Compared by tests/unit/test_sandbox.c (library_functions_agree_with_lua):
-- the sandbox's table.move/concat/unpack/insert/remove and string.rep give
-- the same results, errors and metamethod calls (logged) as Lua's.
local out = {}
local function ser(...)
  local n = select("#", ...)
  local t = {}
  for i = 1, n do local v = select(i, ...) t[#t+1] = type(v) == "table" and ("{" .. table.concat((function() local r = {} for i = 1, rawlen(v) do r[i] = tostring(v[i]) end return r end)(), " ") .. "}") or (type(v) .. ":" .. tostring(v)) end
  return table.concat(t, ",")
end
local function rec(name, f, ...)
  local r = table.pack(pcall(f, ...))
  out[#out+1] = name .. "=" .. ser(table.unpack(r, 1, r.n))
end
local function proxy(log, n)
  local store = {}
  for i = 1, n do store[i] = "v" .. i end
  return setmetatable({}, {__index = function(_, k) log[#log+1] = "r" .. tostring(k) return store[k] end,
    __newindex = function(_, k, v) log[#log+1] = "w" .. tostring(k) .. "=" .. tostring(v) store[k] = v end,
    __len = function() log[#log+1] = "len" return n end})
end
local function L(n) local t = {} for i = 1, n do t[i] = i end return t end
for _, args in ipairs({{1,3,2},{1,3,3},{2,4,1},{1,0,1},{3,5,1},{1,5,3},{0,2,1},{-1,1,2},{1,3,5}}) do
  rec("move", table.move, L(5), args[1], args[2], args[3])
  rec("move2", table.move, L(5), args[1], args[2], args[3], {})
  local log = {} local p = proxy(log, 5)
  rec("movep", table.move, p, args[1], args[2], args[3]) out[#out+1] = table.concat(log, " ")
end
rec("moveerr1", table.move, {}, math.mininteger, 1, 1) rec("moveerr2", table.move, {}, 1, math.maxinteger, 2)
rec("moveerr3", table.move, 1, 1, 2, 3) rec("moveerr4", table.move, {}, 1, 2)
for _, a in ipairs({{}, {", "}, {"-", 2}, {"-", 2, 3}, {"", 3, 2}, {"x", 1, 6}, {"x", -1, 1}}) do
  rec("concat", table.concat, {1, "b", 3.5, "d", 5}, table.unpack(a))
end
rec("concaterr", table.concat, {1, {}, 3}) rec("concaterr2", table.concat, 5)
local log = {} rec("concatp", table.concat, proxy(log, 4), ",") out[#out+1] = table.concat(log, " ")
for _, a in ipairs({{}, {2}, {2, 4}, {-1, 1}, {3, 1}, {1, 10}}) do rec("unpack", table.unpack, {1, 2, 3, 4, 5}, table.unpack(a)) end
rec("unpackerr", table.unpack, {}, 1, 1e8) rec("unpackerr2", table.unpack, {}, math.mininteger, math.maxinteger)
log = {} rec("unpackp", table.unpack, proxy(log, 3)) out[#out+1] = table.concat(log, " ")
for _, a in ipairs({{"x"}, {1, "x"}, {3, "x"}, {6, "x"}, {7, "x"}, {0, "x"}, {1, 2, 3}}) do
  local t = L(5) rec("insert", table.insert, t, table.unpack(a)) out[#out+1] = ser(t)
end
rec("inserterr", table.insert, {}) log = {} rec("insertp", table.insert, proxy(log, 3), 2, "n") out[#out+1] = table.concat(log, " ")
for _, a in ipairs({{}, {1}, {3}, {5}, {6}, {7}, {0}, {-1}}) do
  local t = L(5) rec("remove", table.remove, t, table.unpack(a)) out[#out+1] = ser(t)
end
rec("remove0", table.remove, {}) rec("remove0b", table.remove, {}, 0) rec("remove0c", table.remove, {}, 1) rec("remove0d", table.remove, {}, 2)
log = {} rec("removep", table.remove, proxy(log, 3), 1) out[#out+1] = table.concat(log, " ")
rec("rep1", string.rep, "ab", 3, ",") rec("rep2", string.rep, "", 5) rec("rep3", string.rep, "x", 0) rec("rep4", string.rep, "x", -1, "y") rec("rep5", string.rep, "", 3, "-")
rec("rep6", string.rep, "x", 2.5) rec("rep7", string.rep)
return table.concat(out, "\n")
