/*
 * test_payload.c - Lua <-> canonical JSON <-> Payload: round trips, the
 * canonical form, every refusal with its path, limits, payload metadata and
 * encodings, and allocation failures inside Lua (no leaks, no crashes).
 */
#include "common/common.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "test.h"

typedef Temporal__Api__Common__V1__Payload Payload;
typedef Temporal__Api__Common__V1__Payloads Payloads;

static lua_State *new_state(void) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    return L;
}

/* Run Lua code that must succeed. */
static void run(lua_State *L, const char *code) {
    if (luaL_dostring(L, code) != LUA_OK) {
        fprintf(stderr, "Lua error: %s\n", lua_tostring(L, -1));
        abort();
    }
}

/* Push the value of a Lua expression. */
static void eval(lua_State *L, const char *expr) {
    int top = lua_gettop(L);
    lua_pushfstring(L, "return %s", expr);
    run(L, lua_tostring(L, -1));
    lua_remove(L, top + 1);
    lua_settop(L, top + 1);
}

/* Encode the value of expr; NULL (and err filled) on failure. */
static char *json_of(lua_State *L, const char *expr, const payload_limits *lim, jerr *err) {
    int top = lua_gettop(L);
    eval(L, expr);
    jbuf b;
    jbuf_init(&b, 0);
    int rc = payload_lua_to_json(L, -1, lim, &b, err);
    CHECK_INT(lua_gettop(L), top + 1);
    lua_settop(L, top);
    if (rc != 0) {
        CHECK_INT(b.len, 0);
        jbuf_free(&b);
        return NULL;
    }
    return jbuf_take(&b, NULL);
}

/* Decode json into Lua and encode the result again. */
static char *relua(lua_State *L, const char *json, const payload_limits *lim, jerr *err) {
    int top = lua_gettop(L);
    if (payload_json_to_lua(L, json, strlen(json), lim, err) != 0) {
        CHECK_INT(lua_gettop(L), top);
        return NULL;
    }
    CHECK_INT(lua_gettop(L), top + 1);
    jbuf b;
    jbuf_init(&b, 0);
    int rc = payload_lua_to_json(L, -1, lim, &b, err);
    lua_settop(L, top);
    if (rc != 0) {
        jbuf_free(&b);
        return NULL;
    }
    return jbuf_take(&b, NULL);
}

/* Evaluate a Lua condition on the globals. */
static bool truthy(lua_State *L, const char *cond) {
    eval(L, cond);
    bool ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!ok) fprintf(stderr, "not true: %s\n", cond);
    return ok;
}

/* Decode json into the global v, then evaluate a Lua condition. */
static bool decoded(lua_State *L, const char *json, const char *cond) {
    jerr err = {0};
    if (payload_json_to_lua(L, json, strlen(json), NULL, &err) != 0) {
        fprintf(stderr, "decode %s: %s\n", json, err.msg);
        return false;
    }
    lua_setglobal(L, "v");
    return truthy(L, cond);
}

#define CHECK_JSON(L, expr, want) do { \
    jerr e_ = {0}; \
    char *j_ = json_of(L, expr, NULL, &e_); \
    if (!j_) fprintf(stderr, "  %s: %s\n", expr, e_.msg); \
    CHECK_STREQ(j_, want); \
    free(j_); \
    } while (0)

#define CHECK_JSON_ERR(L, expr, lim, want) do { \
    jerr e_ = {0}; \
    char *j_ = json_of(L, expr, lim, &e_); \
    CHECK_MSG(j_ == NULL, "%s encoded to %s", expr, j_); \
    CHECK_CONTAINS(e_.msg, want); \
    CHECK(e_.code != JERR_OK); \
    free(j_); \
    } while (0)

#define CHECK_DECODE_ERR(L, json, lim, want) do { \
    jerr e_ = {0}; \
    int top_ = lua_gettop(L); \
    CHECK(payload_json_to_lua(L, json, strlen(json), lim, &e_) != 0); \
    CHECK_INT(lua_gettop(L), top_); \
    CHECK_CONTAINS(e_.msg, want); \
    CHECK_INT(e_.code, JERR_USAGE); \
    } while (0)

/* ---------------------------------------------------------------- tests */

static void test_scalars(void) {
    lua_State *L = new_state();
    CHECK_JSON(L, "nil", "null");
    CHECK_JSON(L, "true", "true");
    CHECK_JSON(L, "false", "false");
    CHECK_JSON(L, "42", "42");
    CHECK_JSON(L, "-7", "-7");
    CHECK_JSON(L, "math.maxinteger", "9223372036854775807");
    CHECK_JSON(L, "math.mininteger", "-9223372036854775808");
    CHECK_JSON(L, "'hi'", "\"hi\"");
    CHECK_JSON(L, "''", "\"\"");
    lua_close(L);
}

static void test_floats(void) {
    lua_State *L = new_state();
    CHECK_JSON(L, "0.1", "0.1");
    CHECK_JSON(L, "1.5", "1.5");
    CHECK_JSON(L, "1/3", "0.3333333333333333");
    CHECK_JSON(L, "2.0", "2.0");
    CHECK_JSON(L, "-0.0", "-0.0");
    CHECK_JSON(L, "1e300", "1e+300");
    CHECK_JSON(L, "1e21", "1e+21");
    CHECK_JSON(L, "123456789.125", "123456789.125");
    CHECK_JSON(L, "2.0^53", "9007199254740992.0");
    CHECK_JSON(L, "0.1 + 0.2", "0.30000000000000004");
    /* floats come back as floats, with the same value */
    CHECK(decoded(L, "2.0", "math.type(v) == 'float' and v == 2"));
    CHECK(decoded(L, "-0.0", "math.type(v) == 'float' and 1/v == -math.huge"));
    CHECK(decoded(L, "0.30000000000000004", "v == 0.1 + 0.2"));
    CHECK(decoded(L, "1e2", "math.type(v) == 'float' and v == 100"));
    CHECK(decoded(L, "1E-2", "v == 0.01"));
    CHECK(decoded(L, "1e-400", "math.type(v) == 'float' and v == 0"));
    lua_close(L);
}

