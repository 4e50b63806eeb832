"""unittest suite for the llmpool ctypes bindings, against the loopback test server.

Run by tests/python.rs (``cargo test --test python``), which sets LLMPOOL_LIB,
LLMPOOL_TEST_PLAIN_URL, LLMPOOL_TEST_KEY_URL, LLMPOOL_TEST_KEY and
LLMPOOL_TEST_REFUSED_URL. By hand, with a server from
``target/debug/llmpool-testserver``:

    cd bindings/python && LLMPOOL_TEST_PLAIN_URL=http://127.0.0.1:PORT/v1 \
        python3 -m unittest -v test_llmpool
"""

import asyncio
import base64
import gc
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import unittest

import llmpool
from llmpool import Client, LLMPoolError

PLAIN = os.environ.get("LLMPOOL_TEST_PLAIN_URL")
KEY_URL = os.environ.get("LLMPOOL_TEST_KEY_URL")
KEY = os.environ.get("LLMPOOL_TEST_KEY")
REFUSED = os.environ.get("LLMPOOL_TEST_REFUSED_URL", "http://127.0.0.1:9/v1")

for var in ("LLMPOOL_BASE_URL", "LLMPOOL_API_KEY", "HOLYSHEEP_API_KEY"):
    os.environ.pop(var, None)


def req(content, **extra):
    r = {"model": "test-model", "messages": [{"role": "user", "content": content}]}
    r.update(extra)
    return r


def client(url=None, **opts):
    o = {"base_url": url or PLAIN, "max_retries": 0}
    o.update(opts)
    return Client(o)


def b64_floats(values):
    return base64.b64encode(struct.pack("<%df" % len(values), *values)).decode()


def embeddings_answer(rows, encode, order=None):
    """An embeddings answer body with rows listed in ``order`` (default: reversed)."""
    order = order if order is not None else list(reversed(range(len(rows))))
    data = [{"object": "embedding", "index": i, "embedding": encode(rows[i])} for i in order]
    return json.dumps({"object": "list", "data": data, "model": "emb",
                       "usage": {"prompt_tokens": 2, "total_tokens": 2}})


ROWS = [[(r * 10 + d) / 8.0 - 3.0 for d in range(6)] for r in range(4)]


async def in_flight_after(c, tries):
    """Polls every 10 ms, at most `tries` times, until the client has no
    async call in flight; returns the last count read."""
    for _ in range(tries):
        n = c.metrics()["async"]["in_flight"]
        if n == 0:
            return n
        await asyncio.sleep(0.01)
    return c.metrics()["async"]["in_flight"]


