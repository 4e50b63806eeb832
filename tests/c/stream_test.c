/*
 * The llmpool_chat_stream callback contract, under ASan/UBSan: deltas in
 * order and NUL-terminated with consistent lengths, event JSON non-empty,
 * userdata passed through, abort via a non-zero return (LLMPOOL_CANCELLED
 * with the partial text), NULL arguments, a mid-stream error, a non-2xx
 * answer, and llmpool_client_cancel from another thread.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_PLAIN_URL.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"

#define MAGIC 0x5eedf00dU

static const char *URL;

struct seen {
    unsigned magic;
    int calls;
    int abort_after; /* return non-zero on this call (0: never) */
    char text[4096];
    size_t text_len;
    int nonempty_deltas;
    atomic_int *first_seen; /* set to 1 on the first callback (may be NULL) */
};

static int on_chunk(void *userdata, const char *delta, size_t delta_len, const char *event_json,
                    size_t event_len) {
    struct seen *s = userdata;
    CHECK(s != NULL && s->magic == MAGIC, "userdata not passed through");
    CHECK(delta != NULL && event_json != NULL, "NULL pointer in callback");
    CHECK(strlen(delta) == delta_len, "strlen(delta) %zu != delta_len %zu", strlen(delta),
          delta_len);
    CHECK(delta[delta_len] == '\0', "delta not NUL-terminated");
    CHECK(event_len > 0, "empty event JSON");
    CHECK(strlen(event_json) == event_len, "strlen(event) %zu != event_len %zu",
          strlen(event_json), event_len);
    CHECK(event_json[0] == '{' && event_json[event_len - 1] == '}', "event is not an object: %s",
          event_json);
    CHECK_CONTAINS(event_json, "chat.completion.chunk");
    /* Read every byte, so ASan catches a short buffer. */
    CHECK(s->text_len + delta_len < sizeof s->text, "too much text");
    memcpy(s->text + s->text_len, delta, delta_len);
    s->text_len += delta_len;
    s->text[s->text_len] = '\0';
    if (delta_len > 0) s->nonempty_deltas++;
    s->calls++;
    if (s->first_seen != NULL) atomic_store(s->first_seen, 1);
    return s->abort_after != 0 && s->calls >= s->abort_after;
}

static llmpool_client *client(const char *extra) { return client_at(URL, extra); }

static void control(llmpool_client *c, const char *path, const char *body) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_request(c, "POST", path, body, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
}

static void init_seen(struct seen *s, int abort_after) {
    memset(s, 0, sizeof *s);
    s->magic = MAGIC;
    s->abort_after = abort_after;
}

static llmpool_code stream(llmpool_client *c, const char *content, const char *extra,
                           struct seen *s, llmpool_response **out) {
    char req[1024];
    snprintf(req, sizeof req,
             "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]%s%s}",
             content, extra[0] ? "," : "", extra);
    *out = NULL;
    llmpool_code rc = llmpool_chat_stream(c, req, on_chunk, s, out);
    CHECK(*out != NULL, "no response");
    CHECK(llmpool_response_code(*out) == rc, "response code differs from returned code");
    return rc;
}