static void test_int64_exact(void) {
    lua_State *L = new_state();
    CHECK(decoded(L, "9007199254740993", "math.type(v) == 'integer' and v == 9007199254740993"));
    CHECK(decoded(L, "9223372036854775807", "v == math.maxinteger"));
    CHECK(decoded(L, "-9223372036854775808", "v == math.mininteger"));
    CHECK(decoded(L, "-0", "math.type(v) == 'integer' and v == 0"));
    CHECK(decoded(L, "9223372036854775808", "math.type(v) == 'float' and v == 2^63"));
    CHECK(decoded(L, "-9223372036854775809", "math.type(v) == 'float' and v == -2^63"));
    CHECK(decoded(L, "{\"a\":[1234567890123456789]}",
                  "math.type(v.a[1]) == 'integer' and v.a[1] == 1234567890123456789"));
    jerr err = {0};
    char *j = relua(L, "[9223372036854775807,-9223372036854775808,18446744073709551616]", NULL, &err);
    CHECK_STREQ(j, "[9223372036854775807,-9223372036854775808,1.8446744073709552e+19]");
    free(j);
    lua_close(L);
}

static void test_strings_and_escapes(void) {
    lua_State *L = new_state();
    CHECK_JSON(L, "'a\"b\\\\c\\n\\t\\r\\b\\f\\1\\31\\127/'",
               "\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f\x7f/\"");
    CHECK_JSON(L, "'a\\0b'", "\"a\\u0000b\"");
    CHECK_JSON(L, "'h\\u{e9}llo \\u{2713} \\u{1F600}'", "\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\"");
    CHECK(decoded(L, "\"\\u00e9\\ud83d\\ude00\\n\\/\\\"\\\\\"", "v == '\\u{e9}\\u{1F600}\\n/\"\\\\'"));
    CHECK(decoded(L, "\"a\\u0000b\"", "#v == 3 and v == 'a\\0b'"));
    CHECK(decoded(L, "\"\\uD834\\uDD1E\"", "v == '\\u{1D11E}'"));
    CHECK(decoded(L, "\"\xe2\x82\xac\"", "v == '\\u{20AC}'"));
    jerr err = {0};
    char *j = relua(L, "\"\\u0041\\u00e9\\u2028\\t\"", NULL, &err);
    CHECK_STREQ(j, "\"A\xc3\xa9\xe2\x80\xa8\\t\"");
    free(j);
    lua_close(L);
}

static void test_tables(void) {
    lua_State *L = new_state();
    CHECK_JSON(L, "{1, 2, 'x'}", "[1,2,\"x\"]");
    CHECK_JSON(L, "{b = 1, a = {true, false}, c = {d = {e = 'f'}}}",
               "{\"a\":[true,false],\"b\":1,\"c\":{\"d\":{\"e\":\"f\"}}}");
    CHECK_JSON(L, "{{}, {{}}, {x = {}}}", "[{},[{}],{\"x\":{}}]");
    CHECK_JSON(L, "{['1'] = 'string key', ['with space'] = 0}", "{\"1\":\"string key\",\"with space\":0}");
    /* the same table twice (not a cycle) is fine */
    CHECK_JSON(L, "(function() local s = {1} return {a = s, b = s} end)()", "{\"a\":[1],\"b\":[1]}");
    /* arrays built by hand, with the hash part */
    CHECK_JSON(L, "(function() local t = {} t[3] = 3 t[1] = 1 t[2] = 2 return t end)()", "[1,2,3]");
    /* float keys with integral values are integer keys in Lua 5.4 */
    CHECK_JSON(L, "{[1.0] = 'a', [2] = 'b'}", "[\"a\",\"b\"]");
    lua_close(L);
}

static void test_empty_table_and_array_marker(void) {
    lua_State *L = new_state();
    CHECK_JSON(L, "{}", "{}");
    CHECK_JSON(L, "setmetatable({}, {__jsontype = 'array'})", "[]");
    CHECK_JSON(L, "setmetatable({}, {__jsontype = 'object'})", "{}");
    /* raw access: an __index on the metatable does not count */
    CHECK_JSON(L, "setmetatable({}, setmetatable({}, {__index = {__jsontype = 'array'}}))", "{}");
    CHECK_JSON(L, "setmetatable({}, {__jsontype = 'array', __metatable = 'locked'})", "[]");
    /* decoded arrays carry the marker, so [] stays [] */
    CHECK(decoded(L, "[]", "type(v) == 'table' and next(v) == nil and getmetatable(v).__jsontype == 'array'"));
    CHECK(decoded(L, "{}", "type(v) == 'table' and next(v) == nil and getmetatable(v) == nil"));
    jerr err = {0};
    char *j = relua(L, "{\"a\":[],\"b\":{},\"c\":[[]]}", NULL, &err);
    CHECK_STREQ(j, "{\"a\":[],\"b\":{},\"c\":[[]]}");
    free(j);
    lua_close(L);
}

static void test_no_metamethods_run(void) {
    lua_State *L = new_state();
    run(L, "calls = 0\n"
           "local function bump() calls = calls + 1 error('metamethod ran') end\n"
           "local mt = {__index = bump, __newindex = bump, __pairs = bump, __len = bump,\n"
           "            __eq = bump, __lt = bump, __le = bump, __tostring = bump, __call = bump}\n"
           "obj = setmetatable({b = 1, a = setmetatable({1, 2}, mt)}, mt)\n"
           "empty = setmetatable({}, mt)\n");
    CHECK_JSON(L, "obj", "{\"a\":[1,2],\"b\":1}");
    CHECK_JSON(L, "empty", "{}");
    CHECK(truthy(L, "calls == 0"));
    lua_close(L);
}