def serve(c, body, code=200):
    c.request("POST", "/_test/faults", {"type": "status", "code": code, "body": body})


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set (run via cargo test --test python)")
class EmbeddingsTest(unittest.TestCase):
    def check(self, m):
        self.assertEqual(m.shape, (4, 6))
        self.assertEqual([list(map(float, row)) for row in m.tolist()], ROWS)

    def test_float_and_base64_as_memoryview(self):
        with client() as c:
            for encode in (list, b64_floats):
                serve(c, embeddings_answer(ROWS, encode))
                r = c.embeddings({"model": "emb", "input": ["a", "b"]})
                m = r.embeddings(numpy=False)
                self.assertIsInstance(m, memoryview)
                self.assertEqual(m.format, "f")
                self.assertTrue(m.readonly)
                self.check(m)
                del r
                gc.collect()
                # The view keeps the decoded matrix (and its response) alive.
                self.check(m)

    def test_numpy_zero_copy_when_installed(self):
        try:
            import numpy as np
        except ImportError:
            print("numpy not installed: the numpy path of Response.embeddings is not run",
                  file=sys.stderr)
            return
        with client() as c:
            serve(c, embeddings_answer(ROWS, b64_floats, order=[2, 0, 3, 1]))
            r = c.embeddings({"model": "emb", "input": ["a", "b"]})
            a = r.embeddings()
            self.assertIsInstance(a, np.ndarray)
            self.assertEqual(a.dtype, np.float32)
            self.assertFalse(a.flags.writeable)
            self.check(a)
            b = r.embeddings()
            # Both view the one matrix llmpool decoded: no copy.
            self.assertEqual(a.__array_interface__["data"][0], b.__array_interface__["data"][0])

    def test_ragged_malformed_and_not_embeddings(self):
        with client() as c:
            ragged = [ROWS[0], ROWS[1][:5]]
            for encode in (list, b64_floats):
                serve(c, embeddings_answer(ragged, encode))
                r = c.embeddings({"model": "emb", "input": ["a", "b"]})
                with self.assertRaises(llmpool.ProtocolError) as cm:
                    r.embeddings()
                self.assertIn("ragged rows", cm.exception.message)
            serve(c, json.dumps({"data": [{"embedding": "AA*A"}]}))
            with self.assertRaises(llmpool.ProtocolError) as cm:
                c.embeddings({"model": "emb", "input": "a"}).embeddings()
            self.assertIn("invalid base64", cm.exception.message)
            chat = c.chat(req("hi"))
            with self.assertRaises(LLMPoolError) as cm:
                chat.embeddings()
            self.assertEqual(cm.exception.code, llmpool.INVALID_ARGUMENT)
            serve(c, json.dumps({"choices": [{"message": {"content": "x"}}]}))
            r = c.embeddings({"model": "emb", "input": "a"})
            with self.assertRaises(LLMPoolError) as cm:
                r.embeddings()
            self.assertEqual(cm.exception.code, llmpool.INVALID_ARGUMENT)
            self.assertIn("not an embeddings answer", cm.exception.message)

    def test_the_servers_own_answer(self):
        with client() as c:
            r = c.embeddings({"model": "test-model", "input": ["a", "b", "c"]})
            m = r.embeddings(numpy=False)
            want = [d["embedding"] for d in r.json()["data"]]
            self.assertEqual(m.shape, (3, len(want[0])))
            for got, exp in zip(m.tolist(), want):
                self.assertEqual(got, [struct.unpack("<f", struct.pack("<f", x))[0] for x in exp])


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set (run via cargo test --test python)")
class BasicTest(unittest.TestCase):
    def test_version_and_code_names(self):
        self.assertRegex(llmpool.version(), r"^\d+\.\d+\.\d+")
        self.assertEqual(llmpool.code_name(llmpool.TIMEOUT), "LLMPOOL_TIMEOUT")
        self.assertEqual(llmpool.code_name(12345), "LLMPOOL_UNKNOWN")

    def test_chat_dict_and_json_text(self):
        with client() as c:
            r = c.chat(req("hi"))
            self.assertTrue(r.ok)
            self.assertEqual(r.code, llmpool.OK)
            self.assertEqual(r.code_name, "LLMPOOL_OK")
            self.assertEqual(r.text, "Echo: hi")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.error, "")
            self.assertEqual(r.json()["choices"][0]["message"]["content"], "Echo: hi")
            self.assertEqual(r.info["attempts"], 1)
            self.assertIn("latency_ms", r.info)
            self.assertEqual(r.info["usage"]["total_tokens"], r.json()["usage"]["total_tokens"])
            self.assertIs(r.raise_for_error(), r)
            r2 = c.chat('{"messages":[{"role":"user","content":"text"}]}')
            self.assertEqual(r2.text, "Echo: text")
            r3 = c.chat(b'{"messages":[{"role":"user","content":"bytes \xc3\xa9"}]}')
            self.assertEqual(r3.text, "Echo: bytes \u00e9")

    def test_embeddings_request_metrics_warm(self):
        with client() as c:
            e = c.embeddings({"model": "test-model", "input": ["a", "b"]})
            data = e.json()["data"]
            self.assertEqual(len(data), 2)
            self.assertEqual(len(data[0]["embedding"]), 8)
            m = c.request("GET", "/models")
            self.assertEqual(m.json()["data"][0]["id"], "test-model")
            self.assertGreaterEqual(c.warm(2), 1)
            c.reset_pool()
            metrics = c.metrics()
            self.assertIsInstance(metrics, dict)
            self.assertEqual(metrics["requests"], metrics["status_counts"]["200"])
            self.assertGreaterEqual(metrics["requests"], 2)
            self.assertIn("p50", metrics["latency_ms"])

    def test_context_manager_closes(self):
        with client() as c:
            c.chat(req("x"))
        with self.assertRaises(llmpool.InvalidArgumentError):
            c.chat(req("after close"))
        c.close()  # idempotent
        # Garbage collection of an open client frees it too.
        c2 = client()
        c2.chat(req("gc"))
        del c2
        gc.collect()

    def test_threads_share_one_client(self):
        results = []
        errors = []
        with client(max_concurrency=4) as c:
            def work(t):
                try:
                    for i in range(10):
                        msg = "t%d-%d" % (t, i)
                        results.append(c.chat(req(msg)).text == "Echo: " + msg)
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)
            ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        self.assertEqual(errors, [])
        self.assertEqual(results, [True] * 40)


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set")
class ErrorTest(unittest.TestCase):
    def test_bad_options(self):
        with self.assertRaises(llmpool.InvalidArgumentError) as cm:
            Client("{not json")
        e = cm.exception
        self.assertEqual(e.code, llmpool.INVALID_ARGUMENT)
        self.assertEqual(e.code_name, "LLMPOOL_INVALID_ARGUMENT")
        self.assertEqual(e.status, 0)
        self.assertIn("options_json", e.message)
        with self.assertRaises(LLMPoolError) as cm:
            Client({"base_url": PLAIN, "no_such_option": 1})
        self.assertIn("no_such_option", str(cm.exception))
        # A ValueError too, for generic handlers.
        self.assertRaises(ValueError, Client, {"max_retries": "three"})

    def test_bad_json_is_invalid_argument(self):
        with client() as c:
            with self.assertRaises(LLMPoolError) as cm:
                c.chat("{not json")
            e = cm.exception
            self.assertIsInstance(e, llmpool.InvalidArgumentError)
            self.assertEqual(e.code, llmpool.INVALID_ARGUMENT)
            self.assertEqual(e.code_name, "LLMPOOL_INVALID_ARGUMENT")
            self.assertEqual(e.status, 0)
            self.assertTrue(e.message)
            with self.assertRaises(llmpool.InvalidArgumentError):
                c.chat({"not serializable": object()})
            with self.assertRaises(llmpool.InvalidArgumentError):
                c.chat('{"a": "nul\0"}')
            self.assertEqual(c.metrics()["requests"], 0, "nothing was sent")

    def test_http_400_keeps_status_and_body(self):
        with client() as c:
            c.request("POST", "/_test/faults", {"type": "status", "code": 400})
            with self.assertRaises(llmpool.HTTPStatusError) as cm:
                c.chat(req("x"))
            e = cm.exception
            self.assertEqual(e.code, llmpool.HTTP_STATUS)
            self.assertEqual(e.code_name, "LLMPOOL_HTTP_STATUS")
            self.assertEqual(e.status, 400)
            self.assertIn("injected fault", e.body)
            self.assertIn("400", e.message)
            self.assertEqual(e.response.status, 400)
            self.assertIn("error", e.response.json())
            self.assertIn("HTTPStatusError", repr(e))

    def test_404_and_connect(self):
        with client() as c:
            with self.assertRaises(llmpool.HTTPStatusError) as cm:
                c.request("GET", "/no/such/path")
            self.assertEqual(cm.exception.status, 404)
        with client(REFUSED) as c:
            with self.assertRaises(llmpool.ConnectError) as cm:
                c.chat(req("x"))
            self.assertEqual(cm.exception.code, llmpool.CONNECT)
            self.assertIsInstance(cm.exception, ConnectionError)


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set")
class RawTest(unittest.TestCase):
    def test_binary_upload_and_headers(self):
        body = bytes((i * 7 + 3) % 256 for i in range(1 << 20)) + b"\0\xff"
        with client() as c:
            r = c.request_raw("POST", "/echo", body, "application/octet-stream",
                              headers=("Content-Type", "x-body-bytes", "x-absent"))
            self.assertTrue(r.ok, r.error)
            self.assertIsInstance(r.body_bytes, bytes)
            self.assertEqual(r.body_bytes, body)
            self.assertEqual(r.header("content-type"), "application/octet-stream")
            self.assertEqual(r.header("X-Body-Bytes"), str(len(body)))
            self.assertIsNone(r.header("x-absent"))
            r = c.request_raw("POST", "/audio/speech",
                              b'{"model":"tts-1","input":"hi there","voice":"a"}',
                              "application/json")
            self.assertEqual(r.header("content-type"), "audio/mpeg")
            self.assertTrue(r.header("x-request-id").startswith("req-"))
            self.assertEqual(len(r.body_bytes), 8000)
            self.assertTrue(r.body_bytes.startswith(b"ID3"))
            with self.assertRaises(TypeError):
                c.request_raw("POST", "/echo", "not bytes")
            with self.assertRaises(llmpool.InvalidArgumentError):
                c.request_raw("POST", "/echo", b"x", "text/plain\r\nX: 1")


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set")
class StreamTest(unittest.TestCase):
    def test_callback(self):
        seen = []
        with client() as c:
            r = c.chat_stream(req("hello stream world"), lambda d, ev: seen.append((d, ev)))
        self.assertTrue(r.ok)
        self.assertEqual("".join(d for d, _ in seen), "Echo: hello stream world")
        self.assertEqual(r.text, "Echo: hello stream world")
        self.assertTrue(all(isinstance(ev, dict) for _, ev in seen))
        self.assertEqual(seen[0][1]["object"], "chat.completion.chunk")
        self.assertEqual(r.info["finish_reason"], "stop")
        self.assertEqual(r.info["chunks"], len(seen))

    def test_callback_false_stops(self):
        with client() as c:
            calls = []

            def on_chunk(d, _ev):
                calls.append(d)
                return not d  # stop at the first non-empty delta
            r = c.chat_stream(req("a b c d e f"), on_chunk)
            self.assertEqual(r.code, llmpool.CANCELLED)
            self.assertEqual(r.text, "Echo: ")
            self.assertEqual(len(calls), 2)
            self.assertEqual(c.chat(req("after")).text, "Echo: after")

    def test_callback_exception_is_reraised(self):
        class Boom(Exception):
            pass

        def on_chunk(_d, _ev):
            raise Boom("from the callback")
        with client() as c:
            with self.assertRaises(Boom):
                c.chat_stream(req("boom"), on_chunk)
            self.assertEqual(c.chat(req("after")).text, "Echo: after")

    def test_stream_errors(self):
        with client() as c:
            c.request("POST", "/_test/faults", {"type": "status", "code": 400})
            with self.assertRaises(llmpool.HTTPStatusError) as cm:
                c.chat_stream(req("x"), lambda d, ev: None)
            self.assertEqual(cm.exception.status, 400)
            with self.assertRaises(llmpool.ProtocolError) as cm:
                c.chat_stream(req("one two three", x_test_sse_error="overloaded"),
                              lambda d, ev: None)
            self.assertIn("overloaded", cm.exception.message)

    def test_iterator(self):
        with client() as c:
            s = c.stream(req("iterate over me"))
            deltas = list(s)
            self.assertEqual("".join(deltas), "Echo: iterate over me")
            self.assertTrue(all(deltas))
            self.assertTrue(s.response.ok)
            self.assertEqual(s.response.text, "Echo: iterate over me")

            # Breaking out early stops the stream; the client stays usable.
            with c.stream(req("w w w w w w w w", x_test_stream_delay_ms=50)) as s:
                for d in s:
                    break
            self.assertEqual(s.response.code, llmpool.CANCELLED)
            self.assertEqual(c.chat(req("after")).text, "Echo: after")

            c.request("POST", "/_test/faults", {"type": "status", "code": 400})
            with self.assertRaises(llmpool.HTTPStatusError):
                for _ in c.stream(req("x")):
                    pass
            with self.assertRaises(llmpool.InvalidArgumentError):
                list(c.stream("{bad"))
            with self.assertRaises(llmpool.InvalidArgumentError):
                c.stream({"unencodable": object()})

    def test_cancel_from_another_thread(self):
        with client() as c:
            started = threading.Event()

            def canceller():
                started.wait(10)
                c.cancel()
            t = threading.Thread(target=canceller)
            t.start()
            t0 = time.monotonic()
            with self.assertRaises(llmpool.CancelledError):
                c.chat_stream(req("w " * 12, x_test_stream_delay_ms=300),
                              lambda d, ev: started.set())
            t.join()
            self.assertLess(time.monotonic() - t0, 2.5)


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set")
class BatchTest(unittest.TestCase):
    def test_batch(self):
        reqs = [req("item %d" % i) for i in range(6)]
        reqs[3] = "{not json"
        progress = []
        caller = threading.get_ident()

        def on_progress(done, total):
            self.assertEqual(threading.get_ident(), caller)
            progress.append((done, total))
        with client() as c:
            out = c.chat_batch(reqs, max_concurrency=3, progress=on_progress)
            self.assertEqual(len(out), 6)
            for i, r in enumerate(out):
                if i == 3:
                    self.assertEqual(r.code, llmpool.INVALID_ARGUMENT)
                    with self.assertRaises(llmpool.InvalidArgumentError):
                        r.raise_for_error()
                else:
                    self.assertTrue(r.ok, r.error)
                    self.assertEqual(r.text, "Echo: item %d" % i)
            self.assertEqual(progress, [(i, 6) for i in range(1, 7)])
            self.assertEqual(c.chat_batch([]), [])
            self.assertEqual(c.chat_batch([req("solo")])[0].text, "Echo: solo")

            def bad_progress(_done, _total):
                raise RuntimeError("progress boom")
            with self.assertRaisesRegex(RuntimeError, "progress boom"):
                c.chat_batch([req("p1"), req("p2")], progress=bad_progress)


