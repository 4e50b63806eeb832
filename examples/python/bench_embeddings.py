"""openai-python's side of examples/c/bench_embeddings.c.

    python bench_embeddings.py BASE_URL float|default N

Makes one warm-up call and N timed `client.embeddings.create` calls against
BASE_URL. "float" asks for encoding_format "float"; "default" leaves it out,
so openai-python asks for base64 and decodes the vectors to Python floats
itself. Prints one line: requests errors mean p50 p90 max (ms) 0 (the body
size comes from the other modes) rss_before_MB hwm_MB checksum count dim min_ms cpu_ms.
"""

import resource
import sys
import time

import openai


def rss_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    base, encoding, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = openai.OpenAI(base_url=base, api_key="bench", max_retries=0)
    kw = {"model": "text-embedding-3-small", "input": ["chunk one", "chunk two"]}
    if encoding == "float":
        kw["encoding_format"] = "float"
    lat, errors, checksum, count_, dim = [], 0, 0.0, 0, 0
    before = rss_mb("VmRSS:")
    cpu0 = 0.0
    for i in range(n + 1):
        t0 = time.perf_counter()
        try:
            r = client.embeddings.create(**kw)
        except Exception as e:  # noqa: BLE001 - a bench counts every failure
            errors += 1
            print(f"openai-python: {e}", file=sys.stderr)
            r = None
        dt = (time.perf_counter() - t0) * 1000.0
        if i == 0 and r is not None:
            count_, dim = len(r.data), len(r.data[0].embedding)
            checksum = sum(sum(d.embedding) for d in r.data)
        if i > 0:
            lat.append(dt)
        else:
            cpu0 = time.process_time()
    cpu = (time.process_time() - cpu0) * 1000.0 / n
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    lat.sort()
    mean = sum(lat) / len(lat)
    p90 = lat[max(0, -(-9 * len(lat) // 10) - 1)]
    print(
        f"{n} {errors} {mean:.4f} {lat[(len(lat) - 1) // 2]:.4f} {p90:.4f} {lat[-1]:.4f} "
        f"0 {before:.3f} {hwm:.3f} {checksum:.6f} {count_} {dim} {lat[0]:.4f} {cpu:.4f}"
    )


if __name__ == "__main__":
    main()
