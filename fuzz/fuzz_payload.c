/*
 * fuzz_payload.c - libFuzzer target for the payload JSON codec. Input bytes
 * are JSON text: decode into Lua, encode canonically, and check that the
 * canonical form is a fixed point (decode + encode gives the same bytes).
 * The Lua-free canonicaliser (payload_from_json) must be a fixed point too.
 * Everything touching Lua runs inside lua_pcall, as in the engine.
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_input {
    const char *data;
    size_t size;
} fuzz_input;

/* Decode json and encode the result into out; -1 if either step refuses. */
static int decode_encode(lua_State *L, const char *json, size_t len, jbuf *out) {
    jerr err;
    int top = lua_gettop(L);
    if (payload_json_to_lua(L, json, len, NULL, &err) != 0) {
        if (lua_gettop(L) != top) abort();
        return -1;
    }
    if (lua_gettop(L) != top + 1) abort();
    int rc = payload_lua_to_json(L, -1, NULL, out, &err);
    lua_settop(L, top);
    return rc;
}

static void check_lua_fixed_point(lua_State *L, const fuzz_input *in) {
    jbuf once, twice;
    jbuf_init(&once, 0);
    jbuf_init(&twice, 0);
    if (decode_encode(L, in->data, in->size, &once) == 0) {
        if (decode_encode(L, once.data, once.len, &twice) != 0) {
            fprintf(stderr, "canonical JSON refused on re-decode: %s\n", once.data);
            abort();
        }
        if (once.len != twice.len || memcmp(once.data, twice.data, once.len) != 0) {
            fprintf(stderr, "not a fixed point:\n  %s\n  %s\n", once.data, twice.data);
            abort();
        }
    }
    jbuf_free(&once);
    jbuf_free(&twice);
}

static void check_json_fixed_point(const fuzz_input *in) {
    jerr err;
    Temporal__Api__Common__V1__Payload *p = payload_from_json(in->data, in->size, &err);
    if (!p) return;
    Temporal__Api__Common__V1__Payload *q =
        payload_from_json((const char *)p->data.data, p->data.len, &err);
    if (p->data.len > 0) {
        if (!q || q->data.len != p->data.len || memcmp(q->data.data, p->data.data, p->data.len) != 0) {
            fprintf(stderr, "payload_from_json is not a fixed point\n");
            abort();
        }
    }
    jbuf b;
    jbuf_init(&b, 0);
    if (payload_to_json(p, &b, &err) != 0) abort();
    jbuf_free(&b);
    if (q) protobuf_c_message_free_unpacked(&q->base, NULL);
    protobuf_c_message_free_unpacked(&p->base, NULL);
}

static int fuzz_protected(lua_State *L) {
    const fuzz_input *in = lua_touserdata(L, 1);
    lua_settop(L, 0);
    check_lua_fixed_point(L, in);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lua_State *L;
    if (!L) {
        L = luaL_newstate();
        if (!L) abort();
    }
    fuzz_input in = {(const char *)data, size};
    lua_pushcfunction(L, fuzz_protected);
    lua_pushlightuserdata(L, &in);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "Lua error: %s\n", lua_tostring(L, -1));
        abort();
    }
    check_json_fixed_point(&in);
    return 0;
}
