-- Removes and adds keys while iterating (a snapshot is iterated; removed
-- keys are skipped), and counts with a table used as a set.
return function(input)
  local set = {}
  for i = 1, 30 do set["item" .. i] = true end
  local visited = {}
  for k in pairs(set) do
    visited[#visited + 1] = k
    set[k] = nil
    set["item" .. (#visited * 3)] = nil
  end
  return table.concat(visited, ",")
end
