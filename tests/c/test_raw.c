/*
 * Raw bodies and response headers through the C API, against the test
 * server: a 5 MB binary upload echoed back byte for byte (checked against
 * the server's own hash header), a binary audio/mpeg answer, and
 * case-insensitive header lookup.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_PLAIN_URL.
 */
#include <stdint.h>

#include "check.h"

/* The test server's FNV-1a, as the x-body-fnv1a header reports it. */
static void fnv1a_hex(const uint8_t *p, size_t n, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int main(void) {
    const char *url = need_env("LLMPOOL_TEST_PLAIN_URL");
    llmpool_client *c = client_at(url, "");

    /* 5 MB of every byte value, NULs included. */
    size_t n = 5u * 1024u * 1024u;
    uint8_t *body = malloc(n);
    CHECK(body != NULL, "malloc");
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        body[i] = (i % 7 == 0) ? 0 : (uint8_t)(x >> 16);
    }
    llmpool_response *r = NULL;
    llmpool_code rc =
        llmpool_request_raw(c, "POST", "/echo", "application/octet-stream", body, n, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    char want[17];
    fnv1a_hex(body, n, want);
    const char *got = llmpool_response_header(r, "X-Body-FNV1A");
    CHECK(got != NULL, "no x-body-fnv1a header");
    CHECK_STREQ(got, want);
    CHECK_STREQ(llmpool_response_header(r, "content-type"), "application/octet-stream");
    CHECK(llmpool_response_header(r, "x-absent") == NULL, "absent header not NULL");
    size_t len = 0;
    const char *echoed = llmpool_response_body(r, &len);
    CHECK(len == n, "echoed %zu bytes, sent %zu", len, n);
    CHECK(memcmp(echoed, body, n) == 0, "echoed body differs");
    /* Header pointers stay valid across other lookups until the free. */
    const char *id = llmpool_response_header(r, "x-request-id");
    CHECK(id != NULL && strncmp(id, "req-", 4) == 0, "x-request-id %s", id ? id : "(null)");
    (void)llmpool_response_header(r, "content-length");
    CHECK(strncmp(id, "req-", 4) == 0, "x-request-id pointer changed");
    llmpool_response_free(r);
    free(body);

    /* A binary answer: audio/mpeg with NULs, read back by length. */
    const char *req = "{\"model\":\"tts-1\",\"input\":\"hello\",\"voice\":\"alloy\"}";
    r = NULL;
    rc = llmpool_request_raw(c, "POST", "/audio/speech", "application/json", (const uint8_t *)req,
                             strlen(req), &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_header(r, "Content-Type"), "audio/mpeg");
    const char *audio = llmpool_response_body(r, &len);
    CHECK(len == 5000, "audio is %zu bytes", len);
    CHECK(memcmp(audio, "ID3", 3) == 0, "no ID3 header");
    fnv1a_hex((const uint8_t *)audio, len, want);
    CHECK_STREQ(llmpool_response_header(r, "x-body-fnv1a"), want);
    llmpool_response_free(r);

    llmpool_client_free(c);
    printf("test_raw: OK\n");
    return 0;
}
