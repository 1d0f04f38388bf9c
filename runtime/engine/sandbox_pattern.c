/*
 * sandbox_pattern.c - string.find, string.match, string.gmatch and
 * string.gsub for the sandbox, on a pattern matcher of jorch's own whose
 * every step is charged to the run's instruction budget and wall clock
 * (sandbox_charge). Lua's matcher runs in C, where the count hook never
 * fires, and backtracking makes some patterns take hours:
 * ("a"):rep(30000):find(".-.-.-.-b"). The behaviour is Lua 5.4's pattern
 * language (reference manual, section 6.4.1), results and errors included;
 * only the cost is now accounted for. Plain searches use memmem, which is
 * linear, where Lua's naive search is not.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

#include "engine/sandbox.h"

#define PM_MAX_CAPTURES 32 /* LUA_MAXCAPTURES */
#define PM_MAX_DEPTH 200   /* nesting of the matcher; beyond it "pattern too complex" */
#define PM_ESC '%'
#define PM_SPECIALS "^$*+?.([%-"
#define PM_STEP_BATCH 1024

/* The length field of a capture: a length, or one of these. */
enum { CAP_OPEN = -1, CAP_POSITION = -2 };

typedef struct pm {
    lua_State *L;
    const char *src, *src_end; /* the subject */
    const char *pat_end;
    int depth_left;
    int level; /* captures started */
    unsigned steps;
    struct {
        const char *init;
        ptrdiff_t len;
    } cap[PM_MAX_CAPTURES];
} pm;

static void pm_step(pm *m) {
    if (++m->steps == PM_STEP_BATCH) {
        m->steps = 0;
        sandbox_charge(m->L, PM_STEP_BATCH);
    }
}

static void pm_init(pm *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp) {
    m->L = L;
    m->src = s;
    m->src_end = s + ls;
    m->pat_end = p + lp;
    m->steps = 0;
    m->level = 0;
    m->depth_left = PM_MAX_DEPTH;
}

/* Before each attempt at a new subject position. */
static void pm_reset(pm *m) {
    m->level = 0;
    m->depth_left = PM_MAX_DEPTH;
}

/* ---------------------------------------------------- character classes */

/* c in the class %cl (cl a letter; an upper-case letter is the complement;
 * any other cl stands for itself). */
static bool pm_in_class(int c, int cl) {
    bool in;
    switch (tolower(cl)) {
    case 'a': in = isalpha(c); break;
    case 'c': in = iscntrl(c); break;
    case 'd': in = isdigit(c); break;
    case 'g': in = isgraph(c); break;
    case 'l': in = islower(c); break;
    case 'p': in = ispunct(c); break;
    case 's': in = isspace(c); break;
    case 'u': in = isupper(c); break;
    case 'w': in = isalnum(c); break;
    case 'x': in = isxdigit(c); break;
    case 'z': in = c == 0; break; /* deprecated, still accepted by Lua 5.4 */
    default: return cl == c;
    }
    return isupper(cl) ? !in : in;
}

/* c in the set [..] that starts at open ('[') and ends at close (']'). */
static bool pm_in_set(int c, const char *open, const char *close) {
    const char *p = open + 1;
    bool found = true; /* what a member gives: false for a complemented set */
    if (*p == '^') {
        found = false;
        p++;
    }
    for (; p < close; p++) {
        if (*p == PM_ESC) {
            p++;
            if (pm_in_class(c, (unsigned char)*p)) return found;
        } else if (p + 2 < close && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return found;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return found;
        }
    }
    return !found;
}

