/*
 * NULL and bad input for every exported function. No server is needed: every
 * call here must fail (or succeed) before any network traffic, and the
 * client used for calls points at a port nobody listens on so that an
 * accidental request would show up as LLMPOOL_CONNECT and connections_opened.
 */
#include <limits.h>
#include <stdint.h>

#include "check.h"

static const char BAD_UTF8[] = "{\"model\":\"\xff\xfe\"}";
static const char SECRET[] = "sk-args-SECRET-31337";

/* client_new that must fail with `want`, and whose message contains `needle`. */
static void new_fails(const char *options, llmpool_code want, const char *needle) {
    llmpool_client *c = (llmpool_client *)0x1;
    char err[512];
    memset(err, 'x', sizeof err);
    llmpool_code rc = llmpool_client_new(options, &c, err, sizeof err);
    CHECK(rc == want, "options %s: code %s, want %s (errbuf: %s)", options ? options : "NULL",
          llmpool_code_name(rc), llmpool_code_name(want), err);
    CHECK(c == NULL, "options %s: *out not reset to NULL on error", options);
    CHECK(memchr(err, 0, sizeof err) != NULL, "errbuf not NUL-terminated");
    CHECK(strstr(err, needle) != NULL, "options %s: errbuf \"%s\" does not name \"%s\"", options,
          err, needle);
    CHECK_NOT_CONTAINS(err, SECRET);
}

static void test_code_names(void) {
    static const struct {
        int code;
        const char *name;
    } names[] = {
        {LLMPOOL_OK, "LLMPOOL_OK"},
        {LLMPOOL_INVALID_ARGUMENT, "LLMPOOL_INVALID_ARGUMENT"},
        {LLMPOOL_CONNECT, "LLMPOOL_CONNECT"},
        {LLMPOOL_TLS, "LLMPOOL_TLS"},
        {LLMPOOL_TIMEOUT, "LLMPOOL_TIMEOUT"},
        {LLMPOOL_HTTP_STATUS, "LLMPOOL_HTTP_STATUS"},
        {LLMPOOL_IO, "LLMPOOL_IO"},
        {LLMPOOL_PROTOCOL, "LLMPOOL_PROTOCOL"},
        {LLMPOOL_POOL_EXHAUSTED, "LLMPOOL_POOL_EXHAUSTED"},
        {LLMPOOL_BUDGET_EXCEEDED, "LLMPOOL_BUDGET_EXCEEDED"},
        {LLMPOOL_CANCELLED, "LLMPOOL_CANCELLED"},
        {LLMPOOL_RATE_LIMITED, "LLMPOOL_RATE_LIMITED"},
        {LLMPOOL_PANIC, "LLMPOOL_PANIC"},
    };
    /* The numbers are part of the ABI. */
    CHECK(LLMPOOL_OK == 0 && LLMPOOL_INVALID_ARGUMENT == 1 && LLMPOOL_CONNECT == 2 &&
              LLMPOOL_TLS == 3 && LLMPOOL_TIMEOUT == 4 && LLMPOOL_HTTP_STATUS == 5 &&
              LLMPOOL_IO == 6 && LLMPOOL_PROTOCOL == 7 && LLMPOOL_POOL_EXHAUSTED == 8 &&
              LLMPOOL_BUDGET_EXCEEDED == 9 && LLMPOOL_CANCELLED == 10 && LLMPOOL_RATE_LIMITED == 11 &&
              LLMPOOL_PANIC == 99,
          "code numbers changed");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *n = llmpool_code_name(names[i].code);
        CHECK(n != NULL, "code_name(%d) is NULL", names[i].code);
        CHECK_STREQ(n, names[i].name);
    }
    static const int unknown[] = {-1, 12, 13, 50, 98, 100, 12345, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *n = llmpool_code_name(unknown[i]);
        CHECK(n != NULL, "code_name(%d) is NULL", unknown[i]);
        CHECK_STREQ(n, "LLMPOOL_UNKNOWN");
    }
}

static void test_version(void) {
    const char *v = llmpool_version();
    CHECK(v != NULL, "version is NULL");
    const char *want = getenv("LLMPOOL_TEST_VERSION");
    if (want != NULL && want[0] != '\0') CHECK_STREQ(v, want);
    unsigned a, b, c;
    CHECK(sscanf(v, "%u.%u.%u", &a, &b, &c) == 3, "version \"%s\" is not X.Y.Z", v);
    CHECK(llmpool_version() == v, "version is not static storage");
}

static void test_free_null(void) {
    llmpool_client_free(NULL);
    llmpool_response_free(NULL);
    llmpool_string_free(NULL);
}

