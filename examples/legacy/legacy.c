/*
 * A plain C program embedding llmpool, as a legacy application
 * would: no Rust toolchain at link time, just the static library (or the
 * shared one) and the system libraries.
 *
 * Static link, straight from a build tree:
 *   cc examples/legacy/legacy.c -Iinclude target/release/libllmpool.a \
 *      -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o legacy
 *
 * After `scripts/install.sh /opt/llmpool`:
 *   export PKG_CONFIG_PATH=/opt/llmpool/lib/pkgconfig
 *   cc legacy.c $(pkg-config --cflags --libs llmpool-static) -o legacy  # static
 *   cc legacy.c $(pkg-config --cflags --libs llmpool) -o legacy         # shared
 *
 * Run: LLMPOOL_BASE_URL=http://127.0.0.1:8080/v1 [LLMPOOL_API_KEY=...] ./legacy
 * (the client takes base_url and api_key from the environment). Prints the
 * answer, streams a second one, and exits 0 on success, 1 on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmpool.h"

static int print_delta(void *userdata, const char *delta, size_t delta_len,
                       const char *event_json, size_t event_len) {
    size_t *total = (size_t *)userdata;
    (void)event_json;
    (void)event_len;
    fwrite(delta, 1, delta_len, stdout);
    fflush(stdout);
    *total += delta_len;
    return 0;
}

static int fail(const char *what, llmpool_code rc, llmpool_response *r) {
    fprintf(stderr, "legacy: %s failed: %s (HTTP %u): %s\n", what,
            llmpool_code_name((int)rc), (unsigned)llmpool_response_status(r),
            llmpool_response_error(r));
    llmpool_response_free(r);
    return 1;
}

int main(int argc, char **argv) {
    const char *model = getenv("LLMPOOL_MODEL");
    const char *prompt = argc > 1 ? argv[1] : "Hello from a legacy C program";
    char request[1024];
    char err[512];
    llmpool_client *client = NULL;
    llmpool_response *r = NULL;
    llmpool_code rc;
    size_t streamed = 0;
    char *metrics;

    if (model == NULL || model[0] == '\0') model = "gpt-4o-mini";
    /* The prompt goes into JSON unescaped: keep this example's input simple. */
    if (strpbrk(prompt, "\"\\") != NULL || strlen(prompt) > 512) {
        fprintf(stderr, "legacy: the prompt must be short and contain no quotes or backslashes\n");
        return 2;
    }
    sprintf(request, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
            model, prompt);

    printf("llmpool %s\n", llmpool_version());
    rc = llmpool_client_new("{\"max_retries\": 2}", &client, err, sizeof err);
    if (rc != LLMPOOL_OK) {
        fprintf(stderr, "legacy: llmpool_client_new: %s: %s\n", llmpool_code_name((int)rc), err);
        return 1;
    }

    rc = llmpool_chat(client, request, &r);
    if (rc != LLMPOOL_OK) {
        llmpool_client_free(client);
        return fail("chat", rc, r);
    }
    printf("chat: %s\n", llmpool_response_text(r));
    llmpool_response_free(r);
    r = NULL;

    printf("stream: ");
    rc = llmpool_chat_stream(client, request, print_delta, &streamed, &r);
    printf("\n");
    if (rc != LLMPOOL_OK) {
        llmpool_client_free(client);
        return fail("stream", rc, r);
    }
    printf("streamed %lu bytes, info: %s\n", (unsigned long)streamed, llmpool_response_info(r));
    llmpool_response_free(r);

    metrics = llmpool_client_metrics(client);
    printf("metrics: %s\n", metrics);
    llmpool_string_free(metrics);
    llmpool_client_free(client);
    return 0;
}
