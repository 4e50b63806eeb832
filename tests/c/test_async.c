/*
 * The async C API under ASan/UBSan: callbacks run once per call on library
 * threads; the completion queue and its fd; per-call cancel within 100 ms
 * (plain and streaming) leaving siblings untouched; cancelling a finished
 * call; max_concurrency waits and queue timeouts; done submitting more
 * calls; llmpool_client_free with calls in flight (cancels, waits for every
 * done) and from inside a done of the same client (returns, no deadlock).
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_PLAIN_URL.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"

static const char *URL;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void control(llmpool_client *c, const char *path, const char *body) {
    llmpool_response *r = NULL;
    llmpool_code rc = llmpool_request(c, "POST", path, body, &r);
    CHECK_CODE(rc, LLMPOOL_OK, r);
    llmpool_response_free(r);
}

/* Completions collected by callbacks: one slot per expected call. */
#define MAXC 128
struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    llmpool_response *resp[MAXC];
    double at_ms[MAXC];
    pthread_t thread[MAXC];
};

static void collect_init(struct collect *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void on_done(void *ud, llmpool_response *r) {
    struct collect *c = ud;
    CHECK(r != NULL, "done got NULL");
    pthread_mutex_lock(&c->mu);
    CHECK(c->n < MAXC, "too many completions");
    c->resp[c->n] = r;
    c->at_ms[c->n] = now_ms();
    c->thread[c->n] = pthread_self();
    c->n++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void wait_for(struct collect *c, int n, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    pthread_mutex_lock(&c->mu);
    while (c->n < n) {
        CHECK(now_ms() < deadline, "only %d of %d completions after %d ms", c->n, n, timeout_ms);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
}

static llmpool_response *find(struct collect *c, uint64_t id) {
    pthread_mutex_lock(&c->mu);
    llmpool_response *r = NULL;
    for (int i = 0; i < c->n; i++) {
        if (llmpool_response_call_id(c->resp[i]) == id) r = c->resp[i];
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

static void collect_free(struct collect *c) {
    for (int i = 0; i < c->n; i++) llmpool_response_free(c->resp[i]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void chat_req(char *buf, size_t n, const char *content) {
    snprintf(buf, n, "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
             content);
}

/* 64 calls submitted from this thread: each done runs once, on another
 * thread, with its own answer, call id and info.call_id. */
static void test_callbacks(void) {
    llmpool_client *c = client_at(URL, "");
    struct collect col;
    collect_init(&col);
    llmpool_call *calls[64];
    for (int i = 0; i < 64; i++) {
        char req[256], content[32];
        snprintf(content, sizeof content, "a%d", i);
        chat_req(req, sizeof req, content);
        llmpool_code rc = llmpool_chat_async(c, req, on_done, &col, &calls[i]);
        CHECK(rc == LLMPOOL_OK, "submit %d: %s", i, llmpool_code_name(rc));
        CHECK(calls[i] != NULL && llmpool_call_id(calls[i]) != 0, "call handle");
    }
    wait_for(&col, 64, 20000);
    sleep_ms(50);
    CHECK(col.n == 64, "done ran %d times for 64 calls", col.n);
    for (int i = 0; i < 64; i++) {
        uint64_t id = llmpool_call_id(calls[i]);
        llmpool_response *r = find(&col, id);
        CHECK(r != NULL, "no response for call %d", i);
        CHECK_CODE(llmpool_response_code(r), LLMPOOL_OK, r);
        char want[64];
        snprintf(want, sizeof want, "Echo: a%d", i);
        CHECK_STREQ(llmpool_response_text(r), want);
        CHECK(JSON_INT(llmpool_response_info(r), "call_id") == (long long)id, "info.call_id %s",
              llmpool_response_info(r));
        /* Cancelling a finished call is a no-op. */
        CHECK(llmpool_call_cancel(calls[i]) == LLMPOOL_OK, "cancel finished");
        llmpool_call_free(calls[i]);
    }
    for (int i = 0; i < 64; i++) {
        CHECK(!pthread_equal(col.thread[i], pthread_self()), "done ran on the submitting thread");
    }
    /* Async calls count in the metrics like blocking ones. */
    char *m = llmpool_client_metrics(c);
    CHECK(JSON_INT(m, "requests") == 64, "requests in %s", m);
    CHECK_CONTAINS(m, "\"async\":{");
    llmpool_string_free(m);
    /* embeddings and request too; call may be NULL. */
    CHECK(llmpool_embeddings_async(c, "{\"model\":\"e\",\"input\":\"x\"}", on_done, &col, NULL) ==
              LLMPOOL_OK,
          "embeddings_async");
    CHECK(llmpool_request_async(c, "GET", "/models", NULL, on_done, &col, NULL) == LLMPOOL_OK,
          "request_async");
    wait_for(&col, 66, 10000);
    for (int i = 64; i < 66; i++) CHECK_CODE(llmpool_response_code(col.resp[i]), LLMPOOL_OK, col.resp[i]);
    llmpool_client_free(c);
    collect_free(&col);
}

/* Raw bytes without blocking: a body with NULs echoed byte for byte, the
 * caller's buffer free to reuse at once (copied at submit); bad arguments
 * refused at submit with done never run. */
static void test_raw(void) {
    llmpool_client *c = client_at(URL, "");
    struct collect col;
    collect_init(&col);
    size_t n = 256 * 1024;
    uint8_t *body = malloc(n);
    CHECK(body != NULL, "malloc");
    for (size_t i = 0; i < n; i++) body[i] = (uint8_t)(i * 31u);
    uint8_t *sent = malloc(n);
    CHECK(sent != NULL, "malloc");
    memcpy(sent, body, n);
    llmpool_call *call = NULL;
    llmpool_code rc = llmpool_request_raw_async(c, "POST", "/echo", "application/octet-stream",
                                                body, n, on_done, &col, &call);
    CHECK(rc == LLMPOOL_OK, "request_raw_async: %s", llmpool_code_name(rc));
    memset(body, 0xAB, n);
    free(body);
    wait_for(&col, 1, 10000);
    llmpool_response *r = col.resp[0];
    CHECK_CODE(llmpool_response_code(r), LLMPOOL_OK, r);
    CHECK(llmpool_response_call_id(r) == llmpool_call_id(call), "call id");
    size_t len = 0;
    const char *echoed = llmpool_response_body(r, &len);
    CHECK(len == n && memcmp(echoed, sent, n) == 0, "echoed %zu bytes, sent %zu", len, n);
    CHECK_STREQ(llmpool_response_header(r, "content-type"), "application/octet-stream");
    llmpool_call_free(call);
    free(sent);
    /* Refused at submit: NULL body with a length, a bad path. */
    call = (llmpool_call *)1;
    rc = llmpool_request_raw_async(c, "POST", "/echo", NULL, NULL, 5, on_done, &col, &call);
    CHECK(rc == LLMPOOL_INVALID_ARGUMENT && call == NULL, "NULL body: %s", llmpool_code_name(rc));
    rc = llmpool_request_raw_async(c, "POST", "echo", NULL, NULL, 0, on_done, &col, NULL);
    CHECK(rc == LLMPOOL_INVALID_ARGUMENT, "bad path: %s", llmpool_code_name(rc));
    sleep_ms(50);
    CHECK(col.n == 1, "done ran for a refused submit");
    /* A warm-up without blocking: its response says how many opened. */
    rc = llmpool_client_warm_async(c, 3, on_done, &col, NULL);
    CHECK(rc == LLMPOOL_OK, "warm_async: %s", llmpool_code_name(rc));
    wait_for(&col, 2, 10000);
    CHECK_CODE(llmpool_response_code(col.resp[1]), LLMPOOL_OK, col.resp[1]);
    CHECK(JSON_INT(llmpool_response_info(col.resp[1]), "opened") >= 1, "opened in %s",
          llmpool_response_info(col.resp[1]));
    llmpool_client_free(c);
    collect_free(&col);
}

/* The queue: fd readable exactly while completions wait; pop never blocks. */
static void test_queue(void) {
    llmpool_client *c = client_at(URL, "");
    llmpool_queue *q = NULL;
    CHECK(llmpool_queue_new(&q) == LLMPOOL_OK, "queue_new");
    int fd = llmpool_queue_fd(q);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 0, "fd readable while empty");
    CHECK(llmpool_queue_pop(q) == NULL, "pop on empty");
    uint64_t ids[20];
    for (int i = 0; i < 20; i++) {
        llmpool_call *call = NULL;
        char req[256], content[32];
        snprintf(content, sizeof content, "q%d", i);
        chat_req(req, sizeof req, content);
        CHECK(llmpool_chat_async(c, req, llmpool_queue_done, q, &call) == LLMPOOL_OK, "submit");
        ids[i] = llmpool_call_id(call);
        llmpool_call_free(call);
    }
    int got = 0;
    double deadline = now_ms() + 20000;
    while (got < 20) {
        CHECK(now_ms() < deadline, "only %d of 20 from the queue", got);
        p.revents = 0;
        int n = poll(&p, 1, 1000);
        if (n == 0) continue;
        CHECK(p.revents & POLLIN, "revents %d", p.revents);
        llmpool_response *r;
        int popped = 0;
        while ((r = llmpool_queue_pop(q)) != NULL) {
            uint64_t id = llmpool_response_call_id(r);
            int i = -1;
            for (int k = 0; k < 20; k++)
                if (ids[k] == id) i = k;
            CHECK(i >= 0, "unknown call id %llu", (unsigned long long)id);
            char want[64];
            snprintf(want, sizeof want, "Echo: q%d", i);
            CHECK_STREQ(llmpool_response_text(r), want);
            llmpool_response_free(r);
            got++;
            popped++;
        }
        CHECK(popped > 0, "fd was readable but nothing to pop");
    }
    p.revents = 0;
    CHECK(poll(&p, 1, 0) == 0, "fd readable after the queue was emptied");
    /* Completions left in the queue are freed with it (LeakSanitizer). */
    CHECK(llmpool_chat_async(c, "{\"messages\":[]}", llmpool_queue_done, q, NULL) == LLMPOOL_OK,
          "submit");
    llmpool_client_free(c); /* waits for that done */
    CHECK(poll(&p, 1, 0) == 1, "the last completion is waiting");
    llmpool_queue_free(q);
}

/* Cancelling one slow call ends it within 100 ms; its sibling finishes. */
static void test_cancel_one(void) {
    llmpool_client *c = client_at(URL, "\"max_retries\":0");
    control(c, "/_test/faults", "{\"type\":\"delay\",\"ms\":3000}");
    struct collect col;
    collect_init(&col);
    llmpool_call *slow = NULL, *fast = NULL;
    char req[256];
    chat_req(req, sizeof req, "slow");
    CHECK(llmpool_chat_async(c, req, on_done, &col, &slow) == LLMPOOL_OK, "submit slow");
    sleep_ms(300); /* the slow call's request took the delay fault */
    chat_req(req, sizeof req, "fast");
    CHECK(llmpool_chat_async(c, req, on_done, &col, &fast) == LLMPOOL_OK, "submit fast");
    wait_for(&col, 1, 2500);
    CHECK(llmpool_response_call_id(col.resp[0]) == llmpool_call_id(fast), "fast first");
    CHECK_CODE(llmpool_response_code(col.resp[0]), LLMPOOL_OK, col.resp[0]);
    double t0 = now_ms();
    CHECK(llmpool_call_cancel(slow) == LLMPOOL_OK, "cancel");
    wait_for(&col, 2, 1000);
    double took = col.at_ms[1] - t0;
    CHECK(took < 100.0, "cancel took %.1f ms", took);
    llmpool_response *r = col.resp[1];
    CHECK(llmpool_response_call_id(r) == llmpool_call_id(slow), "slow second");
    CHECK_CODE(llmpool_response_code(r), LLMPOOL_CANCELLED, r);
    CHECK_CONTAINS(llmpool_response_error(r), "cancel");
    CHECK(llmpool_call_cancel(slow) == LLMPOOL_OK, "second cancel is a no-op");
    llmpool_call_free(slow);
    llmpool_call_free(fast);
    /* The client goes on working after a cancel. */
    llmpool_response *after = NULL;
    chat_req(req, sizeof req, "after");
    CHECK_CODE(llmpool_chat(c, req, &after), LLMPOOL_OK, after);
    llmpool_response_free(after);
    llmpool_client_free(c);
    collect_free(&col);
    printf("  cancel of one call: done after %.1f ms\n", took);
}

struct streamed {
    atomic_int events;
};

static int on_event(void *ud, const char *delta, size_t dl, const char *ev, size_t el) {
    (void)delta;
    (void)dl;
    (void)ev;
    (void)el;
    struct collect *col = ud;
    (void)col;
    return 0;
}

struct stream_ud {
    struct collect col;
    atomic_int events[2];
};

static int on_event_counted(void *ud, const char *delta, size_t dl, const char *ev, size_t el) {
    (void)delta;
    (void)ev;
    (void)el;
    (void)dl;
    atomic_int *n = ud;
    atomic_fetch_add(n, 1);
    return 0;
}

static struct collect stream_col;

static void on_stream_done(void *ud, llmpool_response *r) {
    (void)ud;
    on_done(&stream_col, r);
}

/* Cancelling one of two slow streams: it ends within 100 ms with its partial
 * text; the other one completes. */
static void test_cancel_stream(void) {
    llmpool_client *c = client_at(URL, "\"max_retries\":0");
    collect_init(&stream_col);
    atomic_int ev_a = 0, ev_b = 0;
    const char *req =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"one two three four\"}],"
        "\"x_test_stream_delay_ms\":150}";
    llmpool_call *a = NULL, *b = NULL;
    CHECK(llmpool_chat_stream_async(c, req, on_event_counted, on_stream_done, &ev_a, &a) ==
              LLMPOOL_OK,
          "stream a");
    CHECK(llmpool_chat_stream_async(c, req, on_event_counted, on_stream_done, &ev_b, &b) ==
              LLMPOOL_OK,
          "stream b");
    double deadline = now_ms() + 5000;
    while (atomic_load(&ev_a) < 2) {
        CHECK(now_ms() < deadline, "stream a got %d events", atomic_load(&ev_a));
        sleep_ms(5);
    }
    double t0 = now_ms();
    CHECK(llmpool_call_cancel(a) == LLMPOOL_OK, "cancel a");
    wait_for(&stream_col, 1, 1000);
    double took = stream_col.at_ms[0] - t0;
    llmpool_response *ra = stream_col.resp[0];
    CHECK(llmpool_response_call_id(ra) == llmpool_call_id(a), "a ends first");
    CHECK(took < 100.0, "stream cancel took %.1f ms", took);
    CHECK_CODE(llmpool_response_code(ra), LLMPOOL_CANCELLED, ra);
    CHECK(strlen(llmpool_response_text(ra)) > 0, "partial text kept");
    wait_for(&stream_col, 2, 10000);
    llmpool_response *rb = stream_col.resp[1];
    CHECK_CODE(llmpool_response_code(rb), LLMPOOL_OK, rb);
    CHECK_STREQ(llmpool_response_text(rb), "Echo: one two three four");
    CHECK(atomic_load(&ev_b) > atomic_load(&ev_a), "b got more events (%d vs %d)",
          atomic_load(&ev_b), atomic_load(&ev_a));
    llmpool_call_free(a);
    llmpool_call_free(b);
    llmpool_client_free(c);
    collect_free(&stream_col);
    (void)on_event;
    printf("  cancel of one stream: done after %.1f ms, partial text \"%s\"\n", took,
           "(kept)");
}

/* max_concurrency 2: the rest wait without threads; a short queue timeout
 * expires waiting calls with LLMPOOL_POOL_EXHAUSTED. */
static void test_max_concurrency(void) {
    llmpool_client *c = client_at(URL, "\"max_concurrency\":2,\"queue_timeout_ms\":400");
    control(c, "/_test/faults", "{\"type\":\"delay\",\"ms\":1000,\"times\":2}");
    struct collect col;
    collect_init(&col);
    char req[256];
    chat_req(req, sizeof req, "mc");
    for (int i = 0; i < 10; i++)
        CHECK(llmpool_chat_async(c, req, on_done, &col, NULL) == LLMPOOL_OK, "submit");
    sleep_ms(100);
    char *m = llmpool_client_metrics(c);
    const char *as = strstr(m, "\"async\":");
    CHECK(as != NULL, "metrics: %s", m);
    CHECK(JSON_INT(as + 8, "waiting_for_slot") == 8, "8 waiting: %s", as);
    CHECK(JSON_INT(as + 8, "threads") <= 3, "threads for 2 slots: %s", as);
    llmpool_string_free(m);
    wait_for(&col, 10, 10000);
    int exhausted = 0, ok = 0;
    for (int i = 0; i < 10; i++) {
        llmpool_code rc = llmpool_response_code(col.resp[i]);
        if (rc == LLMPOOL_POOL_EXHAUSTED) exhausted++;
        if (rc == LLMPOOL_OK) ok++;
    }
    CHECK(exhausted == 8 && ok == 2, "ok %d, exhausted %d", ok, exhausted);
    llmpool_client_free(c);
    collect_free(&col);
}

/* A done that submits the next call: a chain of 20. */
struct chain {
    llmpool_client *c;
    struct collect col;
    atomic_int left;
};

static void on_chain(void *ud, llmpool_response *r) {
    struct chain *ch = ud;
    CHECK_CODE(llmpool_response_code(r), LLMPOOL_OK, r);
    if (atomic_fetch_sub(&ch->left, 1) > 1) {
        CHECK(llmpool_chat_async(ch->c, "{\"messages\":[]}", on_chain, ch, NULL) == LLMPOOL_OK,
              "submit from done");
    }
    on_done(&ch->col, r);
}

static void test_submit_from_done(void) {
    struct chain ch;
    ch.c = client_at(URL, "");
    collect_init(&ch.col);
    atomic_store(&ch.left, 20);
    CHECK(llmpool_chat_async(ch.c, "{\"messages\":[]}", on_chain, &ch, NULL) == LLMPOOL_OK, "first");
    wait_for(&ch.col, 20, 20000);
    llmpool_client_free(ch.c);
    collect_free(&ch.col);
}

/* Free with 20 calls in flight: every done has run (cancelled) when free
 * returns, promptly; the collector is then safe to destroy. */
static void test_free_in_flight(void) {
    llmpool_client *c = client_at(URL, "\"max_retries\":0");
    control(c, "/_test/faults", "{\"type\":\"delay\",\"ms\":5000,\"times\":20}");
    struct collect col;
    collect_init(&col);
    char req[256];
    chat_req(req, sizeof req, "inflight");
    for (int i = 0; i < 20; i++)
        CHECK(llmpool_chat_async(c, req, on_done, &col, NULL) == LLMPOOL_OK, "submit");
    sleep_ms(200);
    double t0 = now_ms();
    llmpool_client_free(c);
    double took = now_ms() - t0;
    CHECK(col.n == 20, "free returned with %d of 20 dones run", col.n);
    CHECK(took < 1000.0, "free took %.1f ms", took);
    for (int i = 0; i < 20; i++)
        CHECK_CODE(llmpool_response_code(col.resp[i]), LLMPOOL_CANCELLED, col.resp[i]);
    collect_free(&col);
    /* Drain the server's remaining delay faults with a fresh client. */
    llmpool_client *c2 = client_at(URL, "");
    control(c2, "/_test/reset", "{}");
    llmpool_client_free(c2);
}

/* llmpool_client_free from inside a done of the same client: returns at
 * once; the other calls complete (cancelled) afterwards; no crash, no leak. */
struct self_free {
    llmpool_client *c;
    struct collect col;
    atomic_int freed;
};

static void on_self_free(void *ud, llmpool_response *r) {
    struct self_free *s = ud;
    if (atomic_exchange(&s->freed, 1) == 0) {
        double t0 = now_ms();
        llmpool_client_free(s->c);
        CHECK(now_ms() - t0 < 1000.0, "free inside done blocked");
    }
    on_done(&s->col, r);
}

static void test_free_inside_done(void) {
    struct self_free s;
    s.c = client_at(URL, "\"max_retries\":0");
    collect_init(&s.col);
    atomic_store(&s.freed, 0);
    /* One quick call, nine slow ones. The quick one still takes 300 ms, so
     * that its done (which frees the client) cannot run before the last
     * submit: submitting on a freed client is the caller's bug, and on a
     * quiet machine an instant answer raced the loop below. */
    control(s.c, "/_test/faults", "{\"type\":\"delay\",\"ms\":300}");
    control(s.c, "/_test/faults", "{\"type\":\"delay\",\"ms\":5000,\"times\":9}");
    char req[256];
    chat_req(req, sizeof req, "self");
    for (int i = 0; i < 10; i++)
        CHECK(llmpool_chat_async(s.c, req, on_self_free, &s, NULL) == LLMPOOL_OK, "submit");
    wait_for(&s.col, 10, 3000);
    int cancelled = 0;
    for (int i = 0; i < 10; i++)
        if (llmpool_response_code(s.col.resp[i]) == LLMPOOL_CANCELLED) cancelled++;
    CHECK(cancelled >= 8, "%d of the slow calls cancelled", cancelled);
    /* Give the library a moment to release the client after the last done. */
    sleep_ms(100);
    collect_free(&s.col);
    llmpool_client *c2 = client_at(URL, "");
    control(c2, "/_test/reset", "{}");
    llmpool_client_free(c2);
}

/* llmpool_client_cancel cancels async calls too. */
static void test_client_cancel(void) {
    llmpool_client *c = client_at(URL, "\"max_retries\":0");
    control(c, "/_test/faults", "{\"type\":\"delay\",\"ms\":5000,\"times\":5}");
    struct collect col;
    collect_init(&col);
    char req[256];
    chat_req(req, sizeof req, "cc");
    for (int i = 0; i < 5; i++)
        CHECK(llmpool_chat_async(c, req, on_done, &col, NULL) == LLMPOOL_OK, "submit");
    sleep_ms(200);
    double t0 = now_ms();
    CHECK(llmpool_client_cancel(c) == LLMPOOL_OK, "client_cancel");
    wait_for(&col, 5, 1000);
    CHECK(now_ms() - t0 < 500.0, "client_cancel slow");
    for (int i = 0; i < 5; i++)
        CHECK_CODE(llmpool_response_code(col.resp[i]), LLMPOOL_CANCELLED, col.resp[i]);
    llmpool_client_free(c);
    collect_free(&col);
    llmpool_client *c2 = client_at(URL, "");
    control(c2, "/_test/reset", "{}");
    llmpool_client_free(c2);
}

int main(void) {
    URL = need_env("LLMPOOL_TEST_PLAIN_URL");
    test_callbacks();
    test_raw();
    test_queue();
    test_cancel_one();
    test_cancel_stream();
    test_max_concurrency();
    test_submit_from_done();
    test_free_in_flight();
    test_free_inside_done();
    test_client_cancel();
    printf("test_async: OK\n");
    return 0;
}
