/*
 * Agents from C, under ASan/UBSan: a streamed tool call seen as typed
 * deltas, run, and answered on the next turn; the assembled completion;
 * the Responses and Messages APIs streamed, blocking and async.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_PLAIN_URL.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

/* One tool call as its deltas build it. */
struct call {
    char id[64];
    char name[64];
    char args[512];
};

struct calls {
    struct call c[4];
    int n;
    int reasoning;
    char text[256];
};

static void copy(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    CHECK(n < cap, "too long: %s", src);
    memcpy(dst, src, n + 1);
}

static int on_delta(void *ud, const llmpool_delta *d) {
    struct calls *s = ud;
    CHECK(d != NULL && d->text != NULL, "NULL delta or text");
    CHECK(strlen(d->text) == d->text_len, "text_len %zu", d->text_len);
    switch (d->kind) {
    case LLMPOOL_DELTA_TOOL_CALL: {
        CHECK(d->call_index < 4, "call_index %u", d->call_index);
        struct call *c = &s->c[d->call_index];
        if ((int)d->call_index >= s->n) s->n = (int)d->call_index + 1;
        if (d->id) copy(c->id, sizeof c->id, d->id);
        if (d->name) copy(c->name, sizeof c->name, d->name);
        CHECK(strlen(c->args) + d->text_len < sizeof c->args, "arguments too long");
        strcat(c->args, d->text);
        break;
    }
    case LLMPOOL_DELTA_CONTENT:
        CHECK(strlen(s->text) + d->text_len < sizeof s->text, "text too long");
        strcat(s->text, d->text);
        break;
    case LLMPOOL_DELTA_REASONING:
        s->reasoning++;
        break;
    case LLMPOOL_DELTA_REFUSAL:
        break;
    }
    return 0;
}

/* The tool itself. */
static const char *get_weather(const char *args) {
    return strstr(args, "Paris") ? "{\"sky\": \"sunny\", \"celsius\": 21}" : "{\"sky\": \"unknown\"}";
}

