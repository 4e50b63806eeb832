/*
 * Tiny helpers shared by the C tests of llmpool's C API.
 *
 * CHECK(cond, fmt, ...) prints file:line, the failed condition and a message,
 * then exits 1. The JSON helpers read top-level keys of the compact JSON
 * objects llmpool returns (info, metrics, server stats) without a JSON library.
 */
#ifndef LLMPOOL_TEST_CHECK_H
#define LLMPOOL_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmpool.h"

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  ", __FILE__,         \
                    __LINE__, #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* The call returned `want`, and the response (if any) agrees. */
#define CHECK_CODE(got, want, resp)                                          \
    CHECK((int)(got) == (int)(want), "code %s (%d), want %s; error: %s",     \
          llmpool_code_name((int)(got)), (int)(got),                         \
          llmpool_code_name((int)(want)), llmpool_response_error(resp))

#define CHECK_CONTAINS(hay, needle)                                          \
    CHECK(strstr((hay), (needle)) != NULL, "\"%s\" does not contain \"%s\"", \
          (hay), (needle))

#define CHECK_NOT_CONTAINS(hay, needle)                                      \
    CHECK(strstr((hay), (needle)) == NULL, "\"%s\" contains \"%s\"", (hay),  \
          (needle))

#define CHECK_STREQ(a, b)                                                    \
    CHECK(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))

/* A required environment variable (set by tests/c_api.rs). */
static inline const char *need_env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, "environment variable %s is not set (run via `cargo test --test c_api`)\n",
                name);
        exit(2);
    }
    return v;
}

/*
 * Points at the value of top-level `key` in the JSON object `json`, or NULL.
 * Strings are skipped correctly (escapes included), nested objects and
 * arrays are not searched.
 */
static inline const char *json_top(const char *json, const char *key) {
    size_t klen = strlen(key);
    int depth = 0;
    int expect_key = 0;
    for (const char *p = json; *p; p++) {
        char ch = *p;
        if (ch == '"') {
            const char *start = p + 1;
            const char *q = start;
            while (*q && *q != '"') {
                if (*q == '\\' && q[1]) q++;
                q++;
            }
            if (!*q) return NULL;
            if (depth == 1 && expect_key && (size_t)(q - start) == klen &&
                memcmp(start, key, klen) == 0 && q[1] == ':') {
                return q + 2;
            }
            expect_key = 0;
            p = q;
        } else if (ch == '{') {
            depth++;
            expect_key = (depth == 1);
        } else if (ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            depth--;
        } else if (ch == ',' && depth == 1) {
            expect_key = 1;
        }
    }
    return NULL;
}

/* The integer value of a top-level key; exits with a message if missing. */
static inline long long json_int_at(const char *json, const char *key, const char *file, int line) {
    const char *v = json_top(json, key);
    if (v == NULL || !((*v >= '0' && *v <= '9') || *v == '-')) {
        fprintf(stderr, "%s:%d: no integer \"%s\" in %s\n", file, line, key, json);
        exit(1);
    }
    return strtoll(v, NULL, 10);
}
#define JSON_INT(json, key) json_int_at((json), (key), __FILE__, __LINE__)

/* Whether a top-level key exists. */
static inline int json_has(const char *json, const char *key) {
    return json_top(json, key) != NULL;
}

/* Whether the top-level key's value starts with `prefix` (e.g. "true", "null", "[]"). */
static inline int json_is(const char *json, const char *key, const char *prefix) {
    const char *v = json_top(json, key);
    return v != NULL && strncmp(v, prefix, strlen(prefix)) == 0;
}

/* A client for `url` with a tiny backoff plus `extra` options ("" for none,
 * else JSON members without braces, e.g. "\"max_retries\":0"). */
static inline llmpool_client *client_at(const char *url, const char *extra) {
    char opts[2048];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"backoff_factor\":0.01%s%s}", url,
             extra[0] ? "," : "", extra);
    llmpool_client *c = NULL;
    char err[256];
    llmpool_code rc = llmpool_client_new(opts, &c, err, sizeof err);
    CHECK(rc == LLMPOOL_OK, "client_new(%s): %s %s", opts, llmpool_code_name(rc), err);
    CHECK(c != NULL, "no client");
    return c;
}

#endif