@unittest.skipUnless(KEY_URL and KEY, "LLMPOOL_TEST_KEY_URL/LLMPOOL_TEST_KEY are not set")
class AuthTest(unittest.TestCase):
    def test_set_api_key(self):
        with client(KEY_URL) as c:
            with self.assertRaises(llmpool.HTTPStatusError) as cm:
                c.chat(req("x"))
            self.assertEqual(cm.exception.status, 401)
            self.assertIn("invalid_api_key", cm.exception.body)
            c.set_api_key(KEY)
            self.assertEqual(c.chat(req("key")).text, "Echo: key")
            self.assertNotIn(KEY, str(c.metrics()))
            c.set_api_key(None)
            with self.assertRaises(llmpool.HTTPStatusError):
                c.chat(req("x"))

    def test_key_provider(self):
        asked = []
        with client(KEY_URL) as c:
            c.set_key_provider(lambda: asked.append(1) or KEY)
            self.assertEqual(c.chat(req("provided")).text, "Echo: provided")
            self.assertEqual(len(asked), 1)
        with client(KEY_URL) as c:
            def broken():
                raise RuntimeError("no key")
            c.set_key_provider(broken)
            with self.assertRaises(llmpool.HTTPStatusError) as cm:
                c.chat(req("x"))
            self.assertEqual(cm.exception.status, 401)
            c.set_key_provider(None)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=1)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@unittest.skipUnless(KEY_URL and KEY, "LLMPOOL_TEST_KEY_URL/LLMPOOL_TEST_KEY are not set")
