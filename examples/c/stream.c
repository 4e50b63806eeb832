/*
 * llmpool streaming: print a chat answer token by token as it arrives,
 * then the call's info JSON (ttft_ms, chunks, finish_reason, usage,
 * cost_usd, ...).
 *
 *   cargo build --release
 *   cc -std=c11 -Wall -Wextra -O2 -Iinclude examples/c/stream.c -o stream \
 *      -Ltarget/release -lllmpool -Wl,-rpath,"$PWD/target/release"
 *   ./stream ["your prompt"]
 *
 * The client takes its gateway from the environment (NULL options), as in
 * examples/c/quickstart.c:
 *   LLMPOOL_BASE_URL   gateway base URL (default https://api.holysheep.ai/v1)
 *   LLMPOOL_API_KEY    API key (or HOLYSHEEP_API_KEY)
 *   LLMPOOL_CA_FILE    optional: a PEM CA bundle to trust instead of the
 *                      built-in roots
 *   LLMPOOL_MODEL      model name (default "gpt-4.1")
 * (Against the bundled test server, `llmpool-testserver --port 0`, the
 * answer is "Echo: <prompt>", one word per chunk.)
 *
 * The callback runs on this thread. To stop early, return non-zero from it,
 * or call llmpool_client_cancel(client) from another thread (e.g. a Ctrl-C
 * handler thread): the call then returns LLMPOOL_CANCELLED and the text
 * received so far stays in the response. Exits 1 with the error's code
 * name, HTTP status and message on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmpool.h"

/* Appends `s` to `out` as a JSON string literal (with quotes). */
static void json_string(char *out, size_t cap, const char *s) {
    size_t n = strlen(out);
    if (n + 1 < cap) out[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    if (n + 1 < cap) out[n++] = '"';
    out[n < cap ? n : cap - 1] = '\0';
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
    const char *prompt = argc > 1 ? argv[1] : "Explain connection pooling in three sentences.";
    const char *model = getenv("LLMPOOL_MODEL");
    if (model == NULL || model[0] == '\0') model = "gpt-4.1";
    const char *ca_file = getenv("LLMPOOL_CA_FILE");

    /* NULL options: base URL and key come from the environment. Only a CA
     * file needs an explicit option. */
    char options[4096] = "";
    if (ca_file != NULL && ca_file[0] != '\0') {
        strcpy(options, "{\"ca_file\":");
        json_string(options, sizeof options - 2, ca_file);
        strcat(options, "}");
    }

    char err[512];
    llmpool_client *client = NULL;
    llmpool_code rc = llmpool_client_new(options[0] ? options : NULL, &client, err, sizeof err);
    if (rc != LLMPOOL_OK) {
        fprintf(stderr, "llmpool_client_new failed: %s: %s\n", llmpool_code_name((int)rc), err);
        return 1;
    }

    char request[8192] = "{\"model\":";
    json_string(request, sizeof request - 128, model);
    strcat(request, ",\"messages\":[{\"role\":\"user\",\"content\":");
    json_string(request, sizeof request - 8, prompt);
    strcat(request, "}]}");

    size_t tokens = 0;
    llmpool_response *resp = NULL;
    rc = llmpool_chat_stream(client, request, print_delta, &tokens, &resp);
    printf("\n\n");
    if (rc != LLMPOOL_OK) {
        /* The text received before the failure is still in llmpool_response_text(resp). */
        fprintf(stderr, "stream failed: %s (HTTP status %u): %s\n", llmpool_code_name((int)rc),
                (unsigned)llmpool_response_status(resp), llmpool_response_error(resp));
    }
    printf("%zu non-empty deltas\ninfo: %s\n", tokens, llmpool_response_info(resp));

    llmpool_response_free(resp);
    llmpool_client_free(client);
    return rc == LLMPOOL_OK ? 0 : 1;
}
