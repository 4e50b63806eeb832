"""A tour of the llmpool Python bindings: chat, streaming, batch, embeddings,
errors and metrics.

    pip install llmpool        # or, in this repository: cargo build --release --lib
                               #   and PYTHONPATH=bindings/python
    LLMPOOL_BASE_URL=https://api.example.com/v1 LLMPOOL_API_KEY=sk-... python3 examples/python/example.py

base_url and api_key come from LLMPOOL_BASE_URL / LLMPOOL_API_KEY because the
options below do not set them; LLMPOOL_MODEL picks the model.
"""

import os

import llmpool

MODEL = os.environ.get("LLMPOOL_MODEL") or "gpt-4o-mini"


def ask(prompt):
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}


def main():
    with llmpool.Client({"max_retries": 2, "timeout_ms": 60000}) as client:
        r = client.chat(ask("Say hello in five words."))
        print("chat:", r.text)
        print("  latency_ms:", r.info["latency_ms"], "usage:", r.info.get("usage"))

        # Streaming as an iterator of text deltas.
        print("stream: ", end="")
        stream = client.stream(ask("Count to five."))
        for delta in stream:
            print(delta, end="", flush=True)
        print("\n  finish_reason:", stream.response.info.get("finish_reason"))

        # Batch: one Response per request, in order; items fail independently.
        for item in client.chat_batch([ask("One."), ask("Two."), ask("Three.")],
                                      max_concurrency=2):
            print("batch:", item.text if item.ok else "failed: " + item.error)

        emb = client.embeddings({"model": "text-embedding-3-small", "input": "hello"})
        print("embeddings:", len(emb.json()["data"][0]["embedding"]), "dimensions")

        # Errors carry code, status and body.
        try:
            client.chat({"model": MODEL, "messages": "not a list"})
        except llmpool.HTTPStatusError as e:
            print("HTTPStatusError %d: %s" % (e.status, e.message))
        except llmpool.LLMPoolError as e:
            print("%s: %s" % (e.code_name, e.message))

        m = client.metrics()
        print("metrics: requests=%d errors=%d p50=%sms" % (
            m["requests"], m["errors"], m["latency_ms"]["p50"]))


if __name__ == "__main__":
    main()