static void test_stream_ok(void) {
    llmpool_client *c = client("");
    struct seen s;
    init_seen(&s, 0);
    llmpool_response *r;
    llmpool_code rc = stream(c, "streamed from C", "", &s, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "Echo: streamed from C");
    CHECK_STREQ(s.text, llmpool_response_text(r));
    CHECK(s.nonempty_deltas == 4, "deltas: %d", s.nonempty_deltas);
    /* Role chunk, 4 words, finish chunk, usage chunk. */
    CHECK(s.calls == 7, "calls: %d", s.calls);
    const char *info = llmpool_response_info(r);
    CHECK(JSON_INT(info, "chunks") == 7, "chunks: %s", info);
    CHECK(json_is(info, "finish_reason", "\"stop\""), "finish_reason: %s", info);
    CHECK(json_has(info, "ttft_ms") && !json_is(info, "ttft_ms", "null"), "ttft_ms: %s", info);
    CHECK(json_is(info, "usage", "{"), "usage: %s", info);
    CHECK_CONTAINS(json_top(info, "usage"), "\"completion_tokens\"");
    llmpool_response_free(r);

    /* The connection went back to the pool: a plain call reuses it. */
    llmpool_response *p = NULL;
    rc = llmpool_chat(c, "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      &p);
    CHECK_CODE(rc, LLMPOOL_OK, p);
    CHECK(json_is(llmpool_response_info(p), "connection_reused", "true"), "info: %s",
          llmpool_response_info(p));
    llmpool_response_free(p);
    llmpool_client_free(c);
}

static void test_abort_by_callback(void) {
    llmpool_client *c = client("");
    struct seen s;
    init_seen(&s, 3);
    llmpool_response *r;
    llmpool_code rc = stream(c, "a b c d e f g", "", &s, &r);
    CHECK_CODE(rc, LLMPOOL_CANCELLED, r);
    CHECK(s.calls == 3, "callback called %d times after aborting", s.calls);
    CHECK_STREQ(llmpool_response_text(r), "Echo: a ");
    CHECK_STREQ(s.text, llmpool_response_text(r));
    CHECK_CONTAINS(llmpool_response_error(r), "callback");
    llmpool_response_free(r);

    /* The next stream on the same client works. */
    init_seen(&s, 0);
    rc = stream(c, "again", "", &s, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(s.text, "Echo: again");
    llmpool_response_free(r);
    llmpool_client_free(c);
}

static void test_null_arguments(void) {
    llmpool_client *c = client("");
    const char *req = "{\"messages\":[]}";
    struct seen s;
    init_seen(&s, 0);
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_chat_stream(c, req, NULL, &s, &r);
    CHECK_CODE(rc, LLMPOOL_INVALID_ARGUMENT, r);
    CHECK(r != NULL, "no response for a NULL cb");
    CHECK_CONTAINS(llmpool_response_error(r), "cb");
    llmpool_response_free(r);

    rc = llmpool_chat_stream(NULL, req, on_chunk, &s, &r);
    CHECK_CODE(rc, LLMPOOL_INVALID_ARGUMENT, r);
    CHECK_CONTAINS(llmpool_response_error(r), "client");
    llmpool_response_free(r);

    rc = llmpool_chat_stream(c, NULL, on_chunk, &s, &r);
    CHECK_CODE(rc, LLMPOOL_INVALID_ARGUMENT, r);
    CHECK_CONTAINS(llmpool_response_error(r), "request_json");
    llmpool_response_free(r);

    rc = llmpool_chat_stream(c, "{not json", on_chunk, &s, &r);
    CHECK_CODE(rc, LLMPOOL_INVALID_ARGUMENT, r);
    llmpool_response_free(r);

    /* A NULL out is allowed: only the code comes back. */
    rc = llmpool_chat_stream(c, req, NULL, &s, NULL);
    CHECK(rc == LLMPOOL_INVALID_ARGUMENT, "NULL cb, NULL out: %s", llmpool_code_name(rc));
    rc = llmpool_chat_stream(c, "{\"messages\":[{\"role\":\"user\",\"content\":\"n\"}]}", on_chunk,
                             &s, NULL);
    CHECK(rc == LLMPOOL_OK, "NULL out: %s", llmpool_code_name(rc));
    CHECK_STREQ(s.text, "Echo: n");
    llmpool_client_free(c);
}

static void test_mid_stream_error_and_http_status(void) {
    llmpool_client *c = client("");
    struct seen s;
    init_seen(&s, 0);
    llmpool_response *r;
    llmpool_code rc =
        stream(c, "one two three", "\"x_test_sse_error\":\"model overloaded\"", &s, &r);
    CHECK_CODE(rc, LLMPOOL_PROTOCOL, r);
    CHECK_CONTAINS(llmpool_response_error(r), "model overloaded");
    CHECK(llmpool_response_status(r) == 200, "status %u", llmpool_response_status(r));
    CHECK_STREQ(llmpool_response_text(r), "Echo: one ");
    CHECK_STREQ(s.text, llmpool_response_text(r));
    llmpool_response_free(r);

    control(c, "/_test/faults",
            "{\"type\":\"status\",\"code\":400,\"body\":\"{\\\"error\\\":{\\\"message\\\":"
            "\\\"no such model\\\"}}\"}");
    init_seen(&s, 0);
    rc = stream(c, "x", "", &s, &r);
    CHECK_CODE(rc, LLMPOOL_HTTP_STATUS, r);
    CHECK(llmpool_response_status(r) == 400, "status %u", llmpool_response_status(r));
    CHECK(s.calls == 0, "callback called for a 400");
    CHECK_CONTAINS(llmpool_response_error(r), "no such model");
    CHECK_CONTAINS(llmpool_response_body(r, NULL), "no such model");
    llmpool_response_free(r);
    llmpool_client_free(c);
}

struct cancel_job {
    llmpool_client *client;
    atomic_int first_seen;
};

/* Cancels the client once the stream is surely blocked in its long gap. */
static void *cancel_later(void *arg) {
    struct cancel_job *job = arg;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 3000 && !atomic_load(&job->first_seen); i++) nanosleep(&tick, NULL);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    llmpool_code rc = llmpool_client_cancel(job->client);
    CHECK(rc == LLMPOOL_OK, "cancel: %s", llmpool_code_name(rc));
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_cancel_from_another_thread(void) {
    llmpool_client *c = client("");
    struct cancel_job job;
    job.client = c;
    atomic_init(&job.first_seen, 0);
    struct seen s;
    init_seen(&s, 0);
    s.first_seen = &job.first_seen;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancel_later, &job) == 0, "pthread_create");
    llmpool_response *r;
    double t0 = now_s();
    llmpool_code rc = stream(c, "a b c", "\"x_test_stream_delay_ms\":20000", &s, &r);
    double took = now_s() - t0;
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
    CHECK_CODE(rc, LLMPOOL_CANCELLED, r);
    CHECK(took < 5.0, "cancel took %.2f s (the gap is 20 s)", took);
    CHECK(s.calls == 1, "calls before the 20 s gap: %d", s.calls);
    llmpool_response_free(r);

    init_seen(&s, 0);
    rc = stream(c, "after cancel", "", &s, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    CHECK_STREQ(s.text, "Echo: after cancel");
    llmpool_response_free(r);
    llmpool_client_free(c);
}

int main(void) {
    URL = need_env("LLMPOOL_TEST_PLAIN_URL");
    test_stream_ok();
    test_abort_by_callback();
    test_null_arguments();
    test_mid_stream_error_and_http_status();
    test_cancel_from_another_thread();
    printf("stream_test: all passed\n");
    return 0;
}