static void test_canonical_key_order(void) {
    lua_State *L = new_state();
    const char *want = "{\"\":0,\"B\":1,\"a\":1,\"aa\":2,\"b\":1,\"z\":1,\"\xc3\xa9\":2}";
    CHECK_JSON(L, "(function() local t = {} for _, k in ipairs({'b','a','B','aa','','\\u{e9}','z'}) do t[k] = #k end return t end)()", want);
    CHECK_JSON(L, "(function() local t = {} for _, k in ipairs({'z','\\u{e9}','','aa','B','a','b'}) do t[k] = #k end return t end)()", want);
    /* many keys, different insertion orders and table histories, same bytes */
    run(L, "function build(order, churn)\n"
           "  local t = {}\n"
           "  if churn then for i = 1, 500 do t['tmp' .. i] = i end end\n"
           "  for i = 1, 200 do local k = order and i or (201 - i) t['key' .. k] = {k, 'v' .. k} end\n"
           "  if churn then for i = 1, 500 do t['tmp' .. i] = nil end end\n"
           "  return t\n"
           "end\n");
    jerr err = {0};
    char *a = json_of(L, "build(true, false)", NULL, &err);
    char *b = json_of(L, "build(false, false)", NULL, &err);
    char *c = json_of(L, "build(false, true)", NULL, &err);
    CHECK(a != NULL);
    CHECK_STREQ(a, b);
    CHECK_STREQ(a, c);
    CHECK(a && strncmp(a, "{\"key1\":[1,\"v1\"],\"key10\":[10,\"v10\"],\"key100\":", 45) == 0);
    free(a);
    free(b);
    free(c);
    /* and JSON text in any key order and spacing comes back the same */
    char *x = relua(L, "{\"b\":1,\"a\":{\"y\":2,\"x\":1}}", NULL, &err);
    char *y = relua(L, " { \"a\" : { \"x\" : 1 , \"y\" : 2 } ,\n\t\"b\" : 1 } ", NULL, &err);
    CHECK_STREQ(x, "{\"a\":{\"x\":1,\"y\":2},\"b\":1}");
    CHECK_STREQ(x, y);
    free(x);
    free(y);
    lua_close(L);
}

static void test_round_trip_fixed_points(void) {
    static const char *const docs[] = {
        "null", "true", "0", "-1", "1.5", "[1,2,3]", "{\"a\":{\"b\":[1,{\"c\":null}]}}",
        "[1,null]", "[null]", "{\"a\":null}", "{\"a\":1,\"a\":2}", "\"\\u0000\\u001f\"",
        "[1e400]", "[1E+2,0.5e-3,-0.0,123456789012345678901234567890]",
        "{\"\\ud83d\\ude00\":\"\xf0\x9f\x98\x80\"}", "[[[[[]]]]]", "{\"x\":[{},[],\"\"]}",
    };
    lua_State *L = new_state();
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        jerr err = {0};
        char *once = relua(L, docs[i], NULL, &err);
        if (!once) continue; /* [1e400] is refused; checked elsewhere */
        char *twice = relua(L, once, NULL, &err);
        CHECK_MSG(twice != NULL && strcmp(twice, once) == 0, "%s -> %s -> %s", docs[i], once,
                  twice != NULL ? twice : err.msg);
        free(once);
        free(twice);
    }
    jerr err = {0};
    char *j = relua(L, "[1,null]", NULL, &err);
    CHECK_STREQ(j, "[1]");
    free(j);
    j = relua(L, "{\"a\":null,\"b\":[null]}", NULL, &err);
    CHECK_STREQ(j, "{\"b\":[]}");
    free(j);
    j = relua(L, "{\"a\":1,\"a\":2}", NULL, &err);
    CHECK_STREQ(j, "{\"a\":2}");
    free(j);
    CHECK(decoded(L, "null", "v == nil"));
    CHECK(decoded(L, " \t\n[ 1 , 2 ]\r\n", "#v == 2 and v[2] == 2"));
    lua_close(L);
}

