-- math.random is seeded by the run: the same sequence on every replay.
return function(input)
  local out = {}
  for i = 1, 10 do out[#out + 1] = math.random(1, 100) end
  out[#out + 1] = string.format("%.17g", math.random())
  out[#out + 1] = math.random(0)
  local deck = {}
  for i = 1, 20 do deck[i] = i end
  for i = #deck, 2, -1 do
    local j = math.random(i)
    deck[i], deck[j] = deck[j], deck[i]
  end
  return table.concat(out, ",") .. "|" .. table.concat(deck, ",")
end
