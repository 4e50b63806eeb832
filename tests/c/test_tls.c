/*
 * TLS against the test server started with --tls --ca-out: trusted through
 * ca_file (OK), untrusted without it (LLMPOOL_TLS), and with
 * insecure_skip_tls_verify (OK, with a warning in the metrics).
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_TLS_URL, LLMPOOL_TEST_CA_FILE.
 */
#include "check.h"

static const char *URL;

static llmpool_client *client(const char *extra) { return client_at(URL, extra); }

static llmpool_code chat(llmpool_client *c, llmpool_response **r) {
    *r = NULL;
    llmpool_code rc = llmpool_chat(
        c, "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"over TLS\"}]}", r);
    CHECK(*r != NULL, "no response");
    return rc;
}

int main(void) {
    URL = need_env("LLMPOOL_TEST_TLS_URL");
    const char *ca = need_env("LLMPOOL_TEST_CA_FILE");
    CHECK(strncmp(URL, "https://", 8) == 0, "not an https URL: %s", URL);

    /* Trusted through ca_file; the connection is pooled across calls. */
    char extra[1024];
    snprintf(extra, sizeof extra, "\"ca_file\":\"%s\"", ca);
    llmpool_client *c = client(extra);
    for (int i = 0; i < 3; i++) {
        llmpool_response *r;
        llmpool_code rc = chat(c, &r);
        CHECK_CODE(rc, LLMPOOL_OK, r);
        CHECK_STREQ(llmpool_response_text(r), "Echo: over TLS");
        llmpool_response_free(r);
    }
    char *m = llmpool_client_metrics(c);
    CHECK(JSON_INT(m, "connections_opened") == 1, "TLS connections_opened: %s", m);
    CHECK(json_is(m, "warnings", "[]"), "warnings with verification on: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);

    /* The same CA given inline as ca_pem. */
    FILE *f = fopen(ca, "rb");
    CHECK(f != NULL, "cannot open %s", ca);
    char pem[16384];
    size_t n = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[n] = '\0';
    /* JSON-escape the newlines. */
    char escaped[32768];
    char *o = escaped;
    o += sprintf(o, "\"ca_pem\":\"");
    for (size_t i = 0; i < n; i++) {
        if (pem[i] == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (pem[i] != '\r') {
            *o++ = pem[i];
        }
    }
    *o++ = '"';
    *o = '\0';
    char opts[40000];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",%s}", URL, escaped);
    c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "ca_pem: %s", err);
    llmpool_response *r;
    llmpool_code rc = chat(c, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
    llmpool_client_free(c);

    /* Without the CA: the handshake fails with LLMPOOL_TLS, not retried into
     * something else, and no HTTP status. */
    c = client("");
    rc = chat(c, &r);
    CHECK_CODE(rc, LLMPOOL_TLS, r);
    CHECK(llmpool_response_status(r) == 0, "status %u", llmpool_response_status(r));
    CHECK(llmpool_response_error(r)[0] != '\0', "empty error");
    llmpool_response_free(r);
    llmpool_client_free(c);

    /* insecure_skip_tls_verify: OK, and the metrics carry a warning. */
    c = client("\"insecure_skip_tls_verify\":true");
    rc = chat(c, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "Echo: over TLS");
    llmpool_response_free(r);
    m = llmpool_client_metrics(c);
    CHECK(json_is(m, "warnings", "[\""), "no warning for insecure_skip_tls_verify: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);

    printf("test_tls: OK\n");
    return 0;
}
