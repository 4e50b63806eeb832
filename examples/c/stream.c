/*
 * stream.c: print a chat answer token by token as it arrives, then the
 * call's info JSON (ttft_ms, chunks, finish_reason, usage, cost_usd, ...).
 *
 * Build (after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -I include examples/c/stream.c \
 *      -L target/release -lllmpool -Wl,-rpath,$PWD/target/release -o stream
 * Run:
 *   LLMPOOL_BASE_URL=https://gateway.example/v1 LLMPOOL_API_KEY=sk-... \
 *     ./stream "Write a haiku about connection pools" [model]
 *
 * LLMPOOL_BASE_URL and LLMPOOL_API_KEY are read by llmpool itself when the
 * client is created (options_json NULL). Ctrl-C is not handled here; a
 * real program would call llmpool_client_cancel(client) from another
 * thread, or return non-zero from the callback, to stop the stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmpool.h"

/* Appends `s` to `out` as a JSON string literal (quotes included). */
static void json_string(char *out, size_t cap, const char *s) {
    size_t n = strlen(out);
    if (n + 2 >= cap) return;
    out[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* Called on this thread for every chunk; `delta` is valid only until we return. */
static int print_delta(void *userdata, const char *delta, size_t delta_len,
                       const char *event_json, size_t event_len) {
    (void)event_json;
    (void)event_len;
    size_t *tokens = userdata;
    if (delta_len > 0) {
        fwrite(delta, 1, delta_len, stdout);
        fflush(stdout);
        (*tokens)++;
    }
    return 0; /* non-zero would abort the stream (LLMPOOL_CANCELLED) */
}

int main(int argc, char **argv) {
    const char *prompt = argc > 1 ? argv[1] : "Say hello in five words.";
    const char *model = argc > 2 ? argv[2] : "gpt-4.1-mini";

    char err[512];
    llmpool_client *client = NULL;
    llmpool_code rc = llmpool_client_new(NULL, &client, err, sizeof err);
    if (rc != LLMPOOL_OK) {
        fprintf(stderr, "llmpool_client_new: %s: %s\n", llmpool_code_name(rc), err);
        return 1;
    }

    char request[8192] = "{\"model\":";
    json_string(request, sizeof request, model);
    strncat(request, ",\"messages\":[{\"role\":\"user\",\"content\":",
            sizeof request - strlen(request) - 1);
    json_string(request, sizeof request, prompt);
    strncat(request, "}]}", sizeof request - strlen(request) - 1);

    size_t tokens = 0;
    llmpool_response *resp = NULL;
    rc = llmpool_chat_stream(client, request, print_delta, &tokens, &resp);
    printf("\n\n");
    if (rc != LLMPOOL_OK) {
        /* The partial text is still in llmpool_response_text(resp). */
        fprintf(stderr, "stream failed: %s (HTTP %u): %s\n", llmpool_code_name(rc),
                llmpool_response_status(resp), llmpool_response_error(resp));
    }
    printf("%zu non-empty deltas\ninfo: %s\n", tokens, llmpool_response_info(resp));

    llmpool_response_free(resp);
    llmpool_client_free(client);
    return rc == LLMPOOL_OK ? 0 : 1;
}
