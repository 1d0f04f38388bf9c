#!/usr/bin/env bash
# install.sh - `cmake --install BUILD --prefix P` gives a jorch that works on
# its own from any directory: P/bin/jorch runs a workflow and its activities
# in a directory outside the checkout (the Lua side of the API is embedded),
# and the installed orchestrator demo in P/share/jorch runs to completion.
. "$JORCH_SOURCE_DIR/tests/cli/lib.sh"
t_begin "install into a prefix, run from another directory"
: "${JORCH_BUILD_DIR:?JORCH_BUILD_DIR must name the build directory (ctest sets it)}"
P="$T_DIR/prefix"
if ! cmake --install "$JORCH_BUILD_DIR" --prefix "$P" >"$T_DIR/install.log" 2>&1; then
  fail "cmake --install" "$(tail -5 "$T_DIR/install.log")"
  t_end
fi
check "jorch installed in PREFIX/bin" test -x "$P/bin/jorch"
check "orchestrator installed in PREFIX/share/jorch" test -f "$P/share/jorch/workflows/orchestrate.lua"
check "demo agent keeps its execute bit" test -x "$P/share/jorch/examples/demo-agent"
check "editor annotations and .luarc.json installed with it" \
  test -f "$P/share/jorch/types/workflow.lua" -a -f "$P/share/jorch/.luarc.json"

# A project of the user's own, far from the checkout; env -i and a PATH of
# the prefix and the system only: nothing of the build or source tree is
# reachable.
W="$T_DIR/elsewhere/project"
mkdir -p "$W/workflows" "$W/activities"
cat >"$W/workflows/hello.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "1 minute"}
return function(name)
  workflow.sleep("2 seconds")
  return acts.greet(name)
end
LUA
printf 'return { greet = function(name) return "hello, " .. name end }\n' >"$W/activities/greetings.lua"
sys_path=/usr/local/bin:/usr/bin:/bin
out=$(cd "$W" && env -i PATH="$P/bin:$sys_path" HOME="$T_DIR/elsewhere" JORCH_HOME="$W/.jorch" jorch run --time-skip workflows/hello.lua ada 2>"$T_DIR/err")
expect_eq "installed jorch runs a workflow from the project directory" "$out" '"hello, ada"'
check "its store is in the project directory" test -d "$W/.jorch"

# The installed orchestrator demo, started from yet another directory.
D="$T_DIR/elsewhere/demo"
mkdir -p "$D"
# env -i: no JIRA_*/SLACK_* of a developer, and an empty jorch.yaml
printf '# empty\n' >"$D/jorch.yaml"
out=$(cd "$D" && env -i PATH="$P/bin:$sys_path" HOME="$T_DIR/elsewhere" JORCH_HOME="$D/.jorch" timeout 120 \
  jorch run --quiet --activities "$P/share/jorch/activities" "$P/share/jorch/workflows/orchestrate.lua" PROJ-123 \
  2>"$T_DIR/demo.err")
rc=$?
expect_eq "installed orchestrator demo exits 0" "$rc" 0
expect_contains "installed orchestrator demo completes all phases" "$out" '"status":"completed"'
expect_contains "demo repository copied from PREFIX/share/jorch/examples" "$out" "PROJ-123: document farewell()"
t_end
