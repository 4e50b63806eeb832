'use strict';
// node --test suite for the agent-building calls of llmpool.js against the
// bundled loopback server: responses(), messages(), streamDeltas() on all
// three APIs and the assembled completion.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const { Client, Code, Api, DeltaKind, LLMPoolError } = require('..');

let server;
let baseURL;

before(async () => {
  const bin =
    process.env.LLMPOOL_TESTSERVER || path.join(__dirname, '..', '..', '..', 'target', 'debug', 'llmpool-testserver');
  server = spawn(bin, ['--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    server.on('error', reject);
    readline.createInterface({ input: server.stdout }).once('line', resolve);
  });
  server.stdout.resume(); // keep the pipe drained
  baseURL = /^LISTENING (\S+)/.exec(line.trim())[1];
});

after(() => server.kill());

function client() {
  return new Client({ base_url: baseURL, max_retries: 0 });
}

/** A chat request the test server answers with the stream fixture `name`. */
function fixture(name, extra = {}) {
  return { model: 'test-model', messages: [{ role: 'user', content: 'go' }], x_test_fixture: name, ...extra };
}

const RESPONSES_TOOL = { model: 'test-model', input: 'hello there', x_test_tool: true };
const MESSAGES = { model: 'claude-sonnet-4.5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] };
const MESSAGES_TOOL = { ...MESSAGES, x_test_tool: true };

async function collect(stream) {
  const out = [];
  for await (const d of stream) out.push(d);
  return out;
}

const textOf = (deltas, kind = DeltaKind.CONTENT) =>
  deltas
    .filter((d) => d.kind === kind)
    .map((d) => d.text)
    .join('');

test('a streamed chat tool call: typed deltas and the assembled completion', async () => {
  const c = client();
  try {
    const s = c.streamDeltas(fixture('tool_call'));
    const tool = (await collect(s)).filter((d) => d.kind === DeltaKind.TOOL_CALL);
    assert.equal(tool.length, 3);
    for (const d of tool) assert.deepEqual([d.id, d.name, d.choice, d.callIndex], ['call_1', 'get_weather', 0, 0]);
    assert.deepEqual(JSON.parse(tool.map((d) => d.text).join('')), { city: 'Paris' });
    const done = await s.finalCompletion();
    assert.equal(done, s.completion);
    assert.equal(done.object, 'chat.completion');
    const choice = done.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(choice.message.tool_calls[0].function.arguments), { city: 'Paris' });
    assert.equal(s.response.info.finish_reason, 'tool_calls');
  } finally {
    await c.close();
  }
});

test('reasoning, refusal, two choices and bad arguments', async () => {
  const c = client();
  try {
    const r = await collect(c.streamDeltas(fixture('reasoning'), { api: 'chat' }));
    assert.deepEqual(r[0], { kind: DeltaKind.REASONING, choice: 0, callIndex: 0, id: null, name: null, text: 'Let me ' });
    assert.equal(textOf(r), 'Answer.');
    const refusal = await collect(c.streamDeltas(fixture('refusal')));
    assert.equal(textOf(refusal, DeltaKind.REFUSAL), "I can't help with that.");
    const two = c.streamDeltas(fixture('two_choices'));
    const deltas = await collect(two);
    assert.deepEqual(new Set(deltas.map((d) => d.choice)), new Set([0, 1]));
    assert.equal(two.completion.choices[1].message.content, 'B1 B2');
    assert.equal(two.response.text, 'A1 A2');
    const bad = await c.streamDeltas(fixture('bad_arguments')).finalResponse();
    assert.equal(bad.info.invalid_tool_arguments[0].name, 'get_weather');
  } finally {
    await c.close();
  }
});

test('an error in a 200 stream is thrown and keeps the partial completion', async () => {
  const c = client();
  try {
    const s = c.streamDeltas(fixture('error_in_200'));
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const d of s) seen.push(d);
      })(),
      (e) => e instanceof LLMPoolError && e.code === Code.PROTOCOL && e.response === s.response,
    );
    assert.equal(textOf(seen), 'Partial ');
    assert.equal(s.completion.choices[0].message.content, 'Partial ');
    assert.equal(s.completion.choices[0].finish_reason, null);
  } finally {
    await c.close();
  }
});

