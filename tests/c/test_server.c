/*
 * Calls against the loopback test server (plain HTTP): chat, info, pooling
 * (50 sequential calls over one connection), embeddings, llmpool_request,
 * retries on 503, a non-retried 400, a refused port, reset_pool.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_PLAIN_URL,
 * LLMPOOL_TEST_REFUSED_URL.
 */
#include "check.h"

static const char *URL;

static llmpool_client *client(const char *extra) { return client_at(URL, extra); }

/* A control request to the test server; returns the response (caller frees). */
static llmpool_response *control(llmpool_client *c, const char *method, const char *path,
                                 const char *body) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_request(c, method, path, body, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    return r;
}

static void reset_server(void) {
    llmpool_client *ctl = client("");
    llmpool_response_free(control(ctl, "POST", "/_test/reset", NULL));
    llmpool_client_free(ctl);
}

static llmpool_code chat(llmpool_client *c, const char *msg, llmpool_response **out) {
    char req[512];
    snprintf(req, sizeof req,
             "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", msg);
    *out = NULL;
    llmpool_code rc = llmpool_chat(c, req, out);
    CHECK(*out != NULL, "no response");
    CHECK(llmpool_response_code(*out) == rc, "response code differs from returned code");
    return rc;
}

static void test_chat_and_info(void) {
    llmpool_client *c = client("");
    llmpool_response *r;
    llmpool_code rc = chat(c, "hello from C", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(llmpool_response_status(r) == 200, "status %u", llmpool_response_status(r));
    CHECK_STREQ(llmpool_response_text(r), "Echo: hello from C");
    CHECK_STREQ(llmpool_response_error(r), "");
    size_t len = 0;
    const char *body = llmpool_response_body(r, &len);
    CHECK(len == strlen(body) && len > 0, "body len %zu vs %zu", len, strlen(body));
    CHECK_CONTAINS(body, "chat.completion");
    const char *info = llmpool_response_info(r);
    const char *keys[] = {"attempts", "retries", "connection_reused", "connections_opened",
                          "latency_ms", "status", "request_id", "usage", "model"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(json_has(info, keys[i]), "info lacks \"%s\": %s", keys[i], info);
    CHECK(JSON_INT(info, "attempts") == 1, "attempts: %s", info);
    CHECK(JSON_INT(info, "retries") == 0, "retries: %s", info);
    CHECK(JSON_INT(info, "connections_opened") == 1, "first call opens: %s", info);
    CHECK(json_is(info, "connection_reused", "false"), "first call reused: %s", info);
    CHECK(JSON_INT(info, "status") == 200, "status: %s", info);
    CHECK(json_is(info, "request_id", "\"req-"), "request_id: %s", info);
    CHECK(json_is(info, "usage", "{"), "usage: %s", info);
    CHECK_CONTAINS(json_top(info, "usage"), "\"total_tokens\"");
    llmpool_response_free(r);

    /* The second call reuses the connection. */
    rc = chat(c, "again", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "Echo: again");
    info = llmpool_response_info(r);
    CHECK(json_is(info, "connection_reused", "true"), "second call not reused: %s", info);
    CHECK(JSON_INT(info, "connections_opened") == 0, "second call opened: %s", info);
    llmpool_response_free(r);

    /* out == NULL is allowed: the call runs, nothing is handed back. */
    rc = llmpool_chat(c, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL);
    CHECK(rc == LLMPOOL_OK, "chat with NULL out: %s", llmpool_code_name(rc));

    /* reset_pool: the next call opens a fresh connection. */
    CHECK(llmpool_client_reset_pool(c) == LLMPOOL_OK, "reset_pool");
    rc = chat(c, "after reset", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    info = llmpool_response_info(r);
    CHECK(JSON_INT(info, "connections_opened") == 1, "after reset_pool: %s", info);
    CHECK(json_is(info, "connection_reused", "false"), "after reset_pool: %s", info);
    llmpool_response_free(r);
    char *m = llmpool_client_metrics(c);
    CHECK(m != NULL, "metrics");
    CHECK(JSON_INT(m, "requests") == 4, "requests: %s", m);
    CHECK(JSON_INT(m, "connections_opened") == 2, "connections_opened: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);
}

static void test_pooling(void) {
    reset_server();
    llmpool_client *c = client("");
    for (int i = 0; i < 50; i++) {
        char msg[32];
        char want[48];
        snprintf(msg, sizeof msg, "call %d", i);
        snprintf(want, sizeof want, "Echo: call %d", i);
        llmpool_response *r;
        llmpool_code rc = chat(c, msg, &r);
        CHECK_CODE(rc, LLMPOOL_OK, r);
        CHECK_STREQ(llmpool_response_text(r), want);
        llmpool_response_free(r);
    }
    char *m = llmpool_client_metrics(c);
    CHECK(m != NULL, "metrics");
    CHECK(JSON_INT(m, "requests") == 50, "requests: %s", m);
    CHECK(JSON_INT(m, "errors") == 0, "errors: %s", m);
    CHECK(JSON_INT(m, "connections_opened") == 1, "50 calls, connections_opened: %s", m);
    CHECK(JSON_INT(m, "connections_reused") == 49, "connections_reused: %s", m);
    const char *keys[] = {"error_rate", "retries", "connections_open", "in_flight",
                          "status_counts", "code_counts", "latency_ms", "warnings"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(json_has(m, keys[i]), "metrics lack \"%s\": %s", keys[i], m);
    CHECK(json_is(m, "warnings", "[]"), "unexpected warnings: %s", m);
    llmpool_string_free(m);
    /* The server saw one connection (the stats call reuses it too). */
    llmpool_response *s = control(c, "GET", "/_test/stats", NULL);
    const char *stats = llmpool_response_body(s, NULL);
    CHECK(JSON_INT(stats, "connections_accepted") == 1, "server stats: %s", stats);
    CHECK(JSON_INT(stats, "requests") == 50, "server stats: %s", stats);
    llmpool_response_free(s);
    llmpool_client_free(c);
}

static void test_embeddings_and_request(void) {
    llmpool_client *c = client("");
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_embeddings(
        c, "{\"model\":\"text-embedding-3-small\",\"input\":[\"a\",\"bc\"]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(llmpool_response_status(r) == 200, "status");
    const char *body = llmpool_response_body(r, NULL);
    CHECK_CONTAINS(body, "\"embedding\"");
    CHECK(json_is(body, "data", "[{"), "data: %s", body);
    CHECK_STREQ(llmpool_response_text(r), "");
    llmpool_response_free(r);

    r = NULL;
    rc = llmpool_request(c, "GET", "/models", NULL, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(llmpool_response_status(r) == 200, "status");
    CHECK_CONTAINS(llmpool_response_body(r, NULL), "\"test-model\"");
    llmpool_response_free(r);

    /* Lower-case method and a JSON body through llmpool_request. */
    r = NULL;
    rc = llmpool_request(c, "post", "/chat/completions",
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"via request\"}]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_CONTAINS(llmpool_response_body(r, NULL), "Echo: via request");
    llmpool_response_free(r);

    /* An unknown path: 404 is an HTTP_STATUS error with the body kept. */
    r = NULL;
    rc = llmpool_request(c, "GET", "/no-such-thing", NULL, &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    CHECK(llmpool_response_status(r) == 404, "status %u", llmpool_response_status(r));
    CHECK_CONTAINS(llmpool_response_body(r, NULL), "no-such-thing");
    CHECK_CONTAINS(llmpool_response_error(r), "404");
    llmpool_response_free(r);
    llmpool_client_free(c);
}

static void test_retry_503(void) {
    llmpool_client *c = client("\"max_retries\":3");
    llmpool_response_free(
        control(c, "POST", "/_test/faults", "{\"type\":\"status\",\"code\":503,\"times\":2}"));
    llmpool_response *r;
    llmpool_code rc = chat(c, "after two 503s", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(llmpool_response_status(r) == 200, "status %u", llmpool_response_status(r));
    CHECK_STREQ(llmpool_response_text(r), "Echo: after two 503s");
    const char *info = llmpool_response_info(r);
    CHECK(JSON_INT(info, "attempts") == 3, "attempts: %s", info);
    CHECK(JSON_INT(info, "retries") == 2, "retries: %s", info);
    llmpool_response_free(r);
    char *m = llmpool_client_metrics(c);
    CHECK(JSON_INT(m, "retries") == 2, "metrics retries: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);
}

static void test_400_not_retried(void) {
    llmpool_client *c = client("");
    /* Two 400s queued: a retry would eat the second one. */
    llmpool_response_free(control(
        c, "POST", "/_test/faults",
        "{\"type\":\"status\",\"code\":400,\"times\":2,"
        "\"body\":{\"error\":{\"message\":\"bad thing 400\",\"type\":\"invalid_request_error\"}}}"));
    llmpool_response *r;
    llmpool_code rc = chat(c, "bad", &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    CHECK(llmpool_response_status(r) == 400, "status %u", llmpool_response_status(r));
    size_t len = 0;
    const char *body = llmpool_response_body(r, &len);
    CHECK(len > 0, "body not kept");
    CHECK_CONTAINS(body, "bad thing 400");
    const char *err = llmpool_response_error(r);
    CHECK_CONTAINS(err, "400");
    CHECK_CONTAINS(err, "bad thing 400");
    CHECK_STREQ(llmpool_response_text(r), "");
    const char *info = llmpool_response_info(r);
    CHECK(JSON_INT(info, "attempts") == 1, "400 was retried: %s", info);
    llmpool_response_free(r);
    /* The second 400 is still queued: consume it, then the server is clean. */
    llmpool_response *s = control(c, "GET", "/_test/stats", NULL);
    CHECK(JSON_INT(llmpool_response_body(s, NULL), "pending_faults") == 1, "stats: %s",
          llmpool_response_body(s, NULL));
    llmpool_response_free(s);
    rc = chat(c, "bad again", &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    llmpool_response_free(r);
    rc = chat(c, "good", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
    char *m = llmpool_client_metrics(c);
    CHECK(JSON_INT(m, "errors") == 2, "errors: %s", m);
    CHECK(JSON_INT(m, "retries") == 0, "retries: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);
}

static void test_refused(void) {
    const char *refused = need_env("LLMPOOL_TEST_REFUSED_URL");
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"base_url\":\"%s\",\"backoff_factor\":0.01,\"connect_timeout_ms\":2000}", refused);
    llmpool_client *c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client_new: %s", err);
    llmpool_response *r;
    llmpool_code rc = chat(c, "nobody home", &r);
    CHECK_CODE(rc, LLMPOOL_CONNECT, r);
    CHECK(llmpool_response_status(r) == 0, "status %u", llmpool_response_status(r));
    CHECK(llmpool_response_error(r)[0] != '\0', "empty error");
    CHECK_STREQ(llmpool_response_text(r), "");
    llmpool_response_free(r);
    char *m = llmpool_client_metrics(c);
    CHECK(JSON_INT(m, "errors") == 1, "errors: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);
}

int main(void) {
    URL = need_env("LLMPOOL_TEST_PLAIN_URL");
    test_chat_and_info();
    test_pooling();
    test_embeddings_and_request();
    test_retry_503();
    test_400_not_retried();
    test_refused();
    printf("test_server: OK\n");
    return 0;
}
