/*
 * llmpool_response_embeddings: float arrays and base64, index order, ragged
 * and malformed vectors, answers that are not embeddings, and concurrent
 * first use, against the loopback test server (started by tests/c_api.rs),
 * which answers with the bodies the test hands it through /_test/faults.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#define ROWS 5
#define DIM 7

static const char *plain_url;
static const char *REQ = "{\"model\":\"emb\",\"input\":[\"a\",\"b\"]}";

static float value(int row, int d) { return (float)(row * 10 + d) / 8.0f - 3.0f; }

static void b64(const unsigned char *p, size_t n, char *out) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *out++ = A[v >> 18 & 63];
        *out++ = A[v >> 12 & 63];
        *out++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *out++ = i + 2 < n ? A[v & 63] : '=';
    }
    *out = 0;
}

/* An answer with rows listed in `order`; row `skip_dim_row` (if >= 0) is one float short. */
static void answer(char *buf, size_t cap, int base64, const int *order, int short_row) {
    size_t n = (size_t)snprintf(buf, cap, "{\"object\":\"list\",\"data\":[");
    for (int k = 0; k < ROWS; k++) {
        int r = order[k];
        int dim = r == short_row ? DIM - 1 : DIM;
        n += (size_t)snprintf(buf + n, cap - n, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":",
                              k ? "," : "", r);
        float row[DIM];
        for (int d = 0; d < DIM; d++) row[d] = value(r, d);
        if (base64) {
            /* Little-endian hosts: the bytes of the floats are the wire format. */
            char text[64];
            b64((const unsigned char *)row, (size_t)dim * sizeof(float), text);
            n += (size_t)snprintf(buf + n, cap - n, "\"%s\"}", text);
        } else {
            n += (size_t)snprintf(buf + n, cap - n, "[");
            for (int d = 0; d < dim; d++)
                n += (size_t)snprintf(buf + n, cap - n, "%s%.9g", d ? "," : "", (double)row[d]);
            n += (size_t)snprintf(buf + n, cap - n, "]}");
        }
    }
    snprintf(buf + n, cap - n, "],\"model\":\"emb\",\"usage\":{\"prompt_tokens\":2,\"total_tokens\":2}}");
}