/* One past the single-character class that starts at p. */
static const char *pm_class_end(pm *m, const char *p) {
    char c = *p++;
    if (c == PM_ESC) {
        if (p >= m->pat_end) luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[') return p;
    if (p < m->pat_end && *p == '^') p++;
    /* The first character of a set is a member even when it is ']'. */
    for (;;) {
        if (p >= m->pat_end) luaL_error(m->L, "malformed pattern (missing ']')");
        if (*p++ == PM_ESC && p < m->pat_end) p++;
        if (p < m->pat_end && *p == ']') return p + 1;
    }
}

/* Does the subject character at s belong to the class p..ep? */
static bool pm_single(const pm *m, const char *s, const char *p, const char *ep) {
    if (s >= m->src_end) return false;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return true;
    case PM_ESC: return pm_in_class(c, (unsigned char)p[1]);
    case '[': return pm_in_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* -------------------------------------------------------------- matcher */

static const char *pm_match(pm *m, const char *s, const char *p);

/* class* (and class+ after its first character): the longest run first. */
static const char *pm_greedy(pm *m, const char *s, const char *p, const char *ep) {
    ptrdiff_t n = 0;
    while (pm_single(m, s + n, p, ep)) {
        n++;
        pm_step(m);
    }
    for (; n >= 0; n--) {
        const char *end = pm_match(m, s + n, ep + 1);
        if (end != NULL) return end;
    }
    return NULL;
}

/* class-: the shortest run first. */
static const char *pm_lazy(pm *m, const char *s, const char *p, const char *ep) {
    for (;;) {
        const char *end = pm_match(m, s, ep + 1);
        if (end != NULL) return end;
        if (!pm_single(m, s, p, ep)) return NULL;
        s++;
    }
}

static const char *pm_open_capture(pm *m, const char *s, const char *p, ptrdiff_t kind) {
    if (m->level >= PM_MAX_CAPTURES) luaL_error(m->L, "too many captures");
    m->cap[m->level].init = s;
    m->cap[m->level].len = kind;
    m->level++;
    const char *end = pm_match(m, s, p);
    if (end == NULL) m->level--; /* undo */
    return end;
}

static const char *pm_close_capture(pm *m, const char *s, const char *p) {
    int l = m->level - 1;
    while (l >= 0 && m->cap[l].len != CAP_OPEN) l--;
    if (l < 0) luaL_error(m->L, "invalid pattern capture");
    m->cap[l].len = s - m->cap[l].init;
    const char *end = pm_match(m, s, p);
    if (end == NULL) m->cap[l].len = CAP_OPEN; /* undo */
    return end;
}

/* %bxy at s, with p at x. */
static const char *pm_balance(pm *m, const char *s, const char *p) {
    if (p + 1 >= m->pat_end) luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != p[0]) return NULL;
    int open = 1;
    while (++s < m->src_end) {
        pm_step(m);
        if (*s == p[1]) {
            if (--open == 0) return s + 1;
        } else if (*s == p[0]) {
            open++;
        }
    }
    return NULL;
}

/* %1 .. %9 at s: the text of an earlier, closed capture again. */
static const char *pm_backref(pm *m, const char *s, int digit) {
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->cap[l].len == CAP_OPEN)
        luaL_error(m->L, "invalid capture index %%%d", l + 1);
    if (m->cap[l].len == CAP_POSITION) return NULL; /* has no text */
    size_t len = (size_t)m->cap[l].len;
    if ((size_t)(m->src_end - s) >= len && memcmp(m->cap[l].init, s, len) == 0) return s + len;
    return NULL;
}

/* Matches the pattern from p against the subject from s: the end of the
 * match, or NULL. */
static const char *pm_match(pm *m, const char *s, const char *p) {
    if (m->depth_left-- == 0) luaL_error(m->L, "pattern too complex");
    pm_step(m);
    while (s != NULL && p < m->pat_end) {
        switch (*p) {
        case '(':
            if (p + 1 < m->pat_end && p[1] == ')')
                s = pm_open_capture(m, s, p + 2, CAP_POSITION);
            else
                s = pm_open_capture(m, s, p + 1, CAP_OPEN);
            goto out;
        case ')':
            s = pm_close_capture(m, s, p + 1);
            goto out;
        case '$':
            if (p + 1 == m->pat_end) { /* only the last character anchors */
                if (s != m->src_end) s = NULL;
                goto out;
            }
            break;
        case PM_ESC:
            if (p + 1 >= m->pat_end) break; /* pm_class_end reports it */
            if (p[1] == 'b') {
                s = pm_balance(m, s, p + 2);
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (p >= m->pat_end || *p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = pm_class_end(m, p);
                int before = s == m->src ? '\0' : (unsigned char)s[-1];
                int at = s < m->src_end ? (unsigned char)*s : '\0';
                if (pm_in_set(before, p, ep - 1) || !pm_in_set(at, p, ep - 1)) s = NULL;
                p = ep;
                continue;
            }
            if (isdigit((unsigned char)p[1])) {
                s = pm_backref(m, s, (unsigned char)p[1]);
                p += 2;
                continue;
            }
            break;
        default:
            break;
        }
        /* A single-character class, perhaps with a repetition suffix. */
        const char *ep = pm_class_end(m, p);
        char suffix = ep < m->pat_end ? *ep : '\0';
        if (!pm_single(m, s, p, ep)) {
            if (suffix == '*' || suffix == '?' || suffix == '-') { /* zero times is fine */
                p = ep + 1;
                continue;
            }
            s = NULL;
            goto out;
        }
        switch (suffix) {
        case '?': {
            const char *end = pm_match(m, s + 1, ep + 1);
            if (end != NULL) {
                s = end;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        case '+':
            s = pm_greedy(m, s + 1, p, ep);
            goto out;
        case '*':
            s = pm_greedy(m, s, p, ep);
            goto out;
        case '-':
            s = pm_lazy(m, s, p, ep);
            goto out;
        default:
            s++;
            p = ep;
            continue;
        }
    }
out:
    m->depth_left++;
    return s;
}

/* ------------------------------------------------------------- captures */

/* Pushes capture i; with no captures at all, capture 0 is the whole match. */
static void pm_push_capture(pm *m, int i, const char *s, const char *e) {
    if (i >= m->level) {
        if (i != 0) luaL_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_OPEN) luaL_error(m->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].init - m->src) + 1);
    else
        lua_pushlstring(m->L, m->cap[i].init, (size_t)len);
}

/* Pushes every capture (the whole match if there are none and s is set). */
static int pm_push_captures(pm *m, const char *s, const char *e) {
    int n = (m->level == 0 && s != NULL) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++) pm_push_capture(m, i, s, e);
    return n;
}

/* ------------------------------------------------------ the functions */

/* A 1-based start position as Lua's string functions read one. */
static size_t pm_start(lua_Integer pos, size_t len) {
    if (pos > 0) return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len) return 1;
    return len + (size_t)(pos + 1);
}

