/*
 * A budget being hit: a tiny daily budget, then chat calls until llmpool
 * refuses one with LLMPOOL_BUDGET_EXCEEDED before sending it.
 *
 *   LLMPOOL_BASE_URL=http://127.0.0.1:PORT/v1 ./budget
 *
 * (examples/c/quickstart.sh shows how to start the bundled local gateway.)
 */
#include <stdio.h>
#include <stdlib.h>

#include "llmpool.h"

int main(void) {
    /* gpt-4.1 costs $2 in / $8 out per million tokens: each call below
     * reserves about $0.0002 (its prompt plus max_tokens), so a $0.001 budget
     * allows a handful of calls. */
    const char *options =
        "{\"budget\": {\"limit_usd\": 0.001, \"period\": \"day\"}, \"max_retries\": 1}";
    const char *request =
        "{\"model\": \"gpt-4.1\", \"max_tokens\": 20,"
        " \"messages\": [{\"role\": \"user\", \"content\": \"Say hi\"}]}";
    char err[512];
    llmpool_client *client = NULL;
    if (llmpool_client_new(options, &client, err, sizeof err) != LLMPOOL_OK) {
        fprintf(stderr, "llmpool_client_new: %s\n", err);
        return 1;
    }
    int refused = 0;
    for (int i = 1; i <= 100 && !refused; i++) {
        llmpool_response *r = NULL;
        llmpool_code code = llmpool_chat(client, request, &r);
        if (code == LLMPOOL_OK) {
            printf("call %d: ok, info %s\n", i, llmpool_response_info(r));
        } else if (code == LLMPOOL_BUDGET_EXCEEDED) {
            printf("call %d: refused before sending: %s\n", i, llmpool_response_error(r));
            refused = 1;
        } else {
            fprintf(stderr, "call %d: %s (HTTP %u): %s\n", i, llmpool_code_name(code),
                    llmpool_response_status(r), llmpool_response_error(r));
            llmpool_response_free(r);
            llmpool_client_free(client);
            return 1;
        }
        llmpool_response_free(r);
    }
    char *metrics = llmpool_client_metrics(client);
    printf("metrics: %s\n", metrics ? metrics : "(null)");
    llmpool_string_free(metrics);
    llmpool_client_free(client);
    return refused ? 0 : 1;
}