/* Makes the server's next answer `code` with `body` (JSON-escaped into a fault). */
static void serve(llmpool_client *c, int code, const char *body) {
    char fault[8192];
    size_t n = (size_t)snprintf(fault, sizeof fault, "{\"type\":\"status\",\"code\":%d,\"body\":\"", code);
    for (const char *p = body; *p && n + 4 < sizeof fault; p++) {
        if (*p == '"' || *p == '\\') fault[n++] = '\\';
        fault[n++] = *p;
    }
    snprintf(fault + n, sizeof fault - n, "\"}");
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_request(c, "POST", "/_test/faults", fault, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
}

static llmpool_response *call_with(llmpool_client *c, const char *body) {
    serve(c, 200, body);
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_embeddings(c, REQ, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    return r;
}

static void check_matrix(llmpool_response *r, const char *what) {
    const float *data = NULL;
    size_t count = 0, dim = 0;
    llmpool_code rc = llmpool_response_embeddings(r, &data, &count, &dim);
    CHECK(rc == LLMPOOL_OK, "%s: %s: %s", what, llmpool_code_name(rc), llmpool_response_embeddings_error(r));
    CHECK(count == ROWS && dim == DIM, "%s: %zu x %zu", what, count, dim);
    for (int r_ = 0; r_ < ROWS; r_++)
        for (int d = 0; d < DIM; d++)
            CHECK(data[r_ * DIM + d] == value(r_, d), "%s: [%d][%d] = %g, want %g", what, r_, d,
                  (double)data[r_ * DIM + d], (double)value(r_, d));
    CHECK_STREQ(llmpool_response_embeddings_error(r), "");
    /* Decoded once: the same matrix again, and the counts are optional. */
    const float *again = NULL;
    CHECK(llmpool_response_embeddings(r, &again, NULL, NULL) == LLMPOOL_OK, "%s: second call", what);
    CHECK(again == data, "%s: second call decoded again", what);
}

static void test_both_encodings_in_index_order(llmpool_client *c) {
    static const int shuffled[ROWS] = {3, 0, 4, 1, 2};
    char body[8192];
    for (int base64 = 0; base64 < 2; base64++) {
        answer(body, sizeof body, base64, shuffled, -1);
        llmpool_response *r = call_with(c, body);
        check_matrix(r, base64 ? "base64" : "float");
        llmpool_response_free(r);
    }
}

static void test_ragged_and_malformed_are_protocol_errors(llmpool_client *c) {
    static const int order[ROWS] = {0, 1, 2, 3, 4};
    char body[8192];
    for (int base64 = 0; base64 < 2; base64++) {
        answer(body, sizeof body, base64, order, 2);
        llmpool_response *r = call_with(c, body);
        const float *data = (const float *)body;
        size_t count = 1, dim = 1;
        llmpool_code rc = llmpool_response_embeddings(r, &data, &count, &dim);
        CHECK(rc == LLMPOOL_PROTOCOL, "ragged %d: %s", base64, llmpool_code_name(rc));
        CHECK(data == NULL && count == 0 && dim == 0, "ragged: outputs not cleared");
        CHECK_CONTAINS(llmpool_response_embeddings_error(r), "ragged rows");
        llmpool_response_free(r);
    }
    const char *bad[][2] = {
        {"{\"data\":[{\"index\":0,\"embedding\":[1,2]},{\"index\":0,\"embedding\":[3,4]}]}", "appears more than once"},
        {"{\"data\":[{\"embedding\":[1,2]},{\"embedding\":[3,-]}]}", "not a number"},
        {"{\"data\":[{\"embedding\":\"AAAAAAA*\"}]}", "invalid base64"},
        {"{\"data\":[{\"embedding\":\"AAAAAAA=\"}]}", "not a whole number of float32s"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        llmpool_response *r = call_with(c, bad[i][0]);
        CHECK(llmpool_response_embeddings(r, NULL, NULL, NULL) == LLMPOOL_PROTOCOL, "bad %zu: %s", i,
              llmpool_response_embeddings_error(r));
        CHECK_CONTAINS(llmpool_response_embeddings_error(r), bad[i][1]);
        llmpool_response_free(r);
    }
}

static void test_other_answers_are_invalid_arguments(llmpool_client *c) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_chat(c, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    const float *data = NULL;
    size_t count = 5, dim = 5;
    CHECK(llmpool_response_embeddings(r, &data, &count, &dim) == LLMPOOL_INVALID_ARGUMENT, "chat answer");
    CHECK(data == NULL && count == 0 && dim == 0, "chat: outputs not cleared");
    CHECK_CONTAINS(llmpool_response_embeddings_error(r), "not an embeddings answer");
    llmpool_response_free(r);

    serve(c, 500, "{\"error\":{\"message\":\"boom\"}}");
    r = NULL;
    rc = llmpool_embeddings(c, REQ, &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    CHECK(llmpool_response_embeddings(r, &data, &count, &dim) == LLMPOOL_INVALID_ARGUMENT, "failed call");
    CHECK_CONTAINS(llmpool_response_embeddings_error(r), "the call failed");
    llmpool_response_free(r);

    /* An empty answer is a 0 x 0 matrix with no data pointer. */
    r = call_with(c, "{\"object\":\"list\",\"data\":[],\"model\":\"emb\"}");
    data = (const float *)&count;
    CHECK(llmpool_response_embeddings(r, &data, &count, &dim) == LLMPOOL_OK, "empty");
    CHECK(data == NULL && count == 0 && dim == 0, "empty: %zu x %zu", count, dim);
    llmpool_response_free(r);
}

/* The test server's own answer (float arrays of the request's inputs). */
static void test_real_route(llmpool_client *c) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_embeddings(c, "{\"model\":\"m\",\"input\":[\"one\",\"two\",\"three\"]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    const float *data = NULL;
    size_t count = 0, dim = 0;
    rc = llmpool_response_embeddings(r, &data, &count, &dim);
    CHECK(rc == LLMPOOL_OK, "%s", llmpool_response_embeddings_error(r));
    CHECK(count == 3 && dim > 0 && data != NULL, "%zu x %zu", count, dim);
    llmpool_response_free(r);
}

struct shared {
    llmpool_response *r;
    const float *got[8];
};

static void *first_use(void *arg) {
    struct shared *s = arg;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    const float *data = NULL;
    size_t count = 0, dim = 0;
    llmpool_code rc = llmpool_response_embeddings(s->r, &data, &count, &dim);
    CHECK(rc == LLMPOOL_OK && count == ROWS && dim == DIM, "thread: %s", llmpool_code_name(rc));
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 8; i++)
        if (!s->got[i]) {
            s->got[i] = data;
            break;
        }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void test_concurrent_first_use_decodes_once(llmpool_client *c) {
    static const int order[ROWS] = {4, 3, 2, 1, 0};
    char body[8192];
    answer(body, sizeof body, 1, order, -1);
    struct shared s = {call_with(c, body), {0}};
    pthread_t t[8];
    for (int i = 0; i < 8; i++) CHECK(pthread_create(&t[i], NULL, first_use, &s) == 0, "pthread_create");
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    for (int i = 1; i < 8; i++) CHECK(s.got[i] == s.got[0], "thread %d saw another matrix", i);
    check_matrix(s.r, "after threads");
    llmpool_response_free(s.r);
}

int main(void) {
    plain_url = need_env("LLMPOOL_TEST_PLAIN_URL");
    llmpool_client *c = client_at(plain_url, "\"max_retries\":0");
    test_both_encodings_in_index_order(c);
    test_ragged_and_malformed_are_protocol_errors(c);
    test_other_answers_are_invalid_arguments(c);
    test_real_route(c);
    test_concurrent_first_use_decodes_once(c);
    llmpool_client_free(c);
    printf("test_embeddings: all passed\n");
    return 0;
}
