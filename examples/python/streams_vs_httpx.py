"""N concurrent chat streams through llmpool's AsyncClient (typed deltas,
taken from the completion queue in batches) or httpx.AsyncClient (SSE split
and json.loads per event), against the loopback test server
(llmpool-testserver --port 0); each stream assembled and checked. Prints
CPU (resource.getrusage of this process: llmpool's library threads
included), peak RSS and wall time. See docs/benchmark.md.

    python examples/python/streams_vs_httpx.py (llmpool|httpx) N http://127.0.0.1:PORT/v1
"""
import asyncio
import json
import resource
import sys
import time

mode, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
content = " ".join(f"w{i}" for i in range(40))
req = {"model": "m", "stream": True, "x_test_stream_delay_ms": 100,
       "messages": [{"role": "user", "content": content}]}
want = "Echo: " + content


async def with_llmpool():
    sys.path.insert(0, __file__.rsplit("/examples/", 1)[0] + "/bindings/python")
    from llmpool import AsyncClient
    async with AsyncClient({"base_url": url, "api_key": "sk-x"}) as c:
        async def one():
            return "".join([d.text async for d in c.stream_deltas(req)])
        return await asyncio.gather(*(one() for _ in range(n)))


async def with_httpx():
    import httpx
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits, timeout=60) as c:
        async def one():
            text = ""
            async with c.stream("POST", url + "/chat/completions", json=req,
                                headers={"authorization": "Bearer sk-x"}) as r:
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    ch = json.loads(line[6:])["choices"]
                    if ch and ch[0]["delta"].get("content"):
                        text += ch[0]["delta"]["content"]
            return text
        return await asyncio.gather(*(one() for _ in range(n)))


t0 = time.monotonic()
texts = asyncio.run(with_llmpool() if mode == "llmpool" else with_httpx())
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
ok = sum(t == want for t in texts)
print(f"{mode} N={n} ok={ok} bad={n - ok} wall={wall:.2f}s cpu={ru.ru_utime + ru.ru_stime:.2f}s "
      f"maxrss={ru.ru_maxrss // 1024}MiB")