class LogTest(unittest.TestCase):
    def setUp(self):
        self.logger = logging.getLogger("llmpool")
        self.cap = _Capture()
        self.logger.addHandler(self.cap)
        self.old_level = self.logger.level

    def tearDown(self):
        self.logger.removeHandler(self.cap)
        self.logger.setLevel(self.old_level)

    def test_python_logging_gets_the_lines_without_the_key(self):
        self.logger.setLevel(logging.DEBUG)
        with client(KEY_URL, api_key=KEY) as c:  # log_to_python() at creation
            self.assertEqual(c.chat(req("logged")).text, "Echo: logged")
            prom = c.metrics_prometheus()
        text = "\n".join(r.getMessage() for r in self.cap.records)
        self.assertIn("answer HTTP 200", text)
        self.assertIn("opened to 127.0.0.1", text)
        self.assertTrue(all(r.name == "llmpool" for r in self.cap.records))
        levels = {r.levelno for r in self.cap.records}
        self.assertIn(logging.DEBUG, levels)
        self.assertIn(logging.INFO, levels)
        self.assertNotIn(KEY, text)
        self.assertIn("# TYPE llmpool_requests_total counter", prom)
        self.assertNotIn(KEY, prom)

    def test_logger_level_is_respected_and_callbacks_work(self):
        self.logger.setLevel(logging.WARNING)
        with client(KEY_URL, api_key=KEY) as c:
            c.chat(req("quiet"))
            self.assertEqual(self.cap.records, [])
            got = []
            c.set_log_callback(lambda lvl, line: got.append((lvl, line)), llmpool.LOG_INFO)
            c.chat(req("callback"))
            self.assertTrue(any("answer HTTP 200" in line for _, line in got), got)
            self.assertTrue(all(lvl <= llmpool.LOG_INFO for lvl, _ in got), got)

            def broken(lvl, line):
                raise RuntimeError("sink")
            c.set_log_callback(broken, llmpool.LOG_TRACE)
            self.assertEqual(c.chat(req("still")).text, "Echo: still")
            c.set_log_callback(None)
            got.clear()
            c.chat(req("off"))
            self.assertEqual(got, [])


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set")
class ExampleTest(unittest.TestCase):
    def test_example_runs(self):
        here = os.path.dirname(os.path.abspath(__file__))
        example = os.path.join(here, "..", "..", "examples", "python", "example.py")
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(llmpool.__file__)))
        env = dict(os.environ, LLMPOOL_BASE_URL=PLAIN, LLMPOOL_MODEL="test-model",
                   PYTHONPATH=package_dir)
        out = subprocess.run([sys.executable, example], env=env,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("chat: Echo: Say hello in five words.", out.stdout)
        self.assertIn("stream: Echo: Count to five.", out.stdout)
        self.assertIn("batch: Echo: Three.", out.stdout)
        self.assertIn("HTTPStatusError 400", out.stdout)


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set")
class AsyncClientTest(unittest.TestCase):
    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 60))

    def test_chat_embeddings_request_and_errors(self):
        async def go():
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                r = await c.chat(req("hi"))
                self.assertEqual(r.text, "Echo: hi")
                self.assertGreater(r.info["call_id"], 0)
                e = await c.embeddings({"model": "m", "input": ["a"]})
                self.assertEqual(len(e.json()["data"]), 1)
                vectors = e.embeddings(numpy=False)
                self.assertEqual(vectors.shape[0], 1)
                self.assertEqual(vectors.tolist()[0],
                                 [struct.unpack("<f", struct.pack("<f", x))[0]
                                  for x in e.json()["data"][0]["embedding"]])
                with self.assertRaises(llmpool.InvalidArgumentError):
                    r.embeddings()
                m = await c.request("GET", "/models")
                self.assertEqual(m.json()["data"][0]["id"], "test-model")
                c.client.request("POST", "/_test/faults", {"type": "status", "code": 400})
                with self.assertRaises(llmpool.HTTPStatusError) as cm:
                    await c.chat(req("x"))
                self.assertEqual(cm.exception.status, 400)
                with self.assertRaises(llmpool.InvalidArgumentError):
                    await c.chat("{not json")
        self.run_async(go())

    def test_256_concurrent_calls_to_a_1s_server(self):
        async def go():
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                await c.chat(req("warm-up"))
                c.client.request("POST", "/_test/faults",
                                 {"type": "delay", "ms": 1000, "times": 256})
                t0 = time.monotonic()
                rs = await asyncio.gather(*(c.chat(req("p%d" % i)) for i in range(256)))
                wall = time.monotonic() - t0
                for i, r in enumerate(rs):
                    self.assertEqual(r.text, "Echo: p%d" % i)
                print("\n  AsyncClient: 256 calls to a 1 s server in %.2f s" % wall)
                self.assertLess(wall, 3.5)
        self.run_async(go())

    def test_task_cancel_cancels_that_call_alone(self):
        async def go():
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                await c.chat(req("warm-up"))
                c.client.request("POST", "/_test/faults", {"type": "delay", "ms": 1500})
                slow = asyncio.ensure_future(c.chat(req("slow")))
                await asyncio.sleep(0.2)
                fast = await c.chat(req("fast"))
                self.assertEqual(fast.text, "Echo: fast")
                t0 = time.monotonic()
                slow.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await slow
                self.assertLess(time.monotonic() - t0, 0.1)
                # The cancelled call's llmpool side ended too: nothing in flight.
                self.assertEqual(await in_flight_after(c, 50), 0)
        self.run_async(go())

    def test_request_raw_bytes_headers_and_concurrency(self):
        async def go():
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                body = bytes((i * 7 + 3) % 256 for i in range(1 << 20)) + b"\0\xff"
                r = await c.request_raw("POST", "/echo", bytearray(body),
                                        "application/octet-stream",
                                        headers=("Content-Type", "x-body-bytes", "x-absent"))
                self.assertEqual(r.body_bytes, body)
                self.assertEqual(r.header("content-type"), "application/octet-stream")
                self.assertEqual(r.header("X-Body-Bytes"), str(len(body)))
                self.assertIsNone(r.header("x-absent"))
                self.assertGreater(r.info["call_id"], 0)
                s = await c.request_raw("POST", "/audio/speech",
                                        b'{"model":"tts-1","input":"hi there","voice":"a"}',
                                        "application/json")
                self.assertEqual(s.header("content-type"), "audio/mpeg")
                self.assertTrue(s.header("x-request-id").startswith("req-"))
                self.assertTrue(s.body_bytes.startswith(b"ID3"))
                with self.assertRaises(TypeError):
                    await c.request_raw("POST", "/echo", "not bytes")
                with self.assertRaises(llmpool.InvalidArgumentError):
                    await c.request_raw("POST", "/echo", b"x", "text/plain\r\nX: 1")
                # 64 at once to a 1 s server, all in flight together, with
                # no thread of this program waiting per call.
                c.client.request("POST", "/_test/faults",
                                 {"type": "delay", "ms": 1000, "times": 64})
                bodies = [bytes([i, 0, 255]) * (100 + i) for i in range(64)]
                t0 = time.monotonic()
                rs = await asyncio.gather(*(c.request_raw("POST", "/echo", b) for b in bodies))
                wall = time.monotonic() - t0
                for b, r in zip(bodies, rs):
                    self.assertEqual(r.body_bytes, b)
                print("\n  AsyncClient: 64 request_raw calls to a 1 s server in %.2f s" % wall)
                self.assertLess(wall, 3.5)
        self.run_async(go())

    def test_task_cancel_cancels_that_request_raw_alone(self):
        async def go():
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                await c.chat(req("warm-up"))
                c.client.request("POST", "/_test/faults", {"type": "delay", "ms": 1500})
                slow = asyncio.ensure_future(c.request_raw("POST", "/echo", b"\0slow"))
                await asyncio.sleep(0.2)
                fast = await c.request_raw("POST", "/echo", b"\xfffast")
                self.assertEqual(fast.body_bytes, b"\xfffast")
                t0 = time.monotonic()
                slow.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await slow
                took = time.monotonic() - t0
                print("\n  AsyncClient: request_raw cancelled in %.1f ms" % (took * 1000))
                self.assertLess(took, 0.1)
                self.assertEqual(await in_flight_after(c, 50), 0)
        self.run_async(go())

    def test_warm_on_library_threads_errors_and_task_cancel(self):
        async def go():
            # 8 clients x warm(2), the server answering each GET /models
            # after 1 s: all at once, and the loop keeps running meanwhile.
            cs = [llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) for _ in range(8)]
            try:
                with client() as ctl:  # its own connection: the 8 pools stay cold
                    ctl.request("POST", "/_test/faults",
                                {"type": "delay", "ms": 1000, "times": 16})
                ticks = 0

                async def tick():
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1
                ticker = asyncio.ensure_future(tick())
                t0 = time.monotonic()
                opened = await asyncio.gather(*(c.warm(2) for c in cs))
                wall = time.monotonic() - t0
                ticker.cancel()
                print("\n  AsyncClient: 8 warm(2) to a 1 s server in %.2f s, %d loop ticks"
                      % (wall, ticks))
                self.assertEqual(opened, [2] * 8)
                self.assertLess(wall, 3.5)
                self.assertGreater(ticks, 20)
                with self.assertRaises(ValueError):
                    await cs[0].warm(-1)
            finally:
                for c in cs:
                    c.close()
            async with llmpool.AsyncClient({"base_url": REFUSED, "max_retries": 0}) as dead:
                with self.assertRaises(llmpool.ConnectError) as cm:
                    await dead.warm(2)
                self.assertTrue(str(cm.exception))
            # task.cancel(): the awaiter gets CancelledError at once, and the
            # warm-up's llmpool side ends too (its sockets are shut down while
            # the server holds the answers).
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                with client() as ctl:
                    ctl.request("POST", "/_test/faults",
                                {"type": "delay", "ms": 1000, "times": 2})
                slow = asyncio.ensure_future(c.warm(2))
                await asyncio.sleep(0.2)
                t0 = time.monotonic()
                slow.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await slow
                self.assertLess(time.monotonic() - t0, 0.1)
                in_flight = await in_flight_after(c, 300)
                ended = time.monotonic() - t0
                print("  AsyncClient: warm task cancelled; llmpool side ended after %.2f s"
                      % ended)
                self.assertEqual(in_flight, 0)
                self.assertLess(ended, 0.5)
        self.run_async(go())

    def test_async_for_stream_and_early_exit(self):
        async def go():
            async with llmpool.AsyncClient({"base_url": PLAIN, "max_retries": 0}) as c:
                parts = [d async for d in c.stream(req("one two three"))]
                self.assertEqual("".join(parts), "Echo: one two three")
                chunks = []
                r = await c.chat_stream(req("a b"), lambda d, ev: chunks.append(d))
                self.assertEqual(r.text, "Echo: a b")
                self.assertEqual("".join(chunks), "Echo: a b")
                slow = req("w x y z", x_test_stream_delay_ms=200)
                t0 = time.monotonic()
                async for d in c.stream(slow):
                    if d:
                        break
                self.assertLess(time.monotonic() - t0, 1.5)
                self.assertEqual(await in_flight_after(c, 50), 0)
        self.run_async(go())


