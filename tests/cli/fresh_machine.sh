#!/usr/bin/env bash
# fresh_machine.sh - a fresh clone has everything the tests need: no file of
# the build or the tests reads outside the repository (the shared folder next
# to the checkout), every program a test, scripts/test or the demo runs is
# in the program table of scripts/setup, and every Python module a test
# imports is in Python's standard library, in scripts/setup's python_modules
# table (installed with pip) or a file next to the importing one.
#
# Programs are found by reading the files: the command words of the shell
# scripts (after ; | && ( $( then do ...), the argv[0] literals of the C
# tests, and the argv tables of the Lua activities. A word counts as a
# program when it names an executable on this machine's PATH and is not a
# shell builtin or a function the scripts define; a program missing from
# this machine is caught by the test that runs it.
. "$JORCH_SOURCE_DIR/tests/cli/lib.sh"
t_begin "fresh machine: nothing outside the repository, every program installed by scripts/setup"
cd "$JORCH_SOURCE_DIR" || exit 1
self=tests/cli/fresh_machine.sh

# --- 1. nothing reads outside the repository
outside=$(grep -rnE '\.\./shared|/shared/fixtures' CMakeLists.txt cmake scripts .ci tests fuzz bench \
  runtime lua workflows activities examples 2>/dev/null | grep -v "^$self:" || true)
expect_eq "no build, test or fuzz file names the shared folder outside the repository" "$outside" ""
check "the protojson fixtures are in the repository" \
  test "$(ls tests/histories/protojson/legacy/*.json 2>/dev/null | wc -l)" -eq 4

# --- 2. every program a test runs is in scripts/setup's table
table=$(bash -c 'eval "$(sed -n "/^programs=(/,/^)/p" scripts/setup)"; printf "%s\n" "${programs[@]%%:*}"')
check "scripts/setup has a program table" test -n "$table"

shell_files=$(find tests examples -name '*.sh' | sort; echo scripts/test scripts/cppcheck .ci/run examples/demo-agent)
# shellcheck disable=SC2086
words=$(python3 - $shell_files <<'PY'
import re, sys
# Command positions: the start of a line and what follows a separator or a
# keyword that starts a command; wrappers (env, timeout, xargs, ...) are
# programs themselves and are followed by the program they run.
SEP = re.compile(r'\$\(|`|&&|\|\||[;|&(){}!]|\b(?:then|do|else|elif|if|while|until)\b')
WRAP = {'env', 'timeout', 'exec', 'command', 'nohup', 'setsid', 'xargs', 'sudo', 'time', 'nice'}
WORD = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.+-]*$')
found = set()
for path in sys.argv[1:]:
    heredoc = None
    for line in open(path, errors='replace').read().split('\n'):
        if heredoc:
            if line.strip() == heredoc:
                heredoc = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m:
            heredoc = m.group(1)
        if line.lstrip().startswith('#'):
            continue
        for seg in SEP.split(line):
            toks = seg.split()
            k = 0
            while k < len(toks):
                t = toks[k]
                if re.match(r'^[A-Za-z_]\w*\+?=', t):      # VAR=value prefix
                    k += 1
                    continue
                if t in WRAP:                                # wrapper: skip its options
                    found.add(t)
                    k += 1
                    while k < len(toks) and re.match(r'^(-.*|[0-9.]+[smhd]?|[A-Za-z_]\w*=.*)$', toks[k]):
                        k += 1 + (toks[k] in ('-u', '-k', '-s', '-P', '-I', '-n'))
                    continue
                if WORD.match(t):
                    found.add(t)
                break
print('\n'.join(sorted(found)))
PY
)
# argv[0] of the programs the C tests start, and the Lua activities' argv tables.
c_words=$(grep -hoE '(char \*[a-z0-9_]+\[\] = \{|exec[lv]p?\()"[a-z0-9][a-z0-9_.+-]*"' tests/unit/*.c tests/unit/*.h |
  sed -E 's/.*"(.*)"/\1/')
c_sys=$(grep -hoE 'snprintf\(cmd, sizeof cmd, "[a-z0-9][a-z0-9_.+-]* ' tests/unit/*.c | sed -E 's/.*"//; s/ $//')
lua_words=$(grep -rhoE --include='*.lua' '\{ *"[a-z0-9][a-z0-9_.+-]*" *[,}]' activities tests examples |
  sed -E 's/\{ *"([^"]*)".*/\1/')
funcs=$(grep -hoE '^ *[A-Za-z_][A-Za-z0-9_]* *\(\) *\{' $shell_files tests/cli/lib.sh | sed -E 's/[ (){]//g')

# words of prose that the scan reads as commands: "(more than 1100)", and
# Python's open( in `python3 -c '...'` one-liners (xdg-utils, which Debian's
# chromium pulls in, installs an `open` program that no test runs)
prose=" more open "
missing=""
# a shell word may be a builtin or a function; argv[0] from C or Lua never is
for w in $(printf '%s\n' $words | sort -u); do
  case " $(echo $funcs) $prose" in *" $w "*) continue ;; esac
  [ "$(type -t "$w")" = file ] || [ -x "/usr/sbin/$w" ] || continue
  grep -qxF -- "$w" <<<"$table" || missing="$missing $w"
done
for w in $(printf '%s\n' $c_words $c_sys $lua_words | sort -u); do
  type -P "$w" >/dev/null || [ -x "/usr/sbin/$w" ] || continue
  grep -qxF -- "$w" <<<"$table" || missing="$missing $w"
done
expect_eq "every program the tests run is in scripts/setup's program table (add PROGRAM:PACKAGE there)" "$missing" ""
check "the scan finds the programs it must (lua5.4, jq, openssl, git, pkill)" \
  bash -c 'for p in lua5.4 jq openssl git pkill; do grep -qxF "$p" <<<"$1" || exit 1; done' _ \
  "$(printf '%s\n' $words $c_words $c_sys $lua_words)"

# --- 3. Python modules the tests import are in the standard library (or
# installed by scripts/setup from PyPI, or the test's own files)
py_files=$(find tests -name '*.py')
pip_modules=$(bash -c 'eval "$(sed -n "/^python_modules=(/,/^)/p" scripts/setup)"; printf "%s\n" "${python_modules[@]%%:*}"')
# shellcheck disable=SC2086
nonstd=$(PIP_MODULES="$pip_modules" python3 - $shell_files $py_files <<'PY'
import os, re, sys
std = set(sys.stdlib_module_names) | set(os.environ.get('PIP_MODULES', '').split())
bad = set()
for path in sys.argv[1:]:
    local = {f[:-3] for f in os.listdir(os.path.dirname(path) or '.') if f.endswith('.py')}
    text = open(path, errors='replace').read()
    for m in re.finditer(r'(?:^|[;\'"]\s*)\s*(?:import\s+([\w., ]+)|from\s+([\w.]+)\s+import)', text, re.M):
        names = m.group(1).split(',') if m.group(1) else [m.group(2)]
        for n in names:
            top = n.strip().split('.')[0].split(' ')[0]
            if top and top not in std and top not in local:
                bad.add('%s (%s)' % (top, path))
print(' '.join(sorted(bad)))
PY
)
expect_eq "Python modules the tests import are in the standard library or scripts/setup's python_modules" "$nonstd" ""
check "scripts/setup has a python_modules table" test -n "$pip_modules"

t_end