test('breaking out cancels the call and keeps what arrived; a signal rejects', async () => {
  const c = client();
  try {
    // Chunks 200 ms apart: the break comes long before the stream would end.
    const s = c.streamDeltas(fixture('tool_call', { x_test_stream_delay_ms: 200 }));
    const t0 = Date.now();
    for await (const d of s) {
      assert.equal(d.kind, DeltaKind.TOOL_CALL);
      break;
    }
    assert.ok(Date.now() - t0 < 1500, 'the break waited for the stream');
    assert.equal(s.response.code, Code.CANCELLED);
    assert.equal(s.completion.choices[0].message.tool_calls[0].function.name, 'get_weather');
    const ac = new AbortController();
    const slow = c.streamDeltas(fixture('tool_call', { x_test_stream_delay_ms: 200 }), { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(slow.finalResponse(), (e) => e.code === Code.CANCELLED);
    // The C side counts a call out just after its done callback returned.
    for (let i = 0; i < 100 && c.metrics().async.in_flight > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(c.metrics().async.in_flight, 0);
  } finally {
    await c.close();
  }
});

test('the Responses API, streamed and not', async () => {
  const c = client();
  try {
    const r = await c.responses({ model: 'test-model', input: 'hello there' });
    assert.equal(r.text, 'Echo: hello there');
    assert.equal(r.completion.object, 'response');
    const s = c.streamDeltas(RESPONSES_TOOL, { api: Api.RESPONSES });
    const deltas = await collect(s);
    assert.equal(textOf(deltas), 'Echo: hello there');
    const tool = deltas.filter((d) => d.kind === DeltaKind.TOOL_CALL);
    assert.equal(tool.length, 2);
    assert.deepEqual([tool[0].callIndex, tool[0].id, tool[0].name], [1, 'call_1', 'get_weather']);
    assert.equal(s.completion.status, 'completed');
    assert.equal(s.completion.output[1].arguments, '{"city": "Paris"}');
  } finally {
    await c.close();
  }
});

test('the Messages API: tool_use input parsed, overloaded_error thrown', async () => {
  const c = client();
  try {
    const r = await c.messages(MESSAGES);
    assert.equal(r.text, 'Echo: hi');
    assert.equal(r.completion.stop_reason, 'end_turn');
    const s = c.streamDeltas(MESSAGES_TOOL, { api: 'messages' });
    const deltas = await collect(s);
    assert.equal(textOf(deltas), 'Echo: hi');
    assert.ok(deltas.some((d) => d.kind === DeltaKind.TOOL_CALL && d.name === 'get_weather'));
    const done = await s.finalCompletion();
    assert.deepEqual(done.content[1].input, { city: 'Paris' });
    assert.equal(done.stop_reason, 'tool_use');
    const over = c.streamDeltas({ ...MESSAGES, x_test_overloaded: true }, { api: Api.MESSAGES });
    await assert.rejects(collect(over), (e) => e.code === Code.PROTOCOL && /Overloaded/.test(e.message));
    assert.equal(over.response.text, 'Echo: hi');
  } finally {
    await c.close();
  }
});

test('completion of plain calls; a bad api is refused', async () => {
  const c = client();
  try {
    const r = await c.chat({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] });
    assert.deepEqual(r.completion, r.json());
    const e = await c.embeddings({ model: 'm', input: 'x' });
    assert.equal(e.completion, null);
    await assert.rejects(c.streamDeltas(fixture('tool_call'), { api: 7 }).finalResponse(), (err) => err.code === Code.INVALID_ARGUMENT);
    assert.throws(() => c.streamDeltas(fixture('tool_call'), { api: 'completions' }), TypeError);
  } finally {
    await c.close();
  }
});

test('many typed-delta streams at once share one registered callback', async () => {
  const c = client();
  try {
    const streams = Array.from({ length: 40 }, () => c.streamDeltas(fixture('tool_call')));
    const all = await Promise.all(streams.map(collect));
    for (const deltas of all) assert.equal(deltas.filter((d) => d.kind === DeltaKind.TOOL_CALL).length, 3);
    assert.ok(streams.every((s) => s.completion.choices[0].finish_reason === 'tool_calls'));
  } finally {
    await c.close();
  }
});
