-- Sorts more than 100 records with many equal keys (Lua's own sort picks a
-- random pivot above 100 elements and is not stable).
return function(input)
  local items = {}
  for i = 1, 300 do items[i] = {prio = (i * 31) % 5, id = i} end
  table.sort(items, function(a, b) return a.prio < b.prio end)
  local ids = {}
  for i, it in ipairs(items) do ids[i] = it.prio .. ":" .. it.id end
  local words = {}
  for w in ("the quick brown fox jumps over the lazy dog again and again"):gmatch("%a+") do
    words[#words + 1] = w
  end
  table.sort(words)
  return table.concat(ids, ",") .. "|" .. table.concat(words, " ")
end
