"""Agent-building calls of the Python bindings against the loopback test
server: the Responses and Messages APIs, typed deltas of all three
streaming APIs and the assembled completion, blocking and asyncio.

Run by tests/python.rs next to test_llmpool (same environment).
"""

import asyncio
import json
import os
import unittest

import llmpool
from llmpool import AsyncClient, Client, Delta

PLAIN = os.environ.get("LLMPOOL_TEST_PLAIN_URL")


def fixture(name, **extra):
    """A chat request the test server answers with the stream fixture `name`."""
    return dict({"model": "test-model", "messages": [{"role": "user", "content": "go"}],
                 "x_test_fixture": name}, **extra)


# Chunks 50 ms apart: a stream left after its first delta is still running.
SLOW = {"x_test_stream_delay_ms": 50}


RESPONSES_TOOL = {"model": "test-model", "input": "hello there", "x_test_tool": True}
MESSAGES_TOOL = {"model": "claude-sonnet-4.5", "max_tokens": 64, "x_test_tool": True,
                 "messages": [{"role": "user", "content": "hi"}]}


def opts():
    return {"base_url": PLAIN, "max_retries": 0}


def tool_deltas(deltas):
    return [d for d in deltas if d.kind == llmpool.DELTA_TOOL_CALL]


def text_of(deltas, kind=llmpool.DELTA_CONTENT):
    return "".join(d.text for d in deltas if d.kind == kind)


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set (run via cargo test --test python)")
class BlockingTest(unittest.TestCase):
    def test_streamed_tool_call_typed_deltas_and_completion(self):
        with Client(opts()) as c:
            s = c.stream_deltas(fixture("tool_call"))
            deltas = list(s)
        self.assertTrue(all(isinstance(d, Delta) for d in deltas))
        tool = tool_deltas(deltas)
        self.assertEqual(len(tool), 3)
        self.assertTrue(all(d.id == "call_1" and d.name == "get_weather" for d in tool))
        self.assertEqual(json.loads("".join(d.text for d in tool)), {"city": "Paris"})
        done = s.completion
        self.assertEqual(done["object"], "chat.completion")
        choice = done["choices"][0]
        self.assertEqual(choice["finish_reason"], "tool_calls")
        call = choice["message"]["tool_calls"][0]
        self.assertEqual((call["id"], call["function"]["name"]), ("call_1", "get_weather"))
        self.assertEqual(json.loads(call["function"]["arguments"]), {"city": "Paris"})
        self.assertEqual(s.response.info["finish_reason"], "tool_calls")
        self.assertNotIn("invalid_tool_arguments", s.response.info)

    def test_reasoning_refusal_and_two_choices_are_typed(self):
        with Client(opts()) as c:
            r = list(c.stream_deltas(fixture("reasoning"), api="chat"))
            self.assertEqual(r[0], Delta(llmpool.DELTA_REASONING, 0, 0, None, None, "Let me "))
            self.assertEqual(text_of(r), "Answer.")
            refusal = list(c.stream_deltas(fixture("refusal")))
            self.assertEqual(text_of(refusal, llmpool.DELTA_REFUSAL), "I can't help with that.")
            s = c.stream_deltas(fixture("two_choices"))
            two = list(s)
        self.assertEqual({d.choice for d in two}, {0, 1})
        self.assertEqual("".join(d.text for d in two if d.choice == 1), "B1 B2")
        self.assertEqual(s.completion["choices"][1]["message"]["content"], "B1 B2")
        self.assertEqual(s.response.text, "A1 A2")

    def test_bad_arguments_are_listed_in_info(self):
        with Client(opts()) as c:
            s = c.stream_deltas(fixture("bad_arguments"))
            list(s)
        bad = s.response.info["invalid_tool_arguments"]
        self.assertEqual(bad[0]["at"], "choices[0].message.tool_calls[0]")
        self.assertEqual(bad[0]["name"], "get_weather")

    def test_error_in_a_200_stream_keeps_the_partial_completion(self):
        with Client(opts()) as c:
            s = c.stream_deltas(fixture("error_in_200"))
            seen = []
            with self.assertRaises(llmpool.ProtocolError) as cm:
                for d in s:
                    seen.append(d)
        self.assertEqual(text_of(seen), "Partial ")
        self.assertIs(s.response, cm.exception.response)
        self.assertEqual(s.completion["choices"][0]["message"]["content"], "Partial ")
        self.assertIsNone(s.completion["choices"][0]["finish_reason"])

    def test_breaking_out_stops_the_stream_with_what_arrived(self):
        with Client(opts()) as c:
            with c.stream_deltas(fixture("tool_call", **SLOW)) as s:
                for _ in s:
                    break
            self.assertEqual(s.response.code, llmpool.CANCELLED)
            call = s.completion["choices"][0]["message"]["tool_calls"][0]
            self.assertEqual(call["function"]["name"], "get_weather")
            # A plain break (the stream still referenced) stops it too.
            s = c.stream_deltas(fixture("tool_call", **SLOW))
            for _ in s:
                break
            self.assertEqual(s.response.code, llmpool.CANCELLED)
            # The client is fine afterwards.
            self.assertEqual(c.chat({"model": "m", "messages": []}).code, llmpool.OK)

    def test_responses_api_streamed_and_not(self):
        with Client(opts()) as c:
            r = c.responses({"model": "test-model", "input": "hello there"})
            self.assertEqual(r.text, "Echo: hello there")
            self.assertEqual(r.completion["object"], "response")
            self.assertEqual(r.info["finish_reason"], "completed")
            s = c.stream_deltas(RESPONSES_TOOL, api=llmpool.API_RESPONSES)
            deltas = list(s)
        self.assertEqual(text_of(deltas), "Echo: hello there")
        tool = tool_deltas(deltas)
        self.assertEqual(len(tool), 2)
        self.assertEqual((tool[0].call_index, tool[0].id, tool[0].name),
                         (1, "call_1", "get_weather"))
        self.assertEqual(s.completion["status"], "completed")
        self.assertEqual(s.completion["output"][1]["arguments"], '{"city": "Paris"}')

    def test_messages_api_streamed_and_overloaded(self):
        with Client(opts()) as c:
            r = c.messages({k: v for k, v in MESSAGES_TOOL.items() if k != "x_test_tool"})
            self.assertEqual(r.text, "Echo: hi")
            self.assertEqual(r.completion["stop_reason"], "end_turn")
            s = c.stream_deltas(MESSAGES_TOOL, api="messages")
            deltas = list(s)
            self.assertEqual(text_of(deltas), "Echo: hi")
            self.assertTrue(any(d.name == "get_weather" for d in tool_deltas(deltas)))
            self.assertEqual(s.completion["content"][1]["input"], {"city": "Paris"})
            self.assertEqual(s.completion["stop_reason"], "tool_use")
            over = dict(MESSAGES_TOOL, x_test_overloaded=True)
            with self.assertRaises(llmpool.ProtocolError) as cm:
                list(c.stream_deltas(over, api=llmpool.API_MESSAGES))
            self.assertIn("Overloaded", cm.exception.message)
            self.assertEqual(cm.exception.response.text, "Echo: hi")

    def test_completion_of_plain_calls_and_bad_api(self):
        with Client(opts()) as c:
            r = c.chat({"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
            self.assertEqual(r.completion, r.json())
            e = c.embeddings({"model": "m", "input": "x"})
            self.assertIsNone(e.completion)
            with self.assertRaises(llmpool.InvalidArgumentError):
                list(c.stream_deltas(fixture("tool_call"), api=7))
            with self.assertRaises(llmpool.InvalidArgumentError):
                c.stream_deltas(fixture("tool_call"), api="completions")


@unittest.skipUnless(PLAIN, "LLMPOOL_TEST_PLAIN_URL is not set (run via cargo test --test python)")
class AsyncTest(unittest.TestCase):
    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 30))

    def test_async_deltas_of_all_three_apis(self):
        async def main():
            async with AsyncClient(opts()) as c:
                out = {}
                for api, request in (("chat", fixture("tool_call")),
                                     ("responses", RESPONSES_TOOL),
                                     ("messages", MESSAGES_TOOL)):
                    s = c.stream_deltas(request, api=api)
                    out[api] = ([d async for d in s], s.completion)
                return out

        out = self.run_async(main())
        chat, done = out["chat"]
        self.assertEqual(json.loads("".join(d.text for d in tool_deltas(chat))),
                         {"city": "Paris"})
        self.assertEqual(done["choices"][0]["finish_reason"], "tool_calls")
        deltas, done = out["responses"]
        self.assertEqual(text_of(deltas), "Echo: hello there")
        self.assertEqual(done["output"][1]["name"], "get_weather")
        deltas, done = out["messages"]
        self.assertEqual(text_of(deltas), "Echo: hi")
        self.assertEqual(done["content"][1]["input"], {"city": "Paris"})

    def test_500_async_delta_streams_at_once_through_the_queue(self):
        async def one(c, i):
            s = c.stream_deltas({"model": "m", "x_test_stream_delay_ms": 30,
                                 "messages": [{"role": "user", "content": f"{i} x y z"}]})
            return "".join([d.text async for d in s]), s.response

        async def main():
            async with AsyncClient(opts()) as c:
                return await asyncio.gather(*(one(c, i) for i in range(500)))

        for i, (text, r) in enumerate(self.run_async(main())):
            self.assertEqual(text, f"Echo: {i} x y z")
            self.assertTrue(r.ok)
            self.assertEqual(r.text, text)

    def test_async_responses_messages_and_errors(self):
        async def main():
            async with AsyncClient(opts()) as c:
                r = await c.responses({"model": "test-model", "input": "yo"})
                m = await c.messages({"model": "m", "messages": [{"role": "user",
                                                                  "content": "yo"}]})
                s = c.stream_deltas(dict(MESSAGES_TOOL, x_test_overloaded=True), api="messages")
                with self.assertRaises(llmpool.ProtocolError):
                    async for _ in s:
                        pass
                return r, m, s

        r, m, s = self.run_async(main())
        self.assertEqual((r.text, r.completion["object"]), ("Echo: yo", "response"))
        self.assertEqual((m.text, m.completion["type"]), ("Echo: yo", "message"))
        self.assertIn("call_id", m.info)
        self.assertEqual(s.response.code, llmpool.PROTOCOL)
        self.assertEqual(s.completion["content"][0]["text"], "Echo: hi")

    def test_async_early_exit_cancels_and_keeps_the_partial_answer(self):
        async def main():
            async with AsyncClient(opts()) as c:
                s = c.stream_deltas(fixture("tool_call", **SLOW))
                async with s:
                    async for _ in s:
                        break
                # A plain break (the finalized loop cancels), then aclose():
                # CANCELLED with what arrived.
                plain = c.stream_deltas(fixture("tool_call", **SLOW))
                async for _ in plain:
                    break
                await plain.aclose()
                # The C side counts a call out just after its done returned.
                for _ in range(100):
                    if c.metrics()["async"]["in_flight"] == 0:
                        break
                    await asyncio.sleep(0.01)
                return s, c.metrics()["async"]["in_flight"], plain

        s, in_flight, plain = self.run_async(main())
        self.assertEqual(plain.response.code, llmpool.CANCELLED)
        self.assertEqual(in_flight, 0)
        self.assertEqual(s.response.code, llmpool.CANCELLED)
        self.assertEqual(
            s.completion["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather")


if __name__ == "__main__":
    unittest.main()
