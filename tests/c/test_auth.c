/*
 * API keys against a test server started with --require-key: no key and a
 * wrong key give 401 (LLMPOOL_HTTP_STATUS, not retried), set_api_key with
 * the right key gives OK on the same client, and no key ever shows up in
 * error strings, info or metrics.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_KEY_URL, LLMPOOL_TEST_KEY.
 */
#include "check.h"

static const char WRONG[] = "sk-wrong-SECRET-0000";
static const char *KEY;

static void no_key_anywhere(llmpool_client *c, llmpool_response *r) {
    const char *secrets[] = {KEY, WRONG};
    for (int i = 0; i < 2; i++) {
        if (r != NULL) {
            CHECK_NOT_CONTAINS(llmpool_response_error(r), secrets[i]);
            CHECK_NOT_CONTAINS(llmpool_response_info(r), secrets[i]);
            CHECK_NOT_CONTAINS(llmpool_response_body(r, NULL), secrets[i]);
        }
        char *m = llmpool_client_metrics(c);
        CHECK(m != NULL, "metrics");
        CHECK_NOT_CONTAINS(m, secrets[i]);
        llmpool_string_free(m);
    }
}

static llmpool_code chat(llmpool_client *c, llmpool_response **r) {
    *r = NULL;
    llmpool_code rc = llmpool_chat(
        c, "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"auth\"}]}", r);
    CHECK(*r != NULL, "no response");
    no_key_anywhere(c, *r);
    return rc;
}

static void expect_401(llmpool_client *c) {
    llmpool_response *r;
    llmpool_code rc = chat(c, &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    CHECK(llmpool_response_status(r) == 401, "status %u", llmpool_response_status(r));
    CHECK_CONTAINS(llmpool_response_error(r), "401");
    CHECK_CONTAINS(llmpool_response_body(r, NULL), "invalid_api_key");
    CHECK(JSON_INT(llmpool_response_info(r), "attempts") == 1, "401 retried: %s",
          llmpool_response_info(r));
    llmpool_response_free(r);
}

static void expect_ok(llmpool_client *c) {
    llmpool_response *r;
    llmpool_code rc = chat(c, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "Echo: auth");
    llmpool_response_free(r);
}

int main(void) {
    const char *url = need_env("LLMPOOL_TEST_KEY_URL");
    KEY = need_env("LLMPOOL_TEST_KEY");
    char opts[512];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"backoff_factor\":0.01}", url);
    llmpool_client *c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client_new: %s", err);

    expect_401(c); /* no key at all */
    CHECK(llmpool_client_set_api_key(c, WRONG) == LLMPOOL_OK, "set wrong key");
    expect_401(c);
    CHECK(llmpool_client_set_api_key(c, KEY) == LLMPOOL_OK, "set right key");
    expect_ok(c);
    expect_ok(c);
    /* A refused key leaves the current one in place. */
    CHECK(llmpool_client_set_api_key(c, "bad\nkey") == LLMPOOL_INVALID_ARGUMENT, "CR key");
    expect_ok(c);
    /* NULL and "" remove the key. */
    CHECK(llmpool_client_set_api_key(c, NULL) == LLMPOOL_OK, "NULL key");
    expect_401(c);
    CHECK(llmpool_client_set_api_key(c, KEY) == LLMPOOL_OK, "set right key");
    expect_ok(c);
    CHECK(llmpool_client_set_api_key(c, "") == LLMPOOL_OK, "empty key");
    expect_401(c);

    /* Pooled connections are kept across key changes. */
    char *m = llmpool_client_metrics(c);
    CHECK(JSON_INT(m, "requests") == 8, "requests: %s", m);
    CHECK(JSON_INT(m, "errors") == 4, "errors: %s", m);
    CHECK(JSON_INT(m, "connections_opened") == 1, "connections_opened: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);

    /* The key given as an option works too, and never appears in the output. */
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"api_key\":\"%s\"}", url, KEY);
    c = NULL;
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client_new: %s", err);
    expect_ok(c);
    llmpool_client_free(c);
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"api_key\":\"%s\",\"max_retries\":0}", url,
             WRONG);
    c = NULL;
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client_new: %s", err);
    expect_401(c);
    llmpool_client_free(c);

    printf("test_auth: OK\n");
    return 0;
}