if __name__ == "__main__":
    unittest.main()


class StubTest(unittest.TestCase):
    """llmpool/__init__.pyi (shipped with py.typed) covers the public API."""

    def test_stub_declares_every_public_name(self):
        import ast
        here = os.path.dirname(os.path.abspath(llmpool.__file__))
        self.assertTrue(os.path.exists(os.path.join(here, "py.typed")))
        with open(os.path.join(here, "__init__.pyi"), encoding="utf-8") as f:
            stub = ast.parse(f.read())
        top = {}
        for node in stub.body:
            if isinstance(node, ast.ClassDef):
                top[node.name] = {n.name for n in node.body
                                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                top[node.name] |= {n.target.id for n in node.body
                                   if isinstance(n, ast.AnnAssign)}
            elif isinstance(node, (ast.FunctionDef, ast.AnnAssign)):
                top[getattr(node, "name", None) or node.target.id] = set()
        public = set(llmpool.__all__) | {n for n in dir(llmpool) if n.isupper()
                                         and isinstance(getattr(llmpool, n), int)}
        self.assertEqual(sorted(public - set(top)), [], "names missing from __init__.pyi")
        for cls in (llmpool.Client, llmpool.AsyncClient, llmpool.Response):
            methods = {n for n in vars(cls) if not n.startswith("_")}
            self.assertEqual(sorted(methods - top[cls.__name__]), [],
                             "%s members missing from __init__.pyi" % cls.__name__)