static bool pm_is_plain(const char *p, size_t lp) {
    for (size_t i = 0; i < lp; i++)
        if (p[i] != '\0' && strchr(PM_SPECIALS, p[i]) != NULL) return false;
    return true;
}

static int pm_find_or_match(lua_State *L, bool find) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = pm_start(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || pm_is_plain(p, lp))) {
        const char *hit = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
        if (hit != NULL) {
            lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    bool anchored = lp > 0 && *p == '^';
    if (anchored) {
        p++;
        lp--;
    }
    pm m;
    pm_init(&m, L, s, ls, p, lp);
    const char *at = s + init;
    do {
        pm_reset(&m);
        const char *end = pm_match(&m, at, p);
        if (end != NULL) {
            if (!find) return pm_push_captures(&m, at, end);
            lua_pushinteger(L, (lua_Integer)(at - s) + 1);
            lua_pushinteger(L, (lua_Integer)(end - s));
            return pm_push_captures(&m, NULL, NULL) + 2;
        }
    } while (at++ < m.src_end && !anchored);
    luaL_pushfail(L);
    return 1;
}

static int pm_find(lua_State *L) { return pm_find_or_match(L, true); }
static int pm_match_fn(lua_State *L) { return pm_find_or_match(L, false); }

typedef struct pm_iter {
    pm m;
    const char *pat;
    const char *at;   /* where the next search starts */
    const char *last; /* end of the last match: an empty match there is skipped */
} pm_iter;

/* The gmatch iterator; upvalues: subject, pattern (kept alive), state. */
static int pm_gmatch_next(lua_State *L) {
    pm_iter *it = lua_touserdata(L, lua_upvalueindex(3));
    it->m.L = L; /* the iterator may run in another coroutine */
    for (const char *at = it->at; at <= it->m.src_end; at++) {
        pm_reset(&it->m);
        const char *end = pm_match(&it->m, at, it->pat);
        if (end != NULL && end != it->last) {
            it->at = it->last = end;
            return pm_push_captures(&it->m, at, end);
        }
    }
    return 0;
}

static int pm_gmatch(lua_State *L) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = pm_start(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) init = ls + 1; /* past the end: no matches */
    lua_settop(L, 2);
    pm_iter *it = lua_newuserdatauv(L, sizeof *it, 0);
    pm_init(&it->m, L, s, ls, p, lp);
    it->pat = p;
    it->at = s + init;
    it->last = NULL;
    lua_pushcclosure(L, pm_gmatch_next, 3);
    return 1;
}

