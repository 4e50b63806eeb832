/*
 * Streams whose events go to an llmpool_queue (llmpool_stream_queued),
 * drained with poll() and llmpool_queue_take on this one thread: many at
 * once, in order and whole; a cancel; bad arguments; a queue freed with
 * events still in it (the sanitizers see any leak).
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdint.h>

#include "check.h"

static const char *URL;

#define STREAMS 200
#define WORDS "alpha beta gamma delta epsilon"

static llmpool_client *client(void) {
    char opts[512];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"max_retries\":0}", URL);
    llmpool_client *c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client: %s", err);
    return c;
}

static void request(char *buf, size_t len, int i, int delay_ms) {
    snprintf(buf, len,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%d " WORDS
             "\"}],\"x_test_stream_delay_ms\":%d}",
             i, delay_ms);
}

static void test_many_streams_in_order(void) {
    llmpool_client *c = client();
    llmpool_queue *q = NULL;
    CHECK(llmpool_queue_new(&q) == LLMPOOL_OK, "queue");
    static char text[STREAMS][256];
    static int done[STREAMS];
    uint64_t ids[STREAMS];
    for (int i = 0; i < STREAMS; i++) {
        char req[256];
        request(req, sizeof req, i, 20);
        llmpool_call *call = NULL;
        CHECK_CODE(llmpool_stream_queued(c, LLMPOOL_API_CHAT, req, q, (uint64_t)i, &call),
                   LLMPOOL_OK, NULL);
        ids[i] = llmpool_call_id(call);
        llmpool_call_free(call);
    }
    int finished = 0, batches = 0, deltas = 0;
    llmpool_event ev[64];
    while (finished < STREAMS) {
        struct pollfd p = {.fd = llmpool_queue_fd(q), .events = POLLIN};
        CHECK(poll(&p, 1, 10000) == 1, "no event within 10 s (%d done)", finished);
        size_t n = llmpool_queue_take(q, ev, 64);
        CHECK(n > 0, "the fd was readable but nothing was taken");
        batches++;
        for (size_t k = 0; k < n; k++) {
            int i = (int)ev[k].tag;
            CHECK(i >= 0 && i < STREAMS, "tag %d", i);
            CHECK(ev[k].call_id == ids[i], "call id %llu, want %llu",
                  (unsigned long long)ev[k].call_id, (unsigned long long)ids[i]);
            CHECK(!done[i], "an event of stream %d after its DONE", i);
            if (ev[k].kind == LLMPOOL_EVENT_DELTA) {
                CHECK(ev[k].response == NULL, "a delta with a response");
                CHECK(ev[k].delta.text != NULL, "delta text NULL");
                CHECK(strlen(ev[k].delta.text) == ev[k].delta.text_len, "length");
                CHECK(strlen(text[i]) + ev[k].delta.text_len < sizeof text[i], "too long");
                strcat(text[i], ev[k].delta.text);
                deltas++;
            } else {
                CHECK(ev[k].kind == LLMPOOL_EVENT_DONE, "kind %d", (int)ev[k].kind);
                llmpool_response *r = ev[k].response;
                CHECK_CODE(llmpool_response_code(r), LLMPOOL_OK, r);
                CHECK(llmpool_response_call_id(r) == ids[i], "response call id");
                CHECK_STREQ(llmpool_response_text(r), text[i]);
                llmpool_response_free(r);
                done[i] = 1;
                finished++;
            }
        }
    }
    for (int i = 0; i < STREAMS; i++) {
        char want[256];
        snprintf(want, sizeof want, "Echo: %d " WORDS, i);
        CHECK_STREQ(text[i], want);
    }
    CHECK(batches < deltas, "%d batches for %d deltas: events were not batched", batches, deltas);
    CHECK(llmpool_queue_take(q, ev, 64) == 0, "nothing left");
    printf("  %d streams, %d deltas in %d batches\n", STREAMS, deltas, batches);
    llmpool_client_free(c);
    llmpool_queue_free(q);
}

static void test_cancel_and_bad_arguments(void) {
    llmpool_client *c = client();
    llmpool_queue *q = NULL;
    CHECK(llmpool_queue_new(&q) == LLMPOOL_OK, "queue");
    llmpool_call *call = (llmpool_call *)1;
    CHECK_CODE(llmpool_stream_queued(c, LLMPOOL_API_CHAT, "{\"model\":", q, 1, &call),
               LLMPOOL_INVALID_ARGUMENT, NULL);
    CHECK(call == NULL, "*call cleared on error");
    CHECK_CODE(llmpool_stream_queued(c, LLMPOOL_API_CHAT, "{}", NULL, 1, NULL),
               LLMPOOL_INVALID_ARGUMENT, NULL);
    CHECK_CODE(llmpool_stream_queued(c, 7, "{}", q, 1, NULL), LLMPOOL_INVALID_ARGUMENT, NULL);
    CHECK_CODE(llmpool_stream_queued(NULL, LLMPOOL_API_CHAT, "{}", q, 1, NULL),
               LLMPOOL_INVALID_ARGUMENT, NULL);
    CHECK_CODE(llmpool_stream_queued(c, LLMPOOL_API_CHAT, NULL, q, 1, NULL),
               LLMPOOL_INVALID_ARGUMENT, NULL);
    llmpool_event ev[8];
    CHECK(llmpool_queue_take(q, ev, 8) == 0, "a refused submit queued something");
    CHECK(llmpool_queue_take(NULL, ev, 8) == 0, "NULL queue");
    CHECK(llmpool_queue_take(q, NULL, 8) == 0, "NULL out");

    /* A slow stream, cancelled: its DONE says so. */
    char req[256];
    request(req, sizeof req, 9, 2000);
    CHECK_CODE(llmpool_stream_queued(c, LLMPOOL_API_CHAT, req, q, 42, &call), LLMPOOL_OK, NULL);
    llmpool_call_cancel(call);
    int got_done = 0;
    while (!got_done) {
        CHECK(llmpool_queue_wait(q, 10000) == 1, "no DONE after a cancel");
        size_t n = llmpool_queue_take(q, ev, 8);
        for (size_t k = 0; k < n; k++) {
            CHECK(ev[k].tag == 42, "tag");
            if (ev[k].kind == LLMPOOL_EVENT_DONE) {
                CHECK_CODE(llmpool_response_code(ev[k].response), LLMPOOL_CANCELLED,
                           ev[k].response);
                llmpool_response_free(ev[k].response);
                got_done = 1;
            }
        }
    }
    llmpool_call_free(call);

    /* Freed with events inside: the client first (it waits for its calls),
     * then the queue, which frees what nobody took. */
    for (int i = 0; i < 5; i++) {
        request(req, sizeof req, i, 0);
        CHECK_CODE(llmpool_stream_queued(c, LLMPOOL_API_CHAT, req, q, (uint64_t)i, NULL),
                   LLMPOOL_OK, NULL);
    }
    llmpool_client_free(c);
    llmpool_queue_free(q);
}

int main(void) {
    URL = need_env("LLMPOOL_TEST_PLAIN_URL");
    test_many_streams_in_order();
    test_cancel_and_bad_arguments();
    printf("test_queue_streams: OK\n");
    return 0;
}