static void test_encode_errors(void) {
    lua_State *L = new_state();
    CHECK_JSON_ERR(L, "{a = {1, 2, {b = print}}}", NULL,
                   "$.a[2].b: a function cannot be converted to JSON");
    CHECK_JSON_ERR(L, "{f = io.stdout}", NULL, "$.f: a userdata cannot be converted to JSON");
    CHECK_JSON_ERR(L, "{coroutine.create(print)}", NULL, "$[0]: a thread cannot be converted to JSON");
    CHECK_JSON_ERR(L, "{['odd key'] = {x = print}}", NULL, "$[\"odd key\"].x: a function");
    CHECK_JSON_ERR(L, "(function() local t = {a = {}} t.a.b = t return t end)()", NULL,
                   "$.a.b: the table contains itself (it is $ again)");
    CHECK_JSON_ERR(L, "(function() local t = {x = {1}} t.x[2] = t.x return t end)()", NULL,
                   "$.x[1]: the table contains itself (it is $.x again)");
    CHECK_JSON_ERR(L, "{x = 0/0}", NULL, "$.x: NaN cannot be converted to JSON");
    CHECK_JSON_ERR(L, "{x = {1/0}}", NULL, "$.x[0]: inf cannot be converted to JSON");
    CHECK_JSON_ERR(L, "-1/0", NULL, "$: -inf cannot be converted to JSON");
    CHECK_JSON_ERR(L, "{s = 'ok\\255'}", NULL, "$.s: the string is not valid UTF-8 (byte 0xff at offset 2)");
    CHECK_JSON_ERR(L, "'\\xC0\\x80'", NULL, "not valid UTF-8"); /* overlong */
    CHECK_JSON_ERR(L, "'\\xED\\xA0\\x80'", NULL, "not valid UTF-8"); /* surrogate */
    CHECK_JSON_ERR(L, "'\\xF4\\x90\\x80\\x80'", NULL, "not valid UTF-8"); /* > U+10FFFF */
    CHECK_JSON_ERR(L, "'\\xE2\\x82'", NULL, "not valid UTF-8"); /* truncated */
    CHECK_JSON_ERR(L, "{t = {['\\255'] = 1}}", NULL, "$.t: an object key is not valid UTF-8");
    CHECK_JSON_ERR(L, "{a = {1, nil, 3}}", NULL,
                   "$.a: the array is sparse: 2 items but the largest key is 3");
    CHECK_JSON_ERR(L, "{[2] = 'x'}", NULL, "$: the array is sparse");
    CHECK_JSON_ERR(L, "{[0] = 'x', 'y'}", NULL, "$: the table has integer key 0; JSON arrays need keys 1..n");
    CHECK_JSON_ERR(L, "{[-5] = 1}", NULL, "integer key -5");
    CHECK_JSON_ERR(L, "{x = {1, 2, a = 3}}", NULL,
                   "$.x: the table mixes array items (integer keys) and object fields (string keys)");
    CHECK_JSON_ERR(L, "{[1.5] = 1}", NULL, "$: table key 1.5 is not an integer or a string");
    CHECK_JSON_ERR(L, "{[true] = 1}", NULL, "$: table key true (a boolean)");
    CHECK_JSON_ERR(L, "{[{}] = 1}", NULL, "$: a table key of type table");
    CHECK_JSON_ERR(L, "{[print] = 1}", NULL, "a table key of type function");
    lua_close(L);
}

static void test_light_userdata(void) {
    lua_State *L = new_state();
    int x = 0;
    lua_pushlightuserdata(L, &x);
    jbuf b;
    jbuf_init(&b, 0);
    jerr err = {0};
    CHECK(payload_lua_to_json(L, -1, NULL, &b, &err) != 0);
    CHECK_STREQ(err.msg, "$: a userdata cannot be converted to JSON (only nil, booleans, numbers, "
                         "strings and tables can)");
    CHECK_INT(err.code, JERR_FAILED);
    jbuf_free(&b);
    lua_close(L);
}

static void test_depth_limits(void) {
    lua_State *L = new_state();
    run(L, "function nest(n) local t = {} for i = 2, n do t = {t} end return t end");
    jerr err = {0};
    char *j = json_of(L, "nest(64)", NULL, &err);
    CHECK(j != NULL && strlen(j) == 128);
    free(j);
    CHECK_JSON_ERR(L, "nest(65)", NULL, "$[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]");
    CHECK_JSON_ERR(L, "nest(65)", NULL, "tables are nested more than 64 levels deep (max_depth)");
    payload_limits three = {.max_depth = 3, .max_bytes = 1000};
    CHECK_JSON(L, "{{1}}", "[[1]]");
    j = json_of(L, "{a = {b = {}}}", &three, &err);
    CHECK_STREQ(j, "{\"a\":{\"b\":{}}}");
    free(j);
    CHECK_JSON_ERR(L, "{a = {b = {c = {}}}}", &three, "$.a.b.c: tables are nested more than 3 levels deep");
    /* the cap protects the C stack whatever the configuration says */
    payload_limits huge = {.max_depth = 1000000, .max_bytes = 0};
    CHECK_JSON_ERR(L, "nest(1001)", &huge, "more than 1000 levels");

    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    CHECK_DECODE_ERR(L, deep, NULL, "JSON nested more than 64 levels deep (max_depth)");
    memset(deep + 64, ']', 64); /* 64 levels are fine */
    deep[128] = '\0';
    j = relua(L, deep, NULL, &err);
    CHECK(j != NULL && strlen(j) == 128);
    free(j);
    CHECK_DECODE_ERR(L, "{\"a\":{\"b\":[{\"c\":[]}]}}", &three, "$.a.b[0]: JSON nested more than 3 levels");
    lua_close(L);
}