static void test_null_response_accessors(void) {
    CHECK(llmpool_response_code(NULL) == LLMPOOL_INVALID_ARGUMENT, "code(NULL)");
    CHECK(llmpool_response_status(NULL) == 0, "status(NULL)");
    size_t len = 77;
    const char *body = llmpool_response_body(NULL, &len);
    CHECK(body != NULL && body[0] == '\0', "body(NULL) not \"\"");
    CHECK(len == 0, "body(NULL) len %zu", len);
    body = llmpool_response_body(NULL, NULL);
    CHECK(body != NULL && body[0] == '\0', "body(NULL, NULL) not \"\"");
    const char *text = llmpool_response_text(NULL);
    CHECK(text != NULL && text[0] == '\0', "text(NULL) not \"\"");
    const char *err = llmpool_response_error(NULL);
    CHECK(err != NULL, "error(NULL) is NULL");
    CHECK_CONTAINS(err, "response");
    const char *info = llmpool_response_info(NULL);
    CHECK(info != NULL, "info(NULL) is NULL");
    CHECK_STREQ(info, "{}");
    const float *data = (const float *)&len;
    size_t count = 9, dim = 9;
    CHECK(llmpool_response_embeddings(NULL, &data, &count, &dim) == LLMPOOL_INVALID_ARGUMENT,
          "embeddings(NULL)");
    CHECK(data == NULL && count == 0 && dim == 0, "embeddings(NULL) left outputs set");
    CHECK(llmpool_response_embeddings(NULL, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "embeddings(NULL, NULL...)");
    CHECK_CONTAINS(llmpool_response_embeddings_error(NULL), "NULL");
    CHECK(llmpool_response_header(NULL, "content-type") == NULL, "header(NULL, name)");
    CHECK(llmpool_response_header(NULL, NULL) == NULL, "header(NULL, NULL)");
}

static void test_client_new(void) {
    /* out == NULL: the message names `out`. */
    char err[256];
    memset(err, 'x', sizeof err);
    CHECK(llmpool_client_new("{}", NULL, err, sizeof err) == LLMPOOL_INVALID_ARGUMENT,
          "out NULL");
    CHECK_CONTAINS(err, "out");
    /* ...and with no errbuf at all. */
    CHECK(llmpool_client_new("{}", NULL, NULL, 0) == LLMPOOL_INVALID_ARGUMENT, "out NULL, no errbuf");
    CHECK(llmpool_client_new("{}", NULL, NULL, 100) == LLMPOOL_INVALID_ARGUMENT,
          "out NULL, NULL errbuf with length");

    new_fails("{\"base_url\":\"http://127.0.0.1:1/v1\",\"model\":\"\xff\"}",
              LLMPOOL_INVALID_ARGUMENT, "options_json");
    new_fails("\xc3\x28", LLMPOOL_INVALID_ARGUMENT, "UTF-8");
    new_fails("{not json", LLMPOOL_INVALID_ARGUMENT, "options_json");
    new_fails("{not json", LLMPOOL_INVALID_ARGUMENT, "JSON");
    new_fails("{\"timeout_ms\": 5,}", LLMPOOL_INVALID_ARGUMENT, "JSON");
    new_fails("[1,2,3]", LLMPOOL_INVALID_ARGUMENT, "object");
    new_fails("42", LLMPOOL_INVALID_ARGUMENT, "object");
    new_fails("\"a string\"", LLMPOOL_INVALID_ARGUMENT, "object");
    new_fails("null", LLMPOOL_INVALID_ARGUMENT, "object");
    /* Unknown keys are named, and the API key never leaks into the message. */
    new_fails("{\"api_key\":\"sk-args-SECRET-31337\",\"bogus_option_xyz\":1}",
              LLMPOOL_INVALID_ARGUMENT, "bogus_option_xyz");
    new_fails("{\"timout_ms\":1000}", LLMPOOL_INVALID_ARGUMENT, "timout_ms");
    new_fails("{\"endpoints\":[{\"base_url\":\"http://127.0.0.1:1/v1\",\"wieght\":2}]}",
              LLMPOOL_INVALID_ARGUMENT, "endpoints[0].wieght");
    /* Wrong types are named. */
    new_fails("{\"timeout_ms\":\"fast\"}", LLMPOOL_INVALID_ARGUMENT, "timeout_ms");
    new_fails("{\"timeout_ms\":-5}", LLMPOOL_INVALID_ARGUMENT, "timeout_ms");
    new_fails("{\"timeout_ms\":0}", LLMPOOL_INVALID_ARGUMENT, "timeout_ms");
    new_fails("{\"max_retries\":1.5}", LLMPOOL_INVALID_ARGUMENT, "max_retries");
    new_fails("{\"backoff_factor\":\"x\"}", LLMPOOL_INVALID_ARGUMENT, "backoff_factor");
    new_fails("{\"insecure_skip_tls_verify\":\"yes\"}", LLMPOOL_INVALID_ARGUMENT,
              "insecure_skip_tls_verify");
    new_fails("{\"api_key\":31337}", LLMPOOL_INVALID_ARGUMENT, "api_key");
    new_fails("{\"base_url\":42}", LLMPOOL_INVALID_ARGUMENT, "base_url");
    new_fails("{\"headers\":[\"x\"]}", LLMPOOL_INVALID_ARGUMENT, "headers");
    new_fails("{\"retry_statuses\":[503,\"x\"]}", LLMPOOL_INVALID_ARGUMENT, "retry_statuses[1]");
    new_fails("{\"preset\":\"huge\"}", LLMPOOL_INVALID_ARGUMENT, "preset");
    /* Bad values. */
    new_fails("{\"base_url\":\"ftp://example.com\"}", LLMPOOL_INVALID_ARGUMENT, "base_url");
    new_fails("{\"base_url\":\"http://\"}", LLMPOOL_INVALID_ARGUMENT, "base_url");
    new_fails("{\"ca_file\":\"/nonexistent/llmpool-test-ca.pem\"}", LLMPOOL_INVALID_ARGUMENT,
              "ca_file");
    new_fails("{\"ca_pem\":\"not a pem\"}", LLMPOOL_INVALID_ARGUMENT, "ca_pem");

    /* errbuf truncation: the message is cut to len-1 bytes and NUL-terminated. */
    const char *bad = "{\"bogus_option_xyz\":1}";
    char full[512];
    llmpool_client *c = NULL;
    CHECK(llmpool_client_new(bad, &c, full, sizeof full) == LLMPOOL_INVALID_ARGUMENT, "bad");
    size_t full_len = strlen(full);
    CHECK(full_len > 8, "message too short: %s", full);
    char small[9];
    memset(small, 'x', sizeof small);
    CHECK(llmpool_client_new(bad, &c, small, sizeof small) == LLMPOOL_INVALID_ARGUMENT, "small");
    CHECK(strlen(small) == sizeof small - 1, "truncated to %zu bytes", strlen(small));
    CHECK(strncmp(small, full, sizeof small - 1) == 0, "truncated \"%s\" is not a prefix of \"%s\"",
          small, full);
    /* 1 byte: just the NUL; the byte after it is untouched. */
    char one[2] = {'x', 'y'};
    CHECK(llmpool_client_new(bad, &c, one, 1) == LLMPOOL_INVALID_ARGUMENT, "one");
    CHECK(one[0] == '\0' && one[1] == 'y', "1-byte errbuf: %d %d", one[0], one[1]);
    /* 0 bytes: nothing is written at all. */
    char zero[1] = {'z'};
    CHECK(llmpool_client_new(bad, &c, zero, 0) == LLMPOOL_INVALID_ARGUMENT, "zero");
    CHECK(zero[0] == 'z', "0-byte errbuf was written");
    /* NULL errbuf: the code still comes back. */
    CHECK(llmpool_client_new(bad, &c, NULL, 64) == LLMPOOL_INVALID_ARGUMENT, "NULL errbuf");
    CHECK(c == NULL, "client set on error");

    /* Success clears errbuf and returns a client; NULL and "" options are
     * defaults (no network traffic when creating a client). */
    const char *good[] = {NULL, "", "{}", " { } ",
                          "{\"base_url\":\"http://127.0.0.1:1/v1/\",\"preset\":\"high\"}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char ok[32];
        memset(ok, 'x', sizeof ok);
        c = NULL;
        llmpool_code rc = llmpool_client_new(good[i], &c, ok, sizeof ok);
        CHECK(rc == LLMPOOL_OK, "options %s: %s %.32s", good[i] ? good[i] : "NULL",
              llmpool_code_name(rc), ok);
        CHECK(c != NULL, "no client");
        CHECK(ok[0] == '\0', "errbuf not cleared on success");
        llmpool_client_free(c);
    }
}

/* A call that must fail with INVALID_ARGUMENT naming `needle`, without traffic. */
static void call_fails(llmpool_code rc, llmpool_response **rp, const char *needle) {
    /* Read *rp here: the call in the argument list has run by now. */
    llmpool_response *r = *rp;
    CHECK(r != NULL, "no response delivered");
    CHECK_CODE(rc, LLMPOOL_INVALID_ARGUMENT, r);
    CHECK(llmpool_response_code(r) == LLMPOOL_INVALID_ARGUMENT, "response code differs");
    CHECK(llmpool_response_status(r) == 0, "status %u", llmpool_response_status(r));
    CHECK_CONTAINS(llmpool_response_error(r), needle);
    CHECK_STREQ(llmpool_response_text(r), "");
    size_t len = 99;
    CHECK_STREQ(llmpool_response_body(r, &len), "");
    CHECK(len == 0, "body len %zu", len);
    const char *info = llmpool_response_info(r);
    CHECK(info[0] == '{', "info not an object: %s", info);
    CHECK_NOT_CONTAINS(info, SECRET);
    llmpool_response_free(r);
}

static int never_called_stream(void *ud, const char *d, size_t dl, const char *e, size_t el) {
    (void)ud, (void)d, (void)dl, (void)e, (void)el;
    CHECK(0, "stream callback called for an invalid call");
    return 1;
}

static int provider_calls;
static int provider(void *ud, char *buf, size_t len) {
    (void)ud, (void)buf, (void)len;
    provider_calls++;
    return 1;
}

static size_t progress_calls;
static void progress(void *ud, size_t done, size_t total) {
    (void)ud;
    CHECK(done >= 1 && done <= total, "progress %zu/%zu", done, total);
    progress_calls++;
}

/* The newer entry points: batch, responses_free, key provider, warm, stream. */
static void test_more_calls(llmpool_client *c) {
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    llmpool_response *r;

    /* llmpool_chat_stream: NULL client, request, cb; bad UTF-8/JSON. */
    r = NULL;
    call_fails(llmpool_chat_stream(NULL, req, never_called_stream, NULL, &r), &r, "client");
    r = NULL;
    call_fails(llmpool_chat_stream(c, NULL, never_called_stream, NULL, &r), &r, "request_json");
    r = NULL;
    call_fails(llmpool_chat_stream(c, req, NULL, NULL, &r), &r, "cb");
    r = NULL;
    call_fails(llmpool_chat_stream(c, BAD_UTF8, never_called_stream, NULL, &r), &r, "UTF-8");
    r = NULL;
    call_fails(llmpool_chat_stream(c, "{\"stream\":", never_called_stream, NULL, &r), &r,
               "request_json");
    r = NULL;
    call_fails(llmpool_chat_stream(c, "[]", never_called_stream, NULL, &r), &r, "object");
    CHECK(llmpool_chat_stream(NULL, NULL, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "stream all NULL");

    /* llmpool_chat_batch. */
    CHECK(llmpool_chat_batch(c, NULL, 0, 0, NULL, NULL, NULL) == LLMPOOL_OK, "batch n=0");
    const char *reqs[3] = {NULL, BAD_UTF8, "[1]"};
    CHECK(llmpool_chat_batch(c, reqs, 3, 0, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "batch NULL out");
    llmpool_response *outs[3] = {NULL, NULL, NULL};
    progress_calls = 0;
    llmpool_code rc = llmpool_chat_batch(c, reqs, 3, 2, progress, NULL, outs);
    CHECK(rc == LLMPOOL_INVALID_ARGUMENT, "batch of bad items: %s", llmpool_code_name(rc));
    CHECK(progress_calls == 3, "progress called %zu times", progress_calls);
    for (int i = 0; i < 3; i++) {
        CHECK(outs[i] != NULL, "batch item %d has no response", i);
        CHECK(llmpool_response_code(outs[i]) == LLMPOOL_INVALID_ARGUMENT, "item %d", i);
    }
    CHECK_CONTAINS(llmpool_response_error(outs[1]), "UTF-8");
    CHECK_CONTAINS(llmpool_response_error(outs[2]), "object");
    llmpool_responses_free(outs, 3);
    CHECK(outs[0] == NULL && outs[1] == NULL && outs[2] == NULL, "responses_free left entries");
    /* NULL client / NULL requests: every item gets an INVALID_ARGUMENT response. */
    const char *one[1] = {req};
    llmpool_response *o1[1] = {NULL};
    CHECK(llmpool_chat_batch(NULL, one, 1, 0, NULL, NULL, o1) == LLMPOOL_INVALID_ARGUMENT,
          "batch NULL client");
    CHECK(o1[0] != NULL, "no response for NULL client");
    CHECK_CONTAINS(llmpool_response_error(o1[0]), "client");
    llmpool_responses_free(o1, 1);
    CHECK(llmpool_chat_batch(c, NULL, 1, 0, NULL, NULL, o1) == LLMPOOL_INVALID_ARGUMENT,
          "batch NULL requests");
    CHECK(o1[0] != NULL, "no response for NULL requests");
    CHECK_CONTAINS(llmpool_response_error(o1[0]), "requests_json");
    llmpool_responses_free(o1, 1);
    /* responses_free: NULL array and NULL entries are skipped. */
    llmpool_responses_free(NULL, 0);
    llmpool_responses_free(NULL, 5);
    llmpool_responses_free(o1, 1);

    /* llmpool_client_set_key_provider / llmpool_client_warm. */
    CHECK(llmpool_client_set_key_provider(NULL, provider, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "key provider NULL client");
    CHECK(llmpool_client_set_key_provider(c, provider, NULL) == LLMPOOL_OK, "set provider");
    CHECK(llmpool_client_set_key_provider(c, NULL, NULL) == LLMPOOL_OK, "remove provider");
    CHECK(provider_calls == 0, "provider called without a 401");
    size_t opened = 77;
    CHECK(llmpool_client_warm(NULL, 1, &opened) == LLMPOOL_INVALID_ARGUMENT, "warm NULL");
    CHECK(llmpool_client_warm(NULL, 0, NULL) == LLMPOOL_INVALID_ARGUMENT, "warm NULL, NULL");
    opened = 77;
    CHECK(llmpool_client_warm(c, 0, &opened) == LLMPOOL_OK, "warm 0");
    CHECK(opened == 0, "warm 0 opened %zu", opened);
}

static void never_called_done(void *userdata, llmpool_response *r) {
    (void)userdata;
    (void)r;
    CHECK(0, "done called for a refused submit");
}

/* Every async submit refuses bad input at once: done never runs, *call is
 * NULL, nothing is sent. */
static void test_async_args(llmpool_client *c) {
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    llmpool_call *call = (llmpool_call *)&call;
#define REFUSED(expr)                                                                     \
    do {                                                                                  \
        call = (llmpool_call *)&call;                                                     \
        CHECK((expr) == LLMPOOL_INVALID_ARGUMENT, "%s", #expr);                            \
        CHECK(call == NULL, "*call not cleared by %s", #expr);                             \
    } while (0)
    REFUSED(llmpool_chat_async(NULL, req, never_called_done, NULL, &call));
    REFUSED(llmpool_chat_async(c, NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_chat_async(c, req, NULL, NULL, &call));
    REFUSED(llmpool_chat_async(c, BAD_UTF8, never_called_done, NULL, &call));
    REFUSED(llmpool_chat_async(c, "{\"a\":", never_called_done, NULL, &call));
    REFUSED(llmpool_chat_async(c, "[]", never_called_done, NULL, &call));
    CHECK(llmpool_chat_async(NULL, NULL, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "all NULL");
    REFUSED(llmpool_embeddings_async(NULL, "{\"input\":\"x\"}", never_called_done, NULL, &call));
    REFUSED(llmpool_embeddings_async(c, "nope", never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(NULL, "GET", "/models", NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(c, NULL, "/models", NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(c, "GET", NULL, NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(c, "FETCH", "/models", NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(c, "GET", "models", NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(c, "POST", "/x", "{bad", never_called_done, NULL, &call));
    REFUSED(llmpool_request_async(c, "GET", "/models", NULL, NULL, NULL, &call));
    REFUSED(llmpool_request_raw_async(NULL, "POST", "/x", NULL, NULL, 0, never_called_done, NULL,
                                      &call));
    REFUSED(llmpool_request_raw_async(c, NULL, "/x", NULL, NULL, 0, never_called_done, NULL, &call));
    REFUSED(llmpool_request_raw_async(c, "POST", NULL, NULL, NULL, 0, never_called_done, NULL,
                                      &call));
    REFUSED(llmpool_request_raw_async(c, "POST", "/x", "a\nb", NULL, 0, never_called_done, NULL,
                                      &call));
    REFUSED(llmpool_request_raw_async(c, "POST", "/x", NULL, NULL, 3, never_called_done, NULL,
                                      &call));
    REFUSED(llmpool_request_raw_async(c, "POST", "/x", BAD_UTF8, NULL, 0, never_called_done, NULL,
                                      &call));
    REFUSED(llmpool_request_raw_async(c, "POST", "/x", NULL, NULL, 0, NULL, NULL, &call));
    REFUSED(llmpool_client_warm_async(NULL, 1, never_called_done, NULL, &call));
    REFUSED(llmpool_client_warm_async(c, 1, NULL, NULL, &call));
    REFUSED(llmpool_chat_stream_async(NULL, req, never_called_stream, never_called_done, NULL,
                                      &call));
    REFUSED(llmpool_chat_stream_async(c, req, NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_chat_stream_async(c, req, never_called_stream, NULL, NULL, &call));
    REFUSED(llmpool_chat_stream_async(c, BAD_UTF8, never_called_stream, never_called_done, NULL,
                                      &call));
#undef REFUSED
    CHECK(llmpool_call_cancel(NULL) == LLMPOOL_INVALID_ARGUMENT, "call_cancel NULL");
    CHECK(llmpool_call_id(NULL) == 0, "call_id NULL");
    llmpool_call_free(NULL);
    CHECK(llmpool_response_call_id(NULL) == 0, "response_call_id NULL");

    /* Queue functions with NULL. */
    CHECK(llmpool_queue_new(NULL) == LLMPOOL_INVALID_ARGUMENT, "queue_new NULL");
    CHECK(llmpool_queue_fd(NULL) == -1, "queue_fd NULL");
    CHECK(llmpool_queue_pop(NULL) == NULL, "queue_pop NULL");
    llmpool_queue_free(NULL);
    llmpool_queue_done(NULL, NULL);
    /* A response handed to a NULL queue is freed, not leaked (LeakSanitizer). */
    llmpool_response *r = NULL;
    llmpool_chat(c, "[]", &r);
    CHECK(r != NULL, "no response");
    CHECK(llmpool_response_call_id(r) == 0, "blocking call has call id %llu",
          (unsigned long long)llmpool_response_call_id(r));
    llmpool_queue_done(NULL, r);
    llmpool_queue *q = NULL;
    CHECK(llmpool_queue_new(&q) == LLMPOOL_OK && q != NULL, "queue_new");
    CHECK(llmpool_queue_fd(q) >= 0, "queue fd");
    CHECK(llmpool_queue_pop(q) == NULL, "empty queue pops NULL");
    llmpool_queue_done(q, NULL);
    CHECK(llmpool_queue_pop(q) == NULL, "NULL response not queued");
    /* Queued streams: every bad argument refused, nothing queued. */
    llmpool_event ev[4];
    llmpool_call *qc = (llmpool_call *)1;
    CHECK(llmpool_stream_queued(NULL, 0, "{}", q, 1, &qc) == LLMPOOL_INVALID_ARGUMENT && qc == NULL,
          "stream_queued NULL client");
    CHECK(llmpool_stream_queued(c, 0, NULL, q, 1, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "stream_queued NULL request");
    CHECK(llmpool_stream_queued(c, 0, "{}", NULL, 1, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "stream_queued NULL queue");
    CHECK(llmpool_stream_queued(c, 3, "{}", q, 1, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "stream_queued bad api");
    CHECK(llmpool_stream_queued(c, 0, "[]", q, 1, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "stream_queued not an object");
    CHECK(llmpool_queue_take(NULL, ev, 4) == 0, "queue_take NULL queue");
    CHECK(llmpool_queue_take(q, NULL, 4) == 0, "queue_take NULL out");
    CHECK(llmpool_queue_take(q, ev, 0) == 0, "queue_take max 0");
    CHECK(llmpool_queue_take(q, ev, 4) == 0, "nothing was queued");
    CHECK(llmpool_queue_wait(NULL, 0) == -1, "queue_wait NULL");
    CHECK(llmpool_queue_wait(q, 0) == 0, "queue_wait on an empty queue");
    llmpool_queue_free(q);
}

static int never_called_delta(void *ud, const llmpool_delta *d) {
    (void)ud, (void)d;
    CHECK(0, "delta callback called for an invalid call");
    return 1;
}

/* The Responses and Messages APIs, typed deltas and the completion. */
static void test_agent_apis(llmpool_client *c) {
    const char *req = "{\"input\":\"hi\"}";
    llmpool_response *r;
#define BLOCKING_FAILS(fn)                                                               \
    do {                                                                                 \
        r = NULL;                                                                        \
        call_fails(fn(NULL, req, &r), &r, "client");                                     \
        r = NULL;                                                                        \
        call_fails(fn(c, NULL, &r), &r, "request_json");                                 \
        r = NULL;                                                                        \
        call_fails(fn(c, BAD_UTF8, &r), &r, "UTF-8");                                    \
        r = NULL;                                                                        \
        call_fails(fn(c, "[]", &r), &r, "object");                                       \
        CHECK(fn(NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "%s all NULL", #fn);     \
    } while (0)
    BLOCKING_FAILS(llmpool_responses);
    BLOCKING_FAILS(llmpool_messages);
#undef BLOCKING_FAILS
#define STREAM_FAILS(fn)                                                                 \
    do {                                                                                 \
        r = NULL;                                                                        \
        call_fails(fn(NULL, req, never_called_stream, NULL, &r), &r, "client");          \
        r = NULL;                                                                        \
        call_fails(fn(c, NULL, never_called_stream, NULL, &r), &r, "request_json");      \
        r = NULL;                                                                        \
        call_fails(fn(c, req, NULL, NULL, &r), &r, "on_event");                          \
        r = NULL;                                                                        \
        call_fails(fn(c, "{\"a\":", never_called_stream, NULL, &r), &r, "invalid JSON"); \
        CHECK(fn(NULL, NULL, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "%s all NULL", #fn); \
    } while (0)
    STREAM_FAILS(llmpool_responses_stream);
    STREAM_FAILS(llmpool_messages_stream);
#undef STREAM_FAILS
    CHECK(llmpool_responses(NULL, req, NULL) == LLMPOOL_INVALID_ARGUMENT, "responses no out");
    CHECK(llmpool_messages(c, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "messages no out");
    CHECK(llmpool_responses_stream(c, req, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "responses_stream no cb");
    CHECK(llmpool_messages_stream(NULL, req, never_called_stream, NULL, NULL) ==
              LLMPOOL_INVALID_ARGUMENT,
          "messages_stream no client");
    r = NULL;
    call_fails(llmpool_stream_deltas(NULL, LLMPOOL_API_CHAT, req, never_called_delta, NULL, &r),
               &r, "client");
    r = NULL;
    call_fails(llmpool_stream_deltas(c, 7, req, never_called_delta, NULL, &r), &r, "api");
    r = NULL;
    call_fails(llmpool_stream_deltas(c, -1, req, never_called_delta, NULL, &r), &r, "api");
    r = NULL;
    call_fails(llmpool_stream_deltas(c, LLMPOOL_API_MESSAGES, NULL, never_called_delta, NULL, &r),
               &r, "request_json");
    r = NULL;
    call_fails(llmpool_stream_deltas(c, LLMPOOL_API_RESPONSES, req, NULL, NULL, &r), &r,
               "on_delta");
    CHECK(llmpool_stream_deltas(NULL, 0, NULL, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "all NULL");

    llmpool_call *call = (llmpool_call *)&call;
#define REFUSED(expr)                                                                     \
    do {                                                                                  \
        call = (llmpool_call *)&call;                                                     \
        CHECK((expr) == LLMPOOL_INVALID_ARGUMENT, "%s", #expr);                            \
        CHECK(call == NULL, "*call not cleared by %s", #expr);                             \
    } while (0)
    REFUSED(llmpool_responses_async(NULL, req, never_called_done, NULL, &call));
    REFUSED(llmpool_responses_async(c, "[]", never_called_done, NULL, &call));
    REFUSED(llmpool_responses_async(c, req, NULL, NULL, &call));
    REFUSED(llmpool_messages_async(NULL, req, never_called_done, NULL, &call));
    REFUSED(llmpool_messages_async(c, BAD_UTF8, never_called_done, NULL, &call));
    REFUSED(llmpool_responses_stream_async(NULL, req, never_called_stream, never_called_done, NULL,
                                           &call));
    REFUSED(llmpool_responses_stream_async(c, req, NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_messages_stream_async(c, req, never_called_stream, NULL, NULL, &call));
    REFUSED(llmpool_messages_stream_async(c, "{", never_called_stream, never_called_done, NULL,
                                          &call));
    REFUSED(llmpool_stream_deltas_async(NULL, 0, req, never_called_delta, never_called_done, NULL,
                                        &call));
    REFUSED(llmpool_stream_deltas_async(c, 3, req, never_called_delta, never_called_done, NULL,
                                        &call));
    REFUSED(llmpool_stream_deltas_async(c, 0, req, NULL, never_called_done, NULL, &call));
    REFUSED(llmpool_stream_deltas_async(c, 0, req, never_called_delta, NULL, NULL, &call));
#undef REFUSED

    /* No completion for a NULL response or a refused call. */
    CHECK(llmpool_response_completion(NULL) == NULL, "completion(NULL)");
    r = NULL;
    llmpool_chat(c, "[]", &r);
    CHECK(llmpool_response_completion(r) == NULL, "completion of a refused call");
    llmpool_response_free(r);
}

static void test_calls(void) {
    const char *refused = need_env("LLMPOOL_TEST_REFUSED_URL");
    char opts[512];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"api_key\":\"%s\",\"max_retries\":0}",
             refused, SECRET);
    llmpool_client *c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client_new: %s", err);
    llmpool_response *r;
    const char *req = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

    /* NULL client, for every call and client function. */
    r = NULL;
    call_fails(llmpool_chat(NULL, req, &r), &r, "client");
    r = NULL;
    call_fails(llmpool_embeddings(NULL, "{\"input\":\"x\"}", &r), &r, "client");
    r = NULL;
    call_fails(llmpool_request(NULL, "GET", "/models", NULL, &r), &r, "client");
    CHECK(llmpool_chat(NULL, req, NULL) == LLMPOOL_INVALID_ARGUMENT, "chat NULL, NULL");
    CHECK(llmpool_embeddings(NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "emb NULL");
    CHECK(llmpool_request(NULL, NULL, NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "req NULL");
    r = NULL;
    call_fails(llmpool_request_raw(NULL, "POST", "/echo", NULL, (const uint8_t *)"x", 1, &r), &r,
               "client");
    CHECK(llmpool_request_raw(NULL, NULL, NULL, NULL, NULL, 0, NULL) == LLMPOOL_INVALID_ARGUMENT,
          "raw NULL");
    /* request_raw: NULL body with a length, bad method/path/content type. */
    r = NULL;
    call_fails(llmpool_request_raw(c, "POST", "/echo", "text/plain", NULL, 5, &r), &r, "body");
    r = NULL;
    call_fails(llmpool_request_raw(c, NULL, "/echo", NULL, NULL, 0, &r), &r, "method");
    r = NULL;
    call_fails(llmpool_request_raw(c, "POST", "echo", NULL, NULL, 0, &r), &r, "path");
    r = NULL;
    call_fails(llmpool_request_raw(c, "POST", "/echo", "text/plain\r\nX-Evil: 1",
                                   (const uint8_t *)"x", 1, &r),
               &r, "content_type");
    r = NULL;
    call_fails(llmpool_request_raw(c, "POST", "/echo", "text/\xff", (const uint8_t *)"x", 1, &r),
               &r, "content_type");
    /* A failed call has no headers; a NULL name finds nothing. */
    r = NULL;
    llmpool_request_raw(c, "POST", "echo", NULL, NULL, 0, &r);
    CHECK(llmpool_response_header(r, "content-type") == NULL, "header of a failed call");
    CHECK(llmpool_response_header(r, NULL) == NULL, "header(r, NULL)");
    CHECK(llmpool_response_header(r, "\xff") == NULL, "header(r, bad UTF-8)");
    llmpool_response_free(r);
    CHECK(llmpool_client_set_api_key(NULL, "k") == LLMPOOL_INVALID_ARGUMENT, "set_api_key NULL");
    CHECK(llmpool_client_set_api_key(NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "set_api_key NULLs");
    CHECK(llmpool_client_reset_pool(NULL) == LLMPOOL_INVALID_ARGUMENT, "reset_pool NULL");
    CHECK(llmpool_client_cancel(NULL) == LLMPOOL_INVALID_ARGUMENT, "cancel NULL");
    CHECK(llmpool_client_metrics(NULL) == NULL, "metrics NULL");
    CHECK(llmpool_client_metrics_prometheus(NULL) == NULL, "metrics_prometheus NULL");
    CHECK(llmpool_client_set_log_callback(NULL, LLMPOOL_LOG_INFO, NULL, NULL) ==
              LLMPOOL_INVALID_ARGUMENT,
          "set_log_callback NULL");

    /* chat and embeddings: NULL, invalid UTF-8, invalid JSON, not an object. */
    typedef llmpool_code (*json_call)(llmpool_client *, const char *, llmpool_response **);
    json_call calls[] = {llmpool_chat, llmpool_embeddings};
    for (size_t i = 0; i < 2; i++) {
        r = NULL;
        call_fails(calls[i](c, NULL, &r), &r, "request_json");
        r = NULL;
        call_fails(calls[i](c, BAD_UTF8, &r), &r, "request_json");
        r = NULL;
        call_fails(calls[i](c, BAD_UTF8, &r), &r, "UTF-8");
        r = NULL;
        call_fails(calls[i](c, "{\"model\":", &r), &r, "request_json");
        r = NULL;
        call_fails(calls[i](c, "{\"model\":", &r), &r, "JSON");
        r = NULL;
        call_fails(calls[i](c, "", &r), &r, "request_json");
        r = NULL;
        call_fails(calls[i](c, "[{\"role\":\"user\"}]", &r), &r, "object");
        r = NULL;
        call_fails(calls[i](c, "\"hello\"", &r), &r, "request_json");
        CHECK(calls[i](c, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "NULL out");
    }

    /* request: each argument. */
    r = NULL;
    call_fails(llmpool_request(c, NULL, "/models", NULL, &r), &r, "method");
    r = NULL;
    call_fails(llmpool_request(c, "G\xffT", "/models", NULL, &r), &r, "method");
    r = NULL;
    call_fails(llmpool_request(c, "FETCH", "/models", NULL, &r), &r, "FETCH");
    r = NULL;
    call_fails(llmpool_request(c, "", "/models", NULL, &r), &r, "method");
    r = NULL;
    call_fails(llmpool_request(c, "GET", NULL, NULL, &r), &r, "path");
    r = NULL;
    call_fails(llmpool_request(c, "GET", "/mod\xe9ls", NULL, &r), &r, "path");
    r = NULL;
    call_fails(llmpool_request(c, "GET", "models", NULL, &r), &r, "path");
    r = NULL;
    call_fails(llmpool_request(c, "POST", "/chat/completions", BAD_UTF8, &r), &r, "body_json");
    r = NULL;
    call_fails(llmpool_request(c, "POST", "/chat/completions", "{oops}", &r), &r, "body_json");
    r = NULL;
    call_fails(llmpool_request(c, "POST", "/chat/completions", "[1,2]", &r), &r, "body_json");
    CHECK(llmpool_request(c, "GET", NULL, NULL, NULL) == LLMPOOL_INVALID_ARGUMENT, "NULL out");

    /* set_api_key: invalid UTF-8 and control characters are refused; NULL
     * and "" remove the key. */
    CHECK(llmpool_client_set_api_key(c, "sk-\xff\xfe") == LLMPOOL_INVALID_ARGUMENT, "utf8 key");
    CHECK(llmpool_client_set_api_key(c, "sk-a\r\nX-Evil: 1") == LLMPOOL_INVALID_ARGUMENT,
          "CRLF key");
    CHECK(llmpool_client_set_api_key(c, "sk-\t") == LLMPOOL_INVALID_ARGUMENT, "tab key");
    CHECK(llmpool_client_set_api_key(c, "sk-\x7f") == LLMPOOL_INVALID_ARGUMENT, "DEL key");
    CHECK(llmpool_client_set_api_key(c, NULL) == LLMPOOL_OK, "NULL key");
    CHECK(llmpool_client_set_api_key(c, "") == LLMPOOL_OK, "empty key");
    CHECK(llmpool_client_set_api_key(c, SECRET) == LLMPOOL_OK, "key");
    CHECK(llmpool_client_reset_pool(c) == LLMPOOL_OK, "reset_pool");
    CHECK(llmpool_client_cancel(c) == LLMPOOL_OK, "cancel with nothing in flight");

    test_more_calls(c);
    test_async_args(c);
    test_agent_apis(c);

    /* None of the above touched the network, and the key is not in the metrics. */
    char *m = llmpool_client_metrics(c);
    CHECK(m != NULL, "metrics NULL");
    CHECK(JSON_INT(m, "connections_opened") == 0, "invalid calls opened connections: %s", m);
    CHECK_NOT_CONTAINS(m, SECRET);
    llmpool_string_free(m);

    /* A call after cancel runs normally (here: refused, with the key kept out
     * of the error). */
    r = NULL;
    llmpool_code rc = llmpool_chat(c, req, &r);
    CHECK_CODE(rc, LLMPOOL_CONNECT, r);
    CHECK_NOT_CONTAINS(llmpool_response_error(r), SECRET);
    CHECK_NOT_CONTAINS(llmpool_response_info(r), SECRET);
    llmpool_response_free(r);
    llmpool_client_free(c);
}

int main(void) {
    test_code_names();
    test_version();
    test_free_null();
    test_null_response_accessors();
    test_client_new();
    test_calls();
    printf("test_args: OK\n");
    return 0;
}