static void tool_call_round_trip(llmpool_client *c) {
    const char *tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    char req[1024];
    snprintf(req, sizeof req,
             "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in "
             "Paris?\"}],\"tools\":%s,\"x_test_fixture\":\"tool_call\"}",
             tools);
    struct calls s;
    memset(&s, 0, sizeof s);
    llmpool_response *r = NULL;
    llmpool_code code = llmpool_stream_deltas(c, LLMPOOL_API_CHAT, req, on_delta, &s, &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK(s.n == 1, "%d tool calls", s.n);
    CHECK_STREQ(s.c[0].id, "call_1");
    CHECK_STREQ(s.c[0].name, "get_weather");
    CHECK_STREQ(s.c[0].args, "{\"city\": \"Paris\"}");
    const char *done = llmpool_response_completion(r);
    CHECK(done != NULL, "no completion");
    CHECK_CONTAINS(done, "\"object\":\"chat.completion\"");
    CHECK_CONTAINS(done, "\"finish_reason\":\"tool_calls\"");
    CHECK_CONTAINS(done, "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"");
    CHECK_NOT_CONTAINS(llmpool_response_info(r), "invalid_tool_arguments");
    CHECK_STREQ(llmpool_response_text(r), "");

    /* Run it, and answer the model on the next turn. */
    const char *result = get_weather(s.c[0].args);
    CHECK_CONTAINS(result, "sunny");
    char turn[2048];
    snprintf(turn, sizeof turn,
             "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in "
             "Paris?\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"%s\","
             "\"type\":\"function\",\"function\":{\"name\":\"%s\",\"arguments\":\"{\\\"city\\\": "
             "\\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"%s\",\"content\":\"%s\"}]}",
             s.c[0].id, s.c[0].name, s.c[0].id, "sunny, 21 C");
    llmpool_response_free(r);
    r = NULL;
    code = llmpool_chat(c, turn, &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK_CONTAINS(llmpool_response_text(r), "sunny");
    /* A call without stream: the completion is the body. */
    CHECK_STREQ(llmpool_response_completion(r), llmpool_response_body(r, NULL));
    llmpool_response_free(r);
}

static void reasoning_and_two_choices(llmpool_client *c) {
    struct calls s;
    memset(&s, 0, sizeof s);
    llmpool_response *r = NULL;
    llmpool_code code = llmpool_stream_deltas(
        c, LLMPOOL_API_CHAT, "{\"model\":\"m\",\"messages\":[],\"x_test_fixture\":\"reasoning\"}",
        on_delta, &s, &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK(s.reasoning == 3, "%d reasoning deltas", s.reasoning);
    CHECK_STREQ(s.text, "Answer.");
    CHECK_CONTAINS(llmpool_response_completion(r), "\"reasoning_content\":\"Let me think.\"");
    llmpool_response_free(r);

    r = NULL;
    code = llmpool_stream_deltas(
        c, LLMPOOL_API_CHAT, "{\"model\":\"m\",\"messages\":[],\"x_test_fixture\":\"two_choices\"}",
        on_delta, &s, &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "A1 A2");
    CHECK_CONTAINS(llmpool_response_completion(r), "\"content\":\"B1 B2\"");
    llmpool_response_free(r);
}

struct joined {
    char text[256];
    int events;
};

static int on_event(void *ud, const char *delta, size_t n, const char *ev, size_t ev_len) {
    struct joined *j = ud;
    CHECK(ev_len > 0 && ev[0] == '{', "event JSON: %s", ev);
    CHECK(strlen(j->text) + n < sizeof j->text, "too long");
    strcat(j->text, delta);
    j->events++;
    return 0;
}

static void responses_and_messages(llmpool_client *c) {
    struct joined j;
    memset(&j, 0, sizeof j);
    llmpool_response *r = NULL;
    llmpool_code code = llmpool_responses_stream(
        c, "{\"model\":\"test-model\",\"input\":\"hi\",\"x_test_tool\":true}", on_event, &j, &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK_STREQ(j.text, "Echo: hi");
    CHECK_STREQ(llmpool_response_text(r), "Echo: hi");
    CHECK_CONTAINS(llmpool_response_completion(r), "\"status\":\"completed\"");
    CHECK_CONTAINS(llmpool_response_completion(r), "\"call_id\":\"call_1\"");
    llmpool_response_free(r);

    memset(&j, 0, sizeof j);
    r = NULL;
    code = llmpool_messages_stream(
        c, "{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"yo\"}],"
           "\"x_test_tool\":true}",
        on_event, &j, &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK_STREQ(j.text, "Echo: yo");
    CHECK_CONTAINS(llmpool_response_completion(r), "\"input\":{\"city\":\"Paris\"}");
    CHECK_CONTAINS(llmpool_response_info(r), "\"finish_reason\":\"tool_use\"");
    llmpool_response_free(r);

    r = NULL;
    code = llmpool_messages_stream(
        c, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"yo\"}],"
           "\"x_test_overloaded\":true}",
        on_event, &j, &r);
    CHECK_CODE(code, LLMPOOL_PROTOCOL, r);
    CHECK_CONTAINS(llmpool_response_error(r), "Overloaded");
    llmpool_response_free(r);

    r = NULL;
    code = llmpool_responses(c, "{\"model\":\"test-model\",\"input\":\"plain\"}", &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "Echo: plain");
    llmpool_response_free(r);
    r = NULL;
    code = llmpool_messages(c, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                            &r);
    CHECK_CODE(code, LLMPOOL_OK, r);
    CHECK_STREQ(llmpool_response_text(r), "Echo: x");
    llmpool_response_free(r);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    llmpool_response *r;
    struct calls s;
    struct joined j;
};

static int on_event_async(void *ud, const char *delta, size_t n, const char *ev, size_t ev_len) {
    struct waiter *w = ud;
    return on_event(&w->j, delta, n, ev, ev_len);
}

static int on_delta_async(void *ud, const llmpool_delta *d) {
    struct waiter *w = ud;
    return on_delta(&w->s, d);
}

static void on_done(void *ud, llmpool_response *r) {
    struct waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->r = r;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static llmpool_response *wait_done(struct waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (w->r == NULL) pthread_cond_wait(&w->cv, &w->mu);
    llmpool_response *r = w->r;
    w->r = NULL;
    pthread_mutex_unlock(&w->mu);
    return r;
}

static void async_forms(llmpool_client *c) {
    struct waiter w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    llmpool_call *call = NULL;
    llmpool_code code = llmpool_stream_deltas_async(
        c, LLMPOOL_API_MESSAGES,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hey\"}],\"stream\":true,"
        "\"x_test_tool\":true}",
        on_delta_async, on_done, &w, &call);
    CHECK(code == LLMPOOL_OK && call != NULL, "submit: %s", llmpool_code_name(code));
    llmpool_response *r = wait_done(&w);
    CHECK_CODE(llmpool_response_code(r), LLMPOOL_OK, r);
    CHECK_STREQ(w.s.text, "Echo: hey");
    CHECK(w.s.n == 2 && strcmp(w.s.c[1].name, "get_weather") == 0, "tool_use deltas: %d", w.s.n);
    CHECK_STREQ(w.s.c[1].args, "{\"city\": \"Paris\"}");
    llmpool_response_free(r);
    llmpool_call_free(call);

    call = NULL;
    code = llmpool_responses_async(c, "{\"model\":\"m\",\"input\":\"async\"}", on_done, &w, &call);
    CHECK(code == LLMPOOL_OK, "submit");
    r = wait_done(&w);
    CHECK_STREQ(llmpool_response_text(r), "Echo: async");
    CHECK(llmpool_response_completion(r) != NULL, "completion");
    llmpool_response_free(r);
    llmpool_call_free(call);

    call = NULL;
    code = llmpool_responses_stream_async(c, "{\"model\":\"m\",\"input\":\"ev\"}", on_event_async,
                                          on_done, &w, &call);
    CHECK(code == LLMPOOL_OK, "submit");
    r = wait_done(&w);
    CHECK_STREQ(llmpool_response_text(r), "Echo: ev");
    CHECK_STREQ(w.j.text, "Echo: ev");
    llmpool_response_free(r);
    llmpool_call_free(call);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
}

int main(void) {
    const char *url = need_env("LLMPOOL_TEST_PLAIN_URL");
    char opts[512];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"api_key\":\"sk-agents\"}", url);
    llmpool_client *c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client: %s", err);
    tool_call_round_trip(c);
    reasoning_and_two_choices(c);
    responses_and_messages(c);
    async_forms(c);
    llmpool_client_free(c);
    printf("test_agents: OK\n");
    return 0;
}
