#!/usr/bin/env bash
# annotations.sh - the editor annotations in types/ (LuaCATS, read by
# lua-language-server through .luarc.json) describe exactly the API the
# runtime exposes. The real API is listed at run time through the binary: a
# workflow (tests/editor/api_names.lua) walks its globals, `workflow`, a
# future's methods and workflow.info(); an activity (tests/editor/activities/
# api.lua) walks its globals, `activity`, `jorch` and activity.info(). Both
# lists are compared with the names declared in the annotation files: every
# function is annotated (with a description), and nothing else is.
. "$JORCH_SOURCE_DIR/tests/cli/lib.sh"
t_begin "editor annotations match the runtime API"
cd "$JORCH_SOURCE_DIR" || exit 1
E=tests/editor
# a developer's ./jorch.yaml must not change what the activity lister sees
printf '# empty\n' >"$T_DIR/jorch.yaml"
export JORCH_CONFIG="$T_DIR/jorch.yaml"

for f in types/workflow.lua types/activity.lua types/jorch.lua; do
  check "$f is valid Lua" lua5.4 -e "assert(loadfile(arg[1]))" "$f"
done

run_jorch run --time-skip --id api-names "$E/api_names.lua"
expect_eq "the workflow lister runs" "$RC" 0
wf_runtime=$OUT
run_jorch activity api.names --activities "$E/activities" --timeout 30s
expect_eq "the activity lister runs" "$RC" 0
act_runtime=$OUT

# compare SIDE RUNTIME-JSON ANNOTATION-FILE...: prints the differences
compare() {
  python3 - "$@" <<'PY'
import json, re, sys
side, runtime, files = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    rt = set(json.loads(runtime))
except ValueError:
    print("%s: the lister printed no JSON list: %r" % (side, runtime[:200]))
    sys.exit(0)
# metamethods of the future metatable (Future.__index = Future) are not API
rt = {n for n in rt if not re.match(r'^[\w.]+:__', n)}
declared, optional, undocumented = set(), set(), []
info_class = {"workflow": "jorch.WorkflowInfo", "activity": "jorch.ActivityInfo"}[side]
for path in files:
    lines = open(path).read().split("\n")
    cls = None
    for i, line in enumerate(lines):
        m = re.match(r'^---@meta\s+([\w.]+)', line)
        if m:
            declared.add("module " + m.group(1))   # require(NAME) finds this file
            continue
        m = re.match(r'^---@class\s+([\w.]+)', line)
        if m:
            cls = m.group(1)
            continue
        m = re.match(r'^---@field\s+(\w+)(\??)\s', line)
        if m and cls == info_class:
            declared.add("info." + m.group(1))
            if m.group(2):
                optional.add("info." + m.group(1))
            continue
        if not line.startswith("---"):
            cls = None
        name = None
        m = re.match(r'^function\s+([\w.:]+)\s*\(', line)
        if m:
            name = m.group(1)
        m = re.match(r'^([\w.]+)\s*=\s*\{\s*\}\s*$', line)
        if m:
            name = m.group(1)
            name = ("global " + name) if "." not in name else name + "=table"
        if name is None:
            continue
        declared.add(name)
        # the description: a --- line that is not an @tag, right above
        j, doc = i - 1, False
        while j >= 0 and lines[j].startswith("---"):
            if not lines[j].startswith("---@"):
                doc = True
            j -= 1
        if not doc:
            undocumented.append("%s (%s:%d)" % (name, path, i + 1))
for n in sorted(rt - declared):
    print("%s: exposed by the runtime but not annotated: %s" % (side, n))
for n in sorted(declared - rt - optional):
    print("%s: annotated but not exposed by the runtime: %s" % (side, n))
for n in undocumented:
    print("%s: annotated without a description: %s" % (side, n))
PY
}

diff_wf=$(compare workflow "$wf_runtime" types/workflow.lua)
expect_eq "workflow API (globals, workflow.*, future methods, workflow.info fields) = types/workflow.lua" "$diff_wf" ""
diff_act=$(compare activity "$act_runtime" types/activity.lua types/jorch.lua)
expect_eq "activity API (globals, activity.*, jorch.*, activity.info fields) = types/activity.lua + types/jorch.lua" \
  "$diff_act" ""
# The lists are real: a known name of each side is in them.
expect_contains "the workflow list names workflow.wait_condition" "$wf_runtime" '"workflow.wait_condition"'
expect_contains "the activity list names jorch.http.request" "$act_runtime" '"jorch.http.request"'

# The editor configuration: lua-language-server reads .luarc.json at the root.
luarc=$(python3 -c '
import json, sys
c = json.load(open(".luarc.json"))
lib = c.get("workspace.library") or c.get("workspace", {}).get("library") or []
glob = c.get("diagnostics.globals") or c.get("diagnostics", {}).get("globals") or []
ver = c.get("runtime.version") or c.get("runtime", {}).get("version")
print(" ".join(sorted(lib)), "|", " ".join(sorted(glob)), "|", ver)' 2>&1)
expect_eq ".luarc.json: library types/, globals, Lua 5.4" "$luarc" "types | activity jorch workflow | Lua 5.4"
t_end
