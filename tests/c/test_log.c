/*
 * The log callback: lines arrive with their level, below min_level only;
 * the API key never appears; NULL cb turns logging off; a bad min_level or
 * a NULL client is LLMPOOL_INVALID_ARGUMENT; without a callback,
 * LLMPOOL_LOG=info writes the lines to stderr.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_KEY_URL, LLMPOOL_TEST_KEY.
 */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "check.h"

static const char CHAT[] = "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

struct sink {
    char text[65536];
    size_t used;
    int lines;
    int max_level;
};

static void on_line(void *userdata, int level, const char *message, size_t len) {
    struct sink *s = userdata;
    CHECK(strlen(message) == len, "len %zu but strlen %zu", len, strlen(message));
    CHECK(level >= LLMPOOL_LOG_ERROR && level <= LLMPOOL_LOG_TRACE, "level %d", level);
    if (level > s->max_level) s->max_level = level;
    s->lines++;
    int n = snprintf(s->text + s->used, sizeof s->text - s->used, "%d %s\n", level, message);
    if (n > 0 && (size_t)n < sizeof s->text - s->used) s->used += (size_t)n;
}

static void chat_ok(llmpool_client *c) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_chat(c, CHAT, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
}

int main(void) {
    const char *url = need_env("LLMPOOL_TEST_KEY_URL");
    const char *key = need_env("LLMPOOL_TEST_KEY");
    char extra[512];
    snprintf(extra, sizeof extra, "\"api_key\":\"%s\",\"log_bodies\":true", key);
    llmpool_client *c = client_at(url, extra);

    static struct sink s;
    CHECK(llmpool_client_set_log_callback(c, LLMPOOL_LOG_TRACE, on_line, &s) == LLMPOOL_OK, "set");
    chat_ok(c);
    CHECK(s.lines >= 3, "lines: %d\n%s", s.lines, s.text);
    CHECK_CONTAINS(s.text, "opened to 127.0.0.1");
    CHECK_CONTAINS(s.text, "answer HTTP 200");
    CHECK_CONTAINS(s.text, "request body:");
    CHECK(s.max_level == LLMPOOL_LOG_TRACE, "max level %d", s.max_level);
    CHECK_NOT_CONTAINS(s.text, key);

    /* The Prometheus exposition counts the call and never shows the key. */
    char *prom = llmpool_client_metrics_prometheus(c);
    CHECK(prom != NULL, "metrics_prometheus");
    CHECK_CONTAINS(prom, "# TYPE llmpool_requests_total counter\n");
    CHECK_CONTAINS(prom, "code=\"LLMPOOL_OK\"} 1\n");
    CHECK_CONTAINS(prom, "# TYPE gen_ai_client_operation_duration_seconds histogram\n");
    CHECK_NOT_CONTAINS(prom, key);
    llmpool_string_free(prom);

    /* WARN only: a successful call says nothing. */
    memset(&s, 0, sizeof s);
    CHECK(llmpool_client_set_log_callback(c, LLMPOOL_LOG_WARN, on_line, &s) == LLMPOOL_OK, "set");
    chat_ok(c);
    CHECK(s.lines == 0, "WARN level logged a success:\n%s", s.text);

    /* Bad arguments keep the old setting. */
    CHECK(llmpool_client_set_log_callback(c, 0, on_line, &s) == LLMPOOL_INVALID_ARGUMENT, "0");
    CHECK(llmpool_client_set_log_callback(c, 6, on_line, &s) == LLMPOOL_INVALID_ARGUMENT, "6");
    CHECK(llmpool_client_set_log_callback(NULL, 3, on_line, &s) == LLMPOOL_INVALID_ARGUMENT,
          "NULL client");

    /* NULL cb: off. */
    CHECK(llmpool_client_set_log_callback(c, 99, NULL, NULL) == LLMPOOL_OK, "off");
    chat_ok(c);
    CHECK(s.lines == 0, "logged after NULL cb:\n%s", s.text);
    llmpool_client_free(c);

    /* No callback: LLMPOOL_LOG=info writes to stderr. */
    CHECK(setenv("LLMPOOL_LOG", "info", 1) == 0, "setenv");
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL, "tmpfile");
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fileno(tmp), 2) >= 0, "dup2");
    c = client_at(url, extra);
    chat_ok(c);
    llmpool_client_free(c);
    fflush(stderr);
    CHECK(dup2(saved, 2) >= 0, "restore stderr");
    close(saved);
    unsetenv("LLMPOOL_LOG");
    static char err_text[65536];
    rewind(tmp);
    size_t n = fread(err_text, 1, sizeof err_text - 1, tmp);
    err_text[n] = '\0';
    fclose(tmp);
    CHECK_CONTAINS(err_text, "llmpool INFO  call=");
    CHECK_CONTAINS(err_text, "answer HTTP 200");
    CHECK_NOT_CONTAINS(err_text, "DEBUG");
    CHECK_NOT_CONTAINS(err_text, key);
    printf("test_log: ok\n");
    return 0;
}
