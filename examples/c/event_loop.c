/*
 * llmpool async from one thread: submit 100 chat calls without blocking,
 * then collect every completion in a poll() loop on the completion queue's
 * file descriptor. The same fd works with epoll, libuv (uv_poll_t),
 * libevent or a GUI main loop. No thread of this program ever blocks on
 * the network: llmpool's own threads do the I/O.
 *
 *   cc -std=c11 -Wall -Wextra -Iinclude examples/c/event_loop.c \
 *      -Ltarget/release -lllmpool -Wl,-rpath,$PWD/target/release -o event_loop
 *   LLMPOOL_BASE_URL=http://127.0.0.1:8080/v1 ./event_loop [calls]
 *
 * The client takes its gateway from the environment (NULL options), as in
 * quickstart.c. Exits 0 when every call succeeded, else 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmpool.h"

#define MAX_CALLS 1000

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (n < 1 || n > MAX_CALLS) {
        fprintf(stderr, "calls: 1..%d\n", MAX_CALLS);
        return 2;
    }
    char err[512];
    llmpool_client *client = NULL;
    if (llmpool_client_new(NULL, &client, err, sizeof err) != LLMPOOL_OK) {
        fprintf(stderr, "client: %s\n", err);
        return 1;
    }
    llmpool_queue *queue = NULL;
    if (llmpool_queue_new(&queue) != LLMPOOL_OK) {
        fprintf(stderr, "no completion queue\n");
        llmpool_client_free(client);
        return 1;
    }

    /* Submit: each returns at once; completions go to the queue. */
    static uint64_t ids[MAX_CALLS];
    for (int i = 0; i < n; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"call %d\"}]}",
                 i);
        llmpool_call *call = NULL;
        llmpool_code rc = llmpool_chat_async(client, req, llmpool_queue_done, queue, &call);
        if (rc != LLMPOOL_OK) {
            fprintf(stderr, "submit %d: %s\n", i, llmpool_code_name(rc));
            return 1;
        }
        ids[i] = llmpool_call_id(call);
        llmpool_call_free(call); /* the call goes on; we match by id */
    }

    /* Collect: the fd is readable exactly while completions wait. */
    struct pollfd p = {.fd = llmpool_queue_fd(queue), .events = POLLIN};
    int done = 0, failed = 0;
    while (done < n) {
        if (poll(&p, 1, 30000) <= 0) {
            fprintf(stderr, "no completion for 30 s (%d of %d done)\n", done, n);
            break;
        }
        llmpool_response *r;
        while ((r = llmpool_queue_pop(queue)) != NULL) {
            uint64_t id = llmpool_response_call_id(r);
            int i = 0;
            while (i < n && ids[i] != id) i++;
            if (llmpool_response_code(r) != LLMPOOL_OK) {
                failed++;
                fprintf(stderr, "call %d: %s: %s\n", i,
                        llmpool_code_name(llmpool_response_code(r)), llmpool_response_error(r));
            } else if (i < 3) {
                printf("call %d: %s\n", i, llmpool_response_text(r));
            }
            llmpool_response_free(r);
            done++;
        }
    }
    printf("%d calls completed on one thread, %d failed\n", done, failed);
    llmpool_client_free(client); /* waits for any call still in flight */
    llmpool_queue_free(queue);   /* then nothing can complete into the queue */
    return done == n && failed == 0 ? 0 : 1;
}
