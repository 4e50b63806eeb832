/*
 * One client shared by 8 threads, 25 chat calls each: every call succeeds
 * with its own answer, and the metrics count exactly 200 requests.
 *
 * Environment (set by tests/c_api.rs): LLMPOOL_TEST_PLAIN_URL.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define THREADS 8
#define CALLS 25

struct job {
    llmpool_client *client;
    int id;
    int ok;
};

static void *worker(void *arg) {
    struct job *j = arg;
    for (int i = 0; i < CALLS; i++) {
        char req[256];
        char want[64];
        snprintf(req, sizeof req,
                 "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"t%d-%d\"}]}",
                 j->id, i);
        snprintf(want, sizeof want, "Echo: t%d-%d", j->id, i);
        llmpool_response *r = NULL;
        llmpool_code rc = llmpool_chat(j->client, req, &r);
        CHECK_CODE(rc, LLMPOOL_OK, r);
        CHECK_STREQ(llmpool_response_text(r), want);
        /* Metrics may be read concurrently with calls. */
        if (i % 5 == 0) {
            char *m = llmpool_client_metrics(j->client);
            CHECK(m != NULL, "metrics");
            llmpool_string_free(m);
        }
        llmpool_response_free(r);
        j->ok++;
    }
    return NULL;
}

int main(void) {
    const char *url = need_env("LLMPOOL_TEST_PLAIN_URL");
    char opts[512];
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"backoff_factor\":0.01}", url);
    llmpool_client *c = NULL;
    char err[256];
    CHECK(llmpool_client_new(opts, &c, err, sizeof err) == LLMPOOL_OK, "client_new: %s", err);

    pthread_t threads[THREADS];
    struct job jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (struct job){.client = c, .id = t, .ok = 0};
        CHECK(pthread_create(&threads[t], NULL, worker, &jobs[t]) == 0, "pthread_create");
    }
    int ok = 0;
    for (int t = 0; t < THREADS; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0, "pthread_join");
        ok += jobs[t].ok;
    }
    CHECK(ok == THREADS * CALLS, "%d calls succeeded", ok);

    char *m = llmpool_client_metrics(c);
    CHECK(m != NULL, "metrics");
    CHECK(JSON_INT(m, "requests") == THREADS * CALLS, "requests: %s", m);
    CHECK(JSON_INT(m, "errors") == 0, "errors: %s", m);
    CHECK(JSON_INT(m, "in_flight") == 0, "in_flight: %s", m);
    long long opened = JSON_INT(m, "connections_opened");
    CHECK(opened >= 1 && opened <= THREADS, "connections_opened %lld: %s", opened, m);
    CHECK(JSON_INT(m, "connections_reused") == THREADS * CALLS - opened, "reused: %s", m);
    llmpool_string_free(m);
    llmpool_client_free(c);
    printf("test_threads: OK\n");
    return 0;
}
