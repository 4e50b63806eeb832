/*
 * Cost control, key rotation by callback and warm-up through the C API,
 * against the loopback test server (started by tests/c_api.rs).
 */
#include <stdio.h>
#include <string.h>

#include "check.h"

static const char *plain_url;

static llmpool_client *client_with(const char *extra_json) { return client_at(plain_url, extra_json); }

/* Requests the server has seen, from its control endpoint (not counted itself). */
static long long server_requests(llmpool_client *c) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_request(c, "GET", "/_test/stats", NULL, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    long long n = JSON_INT(llmpool_response_body(r, NULL), "requests");
    llmpool_response_free(r);
    return n;
}

static void reset_server(llmpool_client *c) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_request(c, "POST", "/_test/reset", "{}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
}

static void test_cache_hit_never_reaches_the_server(void) {
    llmpool_client *c = client_with("\"cache\": {\"max_entries\": 10, \"ttl_ms\": 60000}");
    reset_server(c);
    const char *req = "{\"model\":\"gpt-4.1\",\"temperature\":0,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"cache me\"}]}";
    for (int i = 0; i < 3; i++) {
        llmpool_response *r = NULL;
        llmpool_code rc = llmpool_chat(c, req, &r);
        CHECK_CODE(rc, LLMPOOL_OK, r);
        CHECK_STREQ(llmpool_response_text(r), "Echo: cache me");
        CHECK(json_is(llmpool_response_info(r), "cache_hit", i == 0 ? "false" : "true"),
              "call %d info %s", i, llmpool_response_info(r));
        llmpool_response_free(r);
    }
    CHECK(server_requests(c) == 1, "the server saw %lld chat requests", server_requests(c));
    llmpool_client_free(c);
}

static void test_budget_refuses_before_sending(void) {
    llmpool_client *c = client_with("\"budget\": {\"limit_usd\": 0.001, \"period\": \"day\"}");
    reset_server(c);
    const char *req = "{\"model\":\"gpt-4.1\",\"max_tokens\":20,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    int ok = 0;
    llmpool_code rc = LLMPOOL_OK;
    llmpool_response *r = NULL;
    while (ok < 1000) {
        r = NULL;
        rc = llmpool_chat(c, req, &r);
        if (rc != LLMPOOL_OK) break;
        const char *cost = json_top(llmpool_response_info(r), "cost_usd");
        CHECK(cost != NULL && *cost >= '0' && *cost <= '9', "info %s", llmpool_response_info(r));
        llmpool_response_free(r);
        ok++;
    }
    CHECK_CODE(rc, LLMPOOL_BUDGET_EXCEEDED, r);
    CHECK_CONTAINS(llmpool_response_error(r), "daily budget");
    CHECK(llmpool_response_status(r) == 0, "a refused call has no HTTP status");
    llmpool_response_free(r);
    CHECK(ok > 0 && server_requests(c) == ok, "ok %d, server saw %lld", ok, server_requests(c));
    llmpool_client_free(c);
}

static void test_routing_and_unknown_prices(void) {
    llmpool_client *c = client_with(
        "\"routing\": {\"default\": \"deepseek-v3.2\", \"rules\": "
        "[{\"if\": {\"contains_any\": [\"prove\"]}, \"model\": \"gpt-4.1\"}]}");
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_chat(
        c, "{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"Prove it\"}]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(json_is(llmpool_response_info(r), "model", "\"gpt-4.1\""), "%s", llmpool_response_info(r));
    CHECK(json_is(llmpool_response_info(r), "routed_from", "\"auto\""), "%s", llmpool_response_info(r));
    llmpool_response_free(r);
    rc = llmpool_chat(c, "{\"model\":\"no-such-price\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(json_is(llmpool_response_info(r), "cost_usd", "\"unknown\""), "%s", llmpool_response_info(r));
    llmpool_response_free(r);
    char *m = llmpool_client_metrics(c);
    CHECK(m != NULL, "metrics");
    CHECK_CONTAINS(m, "\"gpt-4.1\":{\"cache_hits\":0");
    CHECK_CONTAINS(m, "\"unpriced_calls\":1");
    llmpool_string_free(m);
    llmpool_client_free(c);
}

static int provider_calls;

static int provide_key(void *userdata, char *buf, size_t len) {
    provider_calls++;
    snprintf(buf, len, "%s", (const char *)userdata);
    return 0;
}

static void test_key_provider(void) {
    const char *key_url = need_env("LLMPOOL_TEST_KEY_URL");
    const char *key = need_env("LLMPOOL_TEST_KEY");
    char opts[1024], err[256];
    snprintf(opts, sizeof opts, "{\"base_url\": \"%s\", \"api_key\": \"sk-stale\"}", key_url);
    llmpool_client *c = NULL;
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "%s", err);
    CHECK(llmpool_client_set_key_provider(c, provide_key, (void *)key) == LLMPOOL_OK, "set provider");
    llmpool_response *r = NULL;
    const char *req = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"k\"}]}";
    llmpool_code rc = llmpool_chat(c, req, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(JSON_INT(llmpool_response_info(r), "attempts") == 2, "%s", llmpool_response_info(r));
    CHECK(provider_calls == 1, "provider called %d times", provider_calls);
    llmpool_response_free(r);
    /* Removing the provider and the key: a 401 comes back as HTTP_STATUS. */
    CHECK(llmpool_client_set_key_provider(c, NULL, NULL) == LLMPOOL_OK, "unset provider");
    CHECK(llmpool_client_set_api_key(c, NULL) == LLMPOOL_OK, "unset key");
    rc = llmpool_chat(c, req, &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    CHECK(llmpool_response_status(r) == 401, "status %u", llmpool_response_status(r));
    llmpool_response_free(r);
    llmpool_client_free(c);
}

static void test_warm(void) {
    llmpool_client *c = client_with("\"pool_max_idle_per_host\": 8");
    size_t opened = 0;
    CHECK(llmpool_client_warm(c, 3, &opened) == LLMPOOL_OK, "warm");
    CHECK(opened == 3, "opened %zu", opened);
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_chat(c, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w\"}]}", &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK(json_is(llmpool_response_info(r), "connection_reused", "true"), "%s", llmpool_response_info(r));
    llmpool_response_free(r);
    llmpool_client_free(c);
}

int main(void) {
    plain_url = need_env("LLMPOOL_TEST_PLAIN_URL");
    test_cache_hit_never_reaches_the_server();
    test_budget_refuses_before_sending();
    test_routing_and_unknown_prices();
    test_key_provider();
    test_warm();
    printf("test_cost: ok\n");
    return 0;
}