static void test_size_limits(void) {
    lua_State *L = new_state();
    payload_limits small = {.max_depth = 64, .max_bytes = 10};
    jerr err = {0};
    char *j = json_of(L, "'01234567'", &small, &err);
    CHECK_STREQ(j, "\"01234567\"");
    free(j);
    CHECK_JSON_ERR(L, "'012345678'", &small, "$: the JSON is larger than 10 bytes (max_bytes)");
    payload_limits twenty = {.max_depth = 64, .max_bytes = 20};
    CHECK_JSON_ERR(L, "{a = 1, b = 'xxxxxxxxxxxx'}", &twenty, "$.b: the JSON is larger than 20 bytes");
    /* a failed conversion leaves the caller's buffer as it was */
    eval(L, "{1, 2, 3, 'a long string that does not fit'}");
    jbuf b;
    jbuf_init(&b, 0);
    jbuf_puts(&b, "prefix:");
    CHECK(payload_lua_to_json(L, -1, &small, &b, &err) != 0);
    CHECK_STREQ(b.data, "prefix:");
    CHECK_INT(b.len, 7);
    /* max_bytes counts only what this call writes */
    CHECK(payload_lua_to_json(L, -1, NULL, &b, &err) == 0);
    CHECK_STREQ(b.data, "prefix:[1,2,3,\"a long string that does not fit\"]");
    jbuf_free(&b);
    lua_pop(L, 1);
    /* the caller's own buffer limit is reported too */
    eval(L, "'0123456789'");
    jbuf_init(&b, 5);
    CHECK(payload_lua_to_json(L, -1, NULL, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "does not fit in the output buffer");
    jbuf_free(&b);
    lua_pop(L, 1);

    CHECK_DECODE_ERR(L, "[1,2,3,4,5]", &small, "the JSON text is 11 bytes, more than the 10-byte limit (max_bytes)");
    CHECK(decoded(L, "[1,2,3,4]", "#v == 4"));
    CHECK_INT(payload_default_limits.max_depth, 64);
    CHECK_INT(payload_default_limits.max_bytes, 4 * 1024 * 1024);
    lua_close(L);
}

static void test_decode_errors(void) {
    lua_State *L = new_state();
    CHECK_DECODE_ERR(L, "", NULL, "$: invalid JSON at line 1, column 1: expected a value, found the end of the text");
    CHECK_DECODE_ERR(L, "   ", NULL, "expected a value");
    CHECK_DECODE_ERR(L, "{\"a\":[1,2,]}", NULL, "$.a[2]: invalid JSON at line 1, column 11: unexpected character ']'");
    CHECK_DECODE_ERR(L, "[1 2]", NULL, "$: invalid JSON at line 1, column 4: expected ',' or ']' after an array item");
    CHECK_DECODE_ERR(L, "{\"a\" 1}", NULL, "expected ':' after an object key");
    CHECK_DECODE_ERR(L, "{\"a\":1 \"b\":2}", NULL, "expected ',' or '}' after an object member");
    CHECK_DECODE_ERR(L, "{1:2}", NULL, "$: invalid JSON at line 1, column 2: expected a string key");
    CHECK_DECODE_ERR(L, "{\"a\":1,}", NULL, "expected a string key");
    CHECK_DECODE_ERR(L, "[1,2", NULL, "expected ',' or ']'");
    CHECK_DECODE_ERR(L, "{\"a\":{\"b\":", NULL, "$.a.b: invalid JSON at line 1, column 11: expected a value");
    CHECK_DECODE_ERR(L, "01", NULL, "numbers cannot have leading zeros");
    CHECK_DECODE_ERR(L, "1.", NULL, "expected a digit after '.'");
    CHECK_DECODE_ERR(L, "-", NULL, "expected a digit after '-'");
    CHECK_DECODE_ERR(L, "1e", NULL, "expected a digit in the exponent");
    CHECK_DECODE_ERR(L, "+1", NULL, "unexpected character '+'");
    CHECK_DECODE_ERR(L, ".5", NULL, "unexpected character '.'");
    CHECK_DECODE_ERR(L, "NaN", NULL, "unexpected character 'N'");
    CHECK_DECODE_ERR(L, "Infinity", NULL, "unexpected character 'I'");
    CHECK_DECODE_ERR(L, "tru", NULL, "unexpected character 't'");
    CHECK_DECODE_ERR(L, "nul", NULL, "unexpected character 'n'");
    CHECK_DECODE_ERR(L, "1 2", NULL, "line 1, column 3: unexpected text after the JSON value");
    CHECK_DECODE_ERR(L, "[1e400]", NULL, "$[0]: invalid JSON at line 1, column 2: number 1e400 is too large for a double");
    CHECK_DECODE_ERR(L, "\"\\ud800\"", NULL, "unpaired surrogate \\ud800");
    CHECK_DECODE_ERR(L, "\"\\udc00\"", NULL, "unpaired surrogate \\udc00");
    CHECK_DECODE_ERR(L, "\"\\ud800\\u0041\"", NULL, "unpaired surrogate");
    CHECK_DECODE_ERR(L, "\"\\u12\"", NULL, "\\u must be followed by four hex digits");
    CHECK_DECODE_ERR(L, "\"\\x\"", NULL, "invalid escape \\x in a string");
    CHECK_DECODE_ERR(L, "\"abc", NULL, "unterminated string");
    CHECK_DECODE_ERR(L, "\"abc\\", NULL, "unterminated string");
    CHECK_DECODE_ERR(L, "\"a\nb\"", NULL, "control character 0x0a in a string must be escaped");
    CHECK_DECODE_ERR(L, "{\"k\":\"ok\xff\"}", NULL, "$.k: invalid JSON at line 1, column 9: a string is not valid UTF-8 (byte 0xff)");
    CHECK_DECODE_ERR(L, "\"\xc0\x80\"", NULL, "not valid UTF-8");
    CHECK_DECODE_ERR(L, "\"\xed\xa0\x80\"", NULL, "not valid UTF-8");
    CHECK_DECODE_ERR(L, "\xef\xbb\xbf{}", NULL, "unexpected byte 0xef");
    CHECK_DECODE_ERR(L, "{\n  \"a\": tru\n}", NULL, "$.a: invalid JSON at line 2, column 8");
    CHECK_DECODE_ERR(L, "[1,\n{\"x y\":[0,", NULL, "$[1][\"x y\"][1]: invalid JSON at line 2, column 11: expected a value");
    /* a NUL inside the text is not the end of it */
    jerr err = {0};
    CHECK(payload_json_to_lua(L, "1\0", 2, NULL, &err) != 0);
    CHECK_CONTAINS(err.msg, "unexpected text after the JSON value");
    lua_close(L);
}

/* ---------------------------------------------------------------- payloads */

static const char *encoding_of(const Payload *p) {
    static char buf[64];
    for (size_t i = 0; i < p->n_metadata; i++) {
        if (strcmp(p->metadata[i]->key, "encoding") == 0) {
            size_t n = p->metadata[i]->value.len < 63 ? p->metadata[i]->value.len : 63;
            memcpy(buf, p->metadata[i]->value.data, n);
            buf[n] = '\0';
            return buf;
        }
    }
    return NULL;
}

static bool data_is(const Payload *p, const char *s) {
    size_t n = strlen(s);
    return p->data.len == n && (n == 0 || memcmp(p->data.data, s, n) == 0);
}

/* A Payload with any encoding (built the way the wire would give it). */
static Payload *make_payload(const char *encoding, const char *data, size_t len) {
    Payload *p = payload_new_json(data, len);
    if (!p) abort();
    Temporal__Api__Common__V1__Payload__MetadataEntry *e = p->metadata[0];
    free(e->value.data);
    e->value.len = strlen(encoding);
    e->value.data = malloc(e->value.len + 1);
    memcpy(e->value.data, encoding, e->value.len);
    return p;
}

static void test_payload_metadata(void) {
    lua_State *L = new_state();
    jerr err = {0};
    eval(L, "{b = 2, a = {1.0, 'x'}}");
    Payload *p = payload_from_lua(L, -1, NULL, &err);
    lua_pop(L, 1);
    CHECK_MSG(p != NULL, "%s", err.msg);
    if (p == NULL) {
        lua_close(L);
        return;
    }
    CHECK_INT(p->n_metadata, 1);
    CHECK_STREQ(p->metadata[0]->key, "encoding");
    CHECK_STREQ(encoding_of(p), "json/plain");
    CHECK(data_is(p, "{\"a\":[1.0,\"x\"],\"b\":2}"));
    /* it survives the wire */
    size_t n = protobuf_c_message_get_packed_size(&p->base);
    uint8_t *wire = malloc(n);
    protobuf_c_message_pack(&p->base, wire);
    Payload *q = temporal__api__common__v1__payload__unpack(NULL, n, wire);
    CHECK(q != NULL && strcmp(encoding_of(q), "json/plain") == 0 && data_is(q, "{\"a\":[1.0,\"x\"],\"b\":2}"));
    free(wire);
    if (q != NULL) protobuf_c_message_free_unpacked(&q->base, NULL);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    lua_pushnil(L);
    p = payload_from_lua(L, -1, NULL, &err);
    lua_pop(L, 1);
    CHECK(p != NULL && strcmp(encoding_of(p), "binary/null") == 0 && p->data.len == 0);
    if (p != NULL) protobuf_c_message_free_unpacked(&p->base, NULL);

    p = payload_from_lua(L, lua_gettop(L) + 1, NULL, &err); /* none counts as nil */
    CHECK(p && strcmp(encoding_of(p), "binary/null") == 0);
    if (p != NULL) protobuf_c_message_free_unpacked(&p->base, NULL);

    eval(L, "{x = print}");
    p = payload_from_lua(L, -1, NULL, &err);
    lua_pop(L, 1);
    CHECK(p == NULL);
    CHECK_STREQ(err.msg, "$.x: a function cannot be converted to JSON (only nil, booleans, numbers, "
                         "strings and tables can)");

    p = payload_new_json("[1]", 3);
    CHECK(p && data_is(p, "[1]") && strcmp(encoding_of(p), "json/plain") == 0);
    if (p != NULL) protobuf_c_message_free_unpacked(&p->base, NULL);
    lua_close(L);
}

static void test_payload_to_lua(void) {
    lua_State *L = new_state();
    jerr err = {0};
    int top = lua_gettop(L);

    Payload *p = make_payload("binary/null", "", 0);
    CHECK(payload_to_lua(L, p, NULL, &err) == 0);
    CHECK(lua_isnil(L, -1));
    lua_pop(L, 1);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = payload_new_json("{\"a\":[1,2.5]}", 13);
    CHECK(payload_to_lua(L, p, NULL, &err) == 0);
    lua_setglobal(L, "v");
    CHECK(truthy(L, "v.a[1] == 1 and v.a[2] == 2.5"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("binary/plain", "a\0\xff", 3);
    CHECK(payload_to_lua(L, p, NULL, &err) == 0);
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    CHECK(lua_type(L, -1) == LUA_TSTRING && len == 3 && memcmp(s, "a\0\xff", 3) == 0);
    lua_pop(L, 1);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("json/protobuf", "{\"workflowId\":\"w1\"}", 19);
    CHECK(payload_to_lua(L, p, NULL, &err) == 0);
    lua_setglobal(L, "v");
    CHECK(truthy(L, "v.workflowId == 'w1'"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("binary/protobuf", "\x0a\x02hi", 4);
    CHECK(payload_to_lua(L, p, NULL, &err) != 0);
    CHECK_STREQ(err.msg, "payload encoding \"binary/protobuf\" is not supported (jorch reads "
                         "json/plain, json/protobuf, binary/plain and binary/null)");
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("bad\x01name", "", 0);
    CHECK(payload_to_lua(L, p, NULL, &err) != 0);
    CHECK_CONTAINS(err.msg, "\"bad?name\" is not supported");
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = payload_new_json("{\"a\":", 5);
    CHECK(payload_to_lua(L, p, NULL, &err) != 0);
    CHECK_CONTAINS(err.msg, "reading a json/plain payload: $.a: invalid JSON at line 1, column 6");
    protobuf_c_message_free_unpacked(&p->base, NULL);

    Payload bare = TEMPORAL__API__COMMON__V1__PAYLOAD__INIT;
    CHECK(payload_to_lua(L, &bare, NULL, &err) != 0);
    CHECK_CONTAINS(err.msg, "no \"encoding\" metadata");

    payload_limits small = {.max_depth = 8, .max_bytes = 2};
    p = make_payload("binary/plain", "abc", 3);
    CHECK(payload_to_lua(L, p, &small, &err) != 0);
    CHECK_CONTAINS(err.msg, "more than the 2-byte limit");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    CHECK_INT(lua_gettop(L), top);
    lua_close(L);
}

static char *to_json(const Payload *p, jerr *err) {
    jbuf b;
    jbuf_init(&b, 0);
    jbuf_puts(&b, "<");
    if (payload_to_json(p, &b, err) != 0) {
        CHECK_STREQ(b.data, "<");
        jbuf_free(&b);
        return NULL;
    }
    char *s = jbuf_take(&b, NULL);
    memmove(s, s + 1, strlen(s));
    return s;
}

static void test_payload_to_json(void) {
    jerr err = {0};
    Payload *p = payload_new_json("{\"b\": 1, \"a\": 2}", 16);
    char *j = to_json(p, &err);
    CHECK_STREQ(j, "{\"b\": 1, \"a\": 2}"); /* as is */
    free(j);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("binary/null", "", 0);
    j = to_json(p, &err);
    CHECK_STREQ(j, "null");
    free(j);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("binary/plain", "hi\n\"", 4);
    j = to_json(p, &err);
    CHECK_STREQ(j, "\"hi\\n\\\"\"");
    free(j);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("binary/plain", "\xff\x00", 2);
    CHECK(to_json(p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "binary/plain payload of 2 bytes is not UTF-8 text");
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("json/protobuf", "{\"x\":1}", 7);
    j = to_json(p, &err);
    CHECK_STREQ(j, "{\"x\":1}");
    free(j);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = payload_new_json("{oops}", 6);
    CHECK(to_json(p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "a JSON payload: $: invalid JSON at line 1, column 2");
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = make_payload("binary/protobuf", "", 0);
    CHECK(to_json(p, &err) == NULL);
    CHECK_CONTAINS(err.msg, "\"binary/protobuf\" is not supported");
    protobuf_c_message_free_unpacked(&p->base, NULL);
}

static void test_payloads_to_json(void) {
    jerr err = {0};
    jbuf b;
    jbuf_init(&b, 0);
    CHECK(payloads_to_json(NULL, true, &b, &err) == 0);
    CHECK_STREQ(b.data, "null");
    Payloads *ps = payloads_new();
    jbuf_reset(&b);
    CHECK(payloads_to_json(ps, false, &b, &err) == 0);
    CHECK_STREQ(b.data, "null");
    CHECK(payloads_add(ps, payload_new_json("{\"a\":1}", 7)) == 0);
    jbuf_reset(&b);
    CHECK(payloads_to_json(ps, true, &b, &err) == 0);
    CHECK_STREQ(b.data, "{\"a\":1}");
    jbuf_reset(&b);
    CHECK(payloads_to_json(ps, false, &b, &err) == 0);
    CHECK_STREQ(b.data, "[{\"a\":1}]");
    CHECK(payloads_add(ps, make_payload("binary/null", "", 0)) == 0);
    jbuf_reset(&b);
    CHECK(payloads_to_json(ps, true, &b, &err) == 0);
    CHECK_STREQ(b.data, "[{\"a\":1},null]");
    CHECK(payloads_add(ps, make_payload("binary/protobuf", "x", 1)) == 0);
    CHECK_INT(ps->n_payloads, 3);
    jbuf_reset(&b);
    jbuf_puts(&b, "keep");
    CHECK(payloads_to_json(ps, true, &b, &err) != 0);
    CHECK_STREQ(b.data, "keep");
    CHECK_CONTAINS(err.msg, "payload 3 of 3: payload encoding \"binary/protobuf\"");
    CHECK(payloads_add(ps, NULL) != 0);
    jbuf_free(&b);
    protobuf_c_message_free_unpacked(&ps->base, NULL);
}

static void test_payload_from_json(void) {
    jerr err = {0};
    const char *in = "{ \"b\" : 1, \"a\" : [1.0, 2, null, 1E2, -0, \"\\u00e9\\/\"], \"c\": {}, \"d\": [] }";
    Payload *p = payload_from_json(in, strlen(in), &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    if (p == NULL) return;
    CHECK_STREQ(encoding_of(p), "json/plain");
    const char *want = "{\"a\":[1.0,2,null,100.0,0,\"\xc3\xa9/\"],\"b\":1,\"c\":{},\"d\":[]}";
    CHECK(data_is(p, want));
    /* canonical text is a fixed point */
    Payload *q = payload_from_json((const char *)p->data.data, p->data.len, &err);
    CHECK(q && data_is(q, want));
    if (q != NULL) protobuf_c_message_free_unpacked(&q->base, NULL);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = payload_from_json(" null ", 6, &err);
    CHECK(p && strcmp(encoding_of(p), "binary/null") == 0 && p->data.len == 0);
    protobuf_c_message_free_unpacked(&p->base, NULL);

    in = "{\"a\":null,\"b\":[null],\"a\":3,\"\":0}";
    p = payload_from_json(in, strlen(in), &err);
    CHECK(p && data_is(p, "{\"\":0,\"a\":3,\"b\":[null]}"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = payload_from_json("\"x\"", 3, &err);
    CHECK(p && data_is(p, "\"x\""));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    /* cut short after an empty key, the first key of the document: the
     * error's path names it (found by fuzz_payload: no key text stored yet,
     * and UBSan stopped on arithmetic on the NULL key store) */
    jerr cut = {0};
    CHECK(payload_from_json("{\"\":", 4, &cut) == NULL);
    CHECK_MSG(strstr(cut.msg, "$[\"\"]") != NULL, "%s", cut.msg);

    CHECK(payload_from_json("[1,]", 4, &err) == NULL);
    CHECK_STREQ(err.msg, "$[1]: invalid JSON at line 1, column 4: unexpected character ']'");
    CHECK_INT(err.code, JERR_USAGE);
    CHECK(payload_from_json("", 0, &err) == NULL);
    CHECK(payload_from_json(NULL, 0, &err) == NULL);
}

static void test_payloads_lua(void) {
    lua_State *L = new_state();
    jerr err = {0};
    eval(L, "1");
    lua_pushnil(L);
    eval(L, "{a = 'x'}");
    int top = lua_gettop(L);
    Payloads *ps = payloads_from_lua(L, -3, 3, NULL, &err);
    CHECK_MSG(ps != NULL, "%s", err.msg);
    if (ps == NULL) {
        lua_close(L);
        return;
    }
    CHECK_INT(ps->n_payloads, 3);
    CHECK_STREQ(encoding_of(ps->payloads[0]), "json/plain");
    CHECK(data_is(ps->payloads[0], "1"));
    CHECK_STREQ(encoding_of(ps->payloads[1]), "binary/null");
    CHECK(data_is(ps->payloads[2], "{\"a\":\"x\"}"));
    CHECK_INT(lua_gettop(L), top);
    lua_settop(L, 0);

    int pushed = -1;
    CHECK(payloads_to_lua(L, ps, NULL, &pushed, &err) == 0);
    CHECK_INT(pushed, 3);
    CHECK_INT(lua_gettop(L), 3);
    CHECK(lua_tointeger(L, 1) == 1 && lua_isnil(L, 2) && lua_istable(L, 3));
    lua_settop(L, 0);

    CHECK(payloads_add(ps, make_payload("xml", "<a/>", 4)) == 0);
    pushed = -1;
    CHECK(payloads_to_lua(L, ps, NULL, &pushed, &err) != 0);
    CHECK_INT(pushed, 0);
    CHECK_INT(lua_gettop(L), 0);
    CHECK_CONTAINS(err.msg, "payload 4 of 4: payload encoding \"xml\" is not supported");
    protobuf_c_message_free_unpacked(&ps->base, NULL);

    CHECK(payloads_to_lua(L, NULL, NULL, &pushed, &err) == 0);
    CHECK_INT(pushed, 0);
    Payloads *empty = payloads_new();
    CHECK(payloads_to_lua(L, empty, NULL, &pushed, &err) == 0);
    CHECK_INT(pushed, 0);
    protobuf_c_message_free_unpacked(&empty->base, NULL);

    eval(L, "1");
    eval(L, "{f = print}");
    eval(L, "3");
    CHECK(payloads_from_lua(L, 1, 3, NULL, &err) == NULL);
    CHECK_STREQ(err.msg, "value 2 of 3: $.f: a function cannot be converted to JSON (only nil, "
                         "booleans, numbers, strings and tables can)");
    CHECK_INT(lua_gettop(L), 3);
    ps = payloads_from_lua(L, 1, 0, NULL, &err);
    CHECK(ps && ps->n_payloads == 0);
    if (ps != NULL) protobuf_c_message_free_unpacked(&ps->base, NULL);
    lua_close(L);
}

/* ------------------------------------------- allocation failures in Lua */

typedef struct alloc_budget {
    long left; /* allocations that may still succeed; < 0: unlimited */
} alloc_budget;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    alloc_budget *b = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (ptr == NULL || nsize > osize) {
        if (b->left == 0) return NULL;
        if (b->left > 0) b->left--;
    }
    return realloc(ptr, nsize);
}

/* Every conversion, failing each Lua allocation in turn: an error or a
 * result, never a crash, a leak (ASan checks) or an unbalanced stack. */
static void test_lua_out_of_memory(void) {
    alloc_budget budget = {.left = -1};
    lua_State *L = lua_newstate(budget_alloc, &budget);
    luaL_openlibs(L);
    const char *json = "{\"a\":[1,2.5,\"x\",{\"b\":[]}],\"long key long key long key long key long key\":"
                       "\"a long string value that is not interned by Lua at all, being long\","
                       "\"c\":{\"d\":{\"e\":[true,false,null]}}}";
    int decoded_ok = 0, encoded_ok = 0;
    for (long n = 0; n < 200; n++) {
        jerr err = {0};
        int top = lua_gettop(L);
        budget.left = n;
        int rc = payload_json_to_lua(L, json, strlen(json), NULL, &err);
        budget.left = -1;
        CHECK_INT(lua_gettop(L), top + (rc == 0 ? 1 : 0));
        if (rc != 0) {
            CHECK(err.msg[0] != '\0');
            continue;
        }
        decoded_ok++;
        jbuf b;
        jbuf_init(&b, 0);
        budget.left = n;
        rc = payload_lua_to_json(L, -1, NULL, &b, &err);
        budget.left = -1;
        CHECK_INT(lua_gettop(L), top + 1);
        if (rc == 0) {
            encoded_ok++;
            CHECK_STREQ(b.data, "{\"a\":[1,2.5,\"x\",{\"b\":[]}],\"c\":{\"d\":{\"e\":[true,false]}},"
                                "\"long key long key long key long key long key\":\"a long string "
                                "value that is not interned by Lua at all, being long\"}");
        }
        jbuf_free(&b);

        Payload *p = make_payload("binary/plain", "some bytes", 10);
        budget.left = n;
        rc = payload_to_lua(L, p, NULL, &err);
        budget.left = -1;
        protobuf_c_message_free_unpacked(&p->base, NULL);
        lua_settop(L, top);
    }
    CHECK(decoded_ok > 0);
    CHECK(encoded_ok > 0);
    lua_close(L);
}

TEST_MAIN(TEST_CASE(test_scalars), TEST_CASE(test_floats), TEST_CASE(test_int64_exact),
          TEST_CASE(test_strings_and_escapes), TEST_CASE(test_tables),
          TEST_CASE(test_empty_table_and_array_marker), TEST_CASE(test_no_metamethods_run),
          TEST_CASE(test_canonical_key_order), TEST_CASE(test_round_trip_fixed_points),
          TEST_CASE(test_encode_errors), TEST_CASE(test_light_userdata),
          TEST_CASE(test_depth_limits), TEST_CASE(test_size_limits),
          TEST_CASE(test_decode_errors), TEST_CASE(test_payload_metadata),
          TEST_CASE(test_payload_to_lua), TEST_CASE(test_payload_to_json),
          TEST_CASE(test_payloads_to_json), TEST_CASE(test_payload_from_json),
          TEST_CASE(test_payloads_lua), TEST_CASE(test_lua_out_of_memory))
