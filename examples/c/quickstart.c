/*
 * llmpool quickstart: one chat completion through a pooled client.
 *
 *   bash examples/c/quickstart.sh
 *
 * The client takes its gateway from the environment (NULL options):
 *   LLMPOOL_BASE_URL   gateway base URL (default https://api.holysheep.ai/v1)
 *   LLMPOOL_API_KEY    API key (or HOLYSHEEP_API_KEY)
 *   LLMPOOL_CA_FILE    optional: a PEM CA bundle to trust instead of the
 *                      built-in roots (e.g. a local TLS test server's CA)
 *   LLMPOOL_MODEL      model name (default "gpt-4.1")
 *
 * Prints the answer, the call's info JSON and the client's metrics JSON;
 * exits 1 with the error's code name, HTTP status and message on failure.
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

int main(void) {
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
    llmpool_code code = llmpool_client_new(options[0] ? options : NULL, &client, err, sizeof err);
    if (code != LLMPOOL_OK) {
        fprintf(stderr, "llmpool_client_new failed: %s: %s\n", llmpool_code_name((int)code), err);
        return 1;
    }

    char request[4096] = "{\"model\":";
    json_string(request, sizeof request - 128, model);
    strcat(request,
           ",\"messages\":[{\"role\":\"user\","
           "\"content\":\"Explain connection pooling in one sentence.\"}]}");

    llmpool_response *resp = NULL;
    code = llmpool_chat(client, request, &resp);
    int status = 0;
    if (code == LLMPOOL_OK) {
        printf("%s\n\n", llmpool_response_text(resp));
        printf("info:    %s\n", llmpool_response_info(resp));
    } else {
        fprintf(stderr, "chat failed: %s (HTTP status %u): %s\n", llmpool_code_name((int)code),
                (unsigned)llmpool_response_status(resp), llmpool_response_error(resp));
        fprintf(stderr, "info:    %s\n", llmpool_response_info(resp));
        status = 1;
    }
    llmpool_response_free(resp);

    char *metrics = llmpool_client_metrics(client);
    printf("metrics: %s\n", metrics ? metrics : "null");
    llmpool_string_free(metrics);
    llmpool_client_free(client);
    return status;
}
