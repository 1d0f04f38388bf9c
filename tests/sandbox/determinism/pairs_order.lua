-- Iterates pairs over string, integer, float and boolean keys; the result
-- (and any command scheduled per key) must be the same in every process.
return function(input)
  local phases = {}
  for _, k in ipairs{"explore", "plan", "code", "test", "fix", "document"} do
    phases[k] = #k
  end
  for i = 1, 40 do phases["k" .. (i * 7919 % 1009)] = i end
  phases[3] = "three"; phases[1.5] = "one and a half"; phases[true] = "yes"
  local out = {}
  for k, v in pairs(phases) do out[#out + 1] = tostring(k) .. "=" .. tostring(v) end
  local k, via_next = nil, {}
  repeat
    k = next(phases, k)
    if k ~= nil then via_next[#via_next + 1] = tostring(k) end
  until k == nil
  return table.concat(out, ",") .. "|" .. table.concat(via_next, ",")
end
