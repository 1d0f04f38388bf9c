-- Compared by tests/unit/test_sandbox.c (library_functions_agree_with_lua): run
-- in a plain Lua state and in a sandbox, the text this returns must be the
-- same, so the sandbox's own string.find/match/gmatch/gsub keep Lua's results
-- and error messages (random patterns from a fixed seed, then fixed cases).
local out = {}
local function ser(...)
  local n = select("#", ...)
  local t = {}
  for i = 1, n do local v = select(i, ...) t[#t+1] = type(v) .. ":" .. tostring(v) end
  return table.concat(t, ",")
end
local function rec(name, f, ...)
  local r = table.pack(pcall(f, ...))
  out[#out+1] = name .. "=" .. ser(table.unpack(r, 1, r.n))
end
local seed = 12345
local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return (seed >> 4) % n + 1 end
local alpha = {"a","b","c","(",")","%a","%d","%","[","]","^","$","*","+","-","?",".","%b()","%f[%w]","%1","%2","[a-c]","[^b]","x","()","%s"," ","0","%%","[]]","[%a-]","-"}
local subj = {"a","b","c","(",")"," ","1","x","-","]","%"}
for i = 1, 3000 do
  local p = {}
  for k = 1, rnd(6) do p[#p+1] = alpha[rnd(#alpha)] end
  p = table.concat(p)
  local s = {}
  for k = 1, rnd(12) - 1 do s[#s+1] = subj[rnd(#subj)] end
  s = table.concat(s)
  local init = rnd(8) - 4
  rec("find", string.find, s, p, init)
  rec("findp", string.find, s, p, init, true)
  rec("match", string.match, s, p, init)
  rec("gsub", string.gsub, s, p, "<%0>", rnd(4) - 1)
  rec("gsubf", string.gsub, s, p, function(a, b) return b and (a .. "|" .. tostring(b)) or nil end)
  rec("gsubt", string.gsub, s, p, {a = "A", ["("] = false})
  local ok, it = pcall(string.gmatch, s, p, init)
  if ok then
    local parts = {}
    local ok2, err = pcall(function() for a, b in it do parts[#parts+1] = tostring(a) .. "/" .. tostring(b) if #parts > 50 then break end end end)
    out[#out+1] = "gmatch=" .. table.concat(parts, ";") .. tostring(ok2) .. tostring(err)
  end
end
-- fixed cases
local fixed = {
  {"hello world from Lua", "(%w+) (%w+)"}, {"  x = 1", "^%s*(%w+)%s*=%s*(%d+)$"}, {"THE (quick) fox", "%((%a+)%)"},
  {"f(a(b)c)d", "%b()"}, {"THE (quick) fox", "%f[%a]%a+"}, {"abcabc", "(abc)%1"}, {"key=val", "()=()"},
  {"a,b,,c", "([^,]*)"}, {"", ""}, {"abc", ""}, {"abc", "$"}, {"a.b", "%."}, {"[x]", "[]]"}, {"a-b", "[a%-]+"},
}
for _, c in ipairs(fixed) do
  rec("ffind", string.find, c[1], c[2]) rec("fmatch", string.match, c[1], c[2]) rec("fgsub", string.gsub, c[1], c[2], "%1")
  local parts = {} for a in string.gmatch(c[1], c[2]) do parts[#parts+1] = tostring(a) end out[#out+1] = table.concat(parts, ";")
end
rec("e1", string.find, "a", "%") rec("e2", string.find, "a", "[a") rec("e3", string.find, "a", "(a") rec("e4", string.find, "a", "a)")
rec("e5", string.find, "a", "%1") rec("e6", string.find, "a", "%f") rec("e7", string.gsub, "a", "a", "%2") rec("e8", string.gsub, "a", "a", "%x")
rec("e9", string.gsub, "a", "a", true) rec("e10", string.find, "a", "%b") rec("e11", string.gsub, "abc", "%w", {a = {}})
rec("e12", string.find, ("a"):rep(300), ("a?"):rep(300) .. ("a"):rep(300))
rec("e13", string.gsub, "abc", "", "-") rec("e14", string.gsub, "abc", "b*", "-") rec("e15", string.gsub, "hello", "l", "L", 1)
rec("e16", string.find, "abc", "b", -1) rec("e17", string.find, "abc", "b", -10) rec("e18", string.find, "abc", "", 10) rec("e19", string.find, "abc", "", 4)
rec("e20", string.match, "2024-01-02", "(%d+)-(%d+)-(%d+)") rec("e21", string.gsub, "abc", "(b)", "%%%1%0")
rec("e22", string.gsub, "x", "()", "%1") rec("e23", string.find, "a\0b", "\0") rec("e24", string.find, "a\0b", "%z")
return table.concat(out, "\n")