/* gsub with a replacement string: %0 the match, %1..%9 captures, %% '%'. */
static void pm_add_template(pm *m, luaL_Buffer *b, const char *s, const char *e) {
    lua_State *L = m->L;
    size_t len;
    const char *r = lua_tolstring(L, 3, &len);
    const char *r_end = r + len;
    while (r < r_end) {
        const char *esc = memchr(r, PM_ESC, (size_t)(r_end - r));
        if (esc == NULL) {
            luaL_addlstring(b, r, (size_t)(r_end - r));
            return;
        }
        luaL_addlstring(b, r, (size_t)(esc - r));
        const char *c = esc + 1;
        if (c < r_end && *c == PM_ESC) {
            luaL_addchar(b, PM_ESC);
        } else if (c < r_end && *c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (c < r_end && isdigit((unsigned char)*c)) {
            pm_push_capture(m, *c - '1', s, e);
            luaL_tolstring(L, -1, NULL); /* a position capture is a number */
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", PM_ESC);
        }
        r = c + 1;
        pm_step(m);
    }
}

/* Adds the replacement of the match s..e; false when the match is kept. */
static bool pm_add_replacement(pm *m, luaL_Buffer *b, const char *s, const char *e, int kind) {
    lua_State *L = m->L;
    if (kind == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = pm_push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (kind == LUA_TTABLE) {
        pm_push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        pm_add_template(m, b, s, e);
        return true;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return true;
}

static int pm_gsub(lua_State *L) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int kind = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
                            kind == LUA_TTABLE,
                     3, "string/function/table");
    bool anchored = lp > 0 && *p == '^';
    if (anchored) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    pm m;
    pm_init(&m, L, s, ls, p, lp);
    const char *at = s, *last = NULL;
    lua_Integer n = 0;
    bool changed = false;
    while (n < max) {
        pm_reset(&m);
        const char *end = pm_match(&m, at, p);
        if (end != NULL && end != last) {
            n++;
            if (pm_add_replacement(&m, &b, at, end, kind)) changed = true;
            at = last = end;
        } else if (at < m.src_end) {
            luaL_addchar(&b, *at++);
        } else {
            break;
        }
        if (anchored) break;
    }
    if (!changed) {
        lua_pushvalue(L, 1); /* the subject itself */
    } else {
        luaL_addlstring(&b, at, (size_t)(m.src_end - at));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

void sandbox_set_pattern_functions(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"find", pm_find}, {"match", pm_match_fn}, {"gmatch", pm_gmatch}, {"gsub", pm_gsub},
        {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
