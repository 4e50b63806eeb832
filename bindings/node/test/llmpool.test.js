'use strict';
// node --test suite for llmpool.js against the bundled loopback server
// (llmpool-testserver), started here from $LLMPOOL_TESTSERVER or
// ../../target/debug/llmpool-testserver (`cargo build -p llmpool-testserver`).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');

const { Client, LLMPoolError, Code, LogLevel, codeName, version } = require('..');

const TEST_KEY = 'sk-test-node-5150';
const servers = [];
let plainURL;
let keyedURL;

function startServer(...args) {
  const bin =
    process.env.LLMPOOL_TESTSERVER ||
    path.join(__dirname, '..', '..', '..', 'target', 'debug', 'llmpool-testserver');
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    servers.push(child);
    const timer = setTimeout(() => reject(new Error(`${bin} printed nothing in 30 s`)), 30000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin} (cargo build -p llmpool-testserver, or set LLMPOOL_TESTSERVER): ${e.message}`));
    });
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => {
      clearTimeout(timer);
      const m = /^LISTENING (\S+)/.exec(line.trim());
      if (m) resolve(m[1]);
      else reject(new Error(`${bin} printed ${JSON.stringify(line)}`));
      child.stdout.resume(); // keep the pipe drained
    });
  });
}

before(async () => {
  plainURL = await startServer();
  keyedURL = await startServer('--require-key', TEST_KEY);
});

after(() => {
  for (const child of servers) child.kill();
});

function client(extra = {}) {
  return new Client({ base_url: plainURL, ...extra });
}

function chatReq(content, extra = {}) {
  return { model: 'gpt-4.1', messages: [{ role: 'user', content }], ...extra };
}

async function pushFaults(faults) {
  const res = await fetch(`${plainURL}/_test/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(faults),
  });
  await res.arrayBuffer();
  assert.ok(res.ok, `push faults: HTTP ${res.status}`);
}

/** Counts setInterval ticks while `promise` is pending. */
async function ticksDuring(promise, everyMs = 10) {
  let ticks = 0;
  const timer = setInterval(() => ticks++, everyMs);
  try {
    const value = await promise;
    return { ticks, value };
  } finally {
    clearInterval(timer);
  }
}

test('version and code names', () => {
  assert.match(version(), /^\d+\.\d+\.\d+/);
  assert.equal(codeName(Code.TIMEOUT), 'LLMPOOL_TIMEOUT');
  assert.equal(codeName(12345), 'LLMPOOL_UNKNOWN');
});

test('bad options throw LLMPoolError naming the key', () => {
  assert.throws(
    () => new Client({ no_such_option: 1 }),
    (e) => e instanceof LLMPoolError && e.code === Code.INVALID_ARGUMENT && /no_such_option/.test(e.message),
  );
  assert.throws(() => new Client('not json'), LLMPoolError);
});

test('chat, embeddings and request', async () => {
  const c = client();
  try {
    const r = await c.chat(chatReq('hello from node'));
    assert.equal(r.text, 'Echo: hello from node');
    assert.equal(r.status, 200);
    assert.equal(r.code, Code.OK);
    assert.equal(r.json().choices[0].message.content, r.text);
    assert.equal(r.info.attempts, 1);

    // A JSON string works as well as an object.
    const r2 = await c.chat(JSON.stringify(chatReq('as a string')));
    assert.equal(r2.text, 'Echo: as a string');

    const e = await c.embeddings({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    const data = e.json().data;
    assert.equal(data.length, 2);
    assert.ok(data[0].embedding.length > 0);

    const models = await c.request('GET', '/models');
    assert.ok(Array.isArray(models.json().data));
  } finally {
    await c.close();
  }
});

function b64Floats(values) {
  return Buffer.from(new Float32Array(values).buffer).toString('base64');
}

const ROWS = [0, 1, 2, 3].map((r) => [0, 1, 2, 3, 4].map((d) => (r * 10 + d) / 8 - 3));

function embeddingsAnswer(rows, encode, order) {
  const data = order.map((i) => ({ object: 'embedding', index: i, embedding: encode(rows[i]) }));
  return JSON.stringify({ object: 'list', data, model: 'emb', usage: { prompt_tokens: 2, total_tokens: 2 } });
}

test('embeddings() gives a Float32Array in index order from float and base64 answers', async () => {
  const c = client({ max_retries: 0 });
  try {
    for (const encode of [(r) => r, b64Floats]) {
      await pushFaults([{ type: 'status', code: 200, body: embeddingsAnswer(ROWS, encode, [2, 0, 3, 1]) }]);
      const r = await c.embeddings({ model: 'emb', input: ['a', 'b'] });
      const e = r.embeddings();
      assert.ok(e.data instanceof Float32Array);
      assert.equal(e.count, 4);
      assert.equal(e.dim, 5);
      assert.deepEqual(Array.from(e.data), ROWS.flat());
      assert.deepEqual(Array.from(e.row(3)), ROWS[3]);
      assert.throws(() => e.row(4), RangeError);
      assert.equal(r.embeddings(), e, 'decoded once');
    }
    const own = await c.embeddings({ model: 'm', input: ['x', 'y', 'z'] });
    const want = own.json().data.map((d) => d.embedding);
    const got = own.embeddings();
    assert.equal(got.count, 3);
    assert.deepEqual(Array.from(got.row(1)), Array.from(new Float32Array(want[1])));
  } finally {
    await c.close();
  }
});

test('embeddings() errors: ragged is PROTOCOL, a chat answer is INVALID_ARGUMENT', async () => {
  const c = client({ max_retries: 0 });
  try {
    for (const encode of [(r) => r, b64Floats]) {
      const ragged = [ROWS[0], ROWS[1].slice(0, 4)];
      await pushFaults([{ type: 'status', code: 200, body: embeddingsAnswer(ragged, encode, [0, 1]) }]);
      const r = await c.embeddings({ model: 'emb', input: 'a' });
      assert.throws(() => r.embeddings(), (e) => e.code === Code.PROTOCOL && /ragged rows/.test(e.message));
    }
    const chat = await c.chat(chatReq('hi'));
    assert.throws(() => chat.embeddings(), (e) => e.code === Code.INVALID_ARGUMENT);
    await pushFaults([{ type: 'status', code: 200, body: '{"choices":[{"message":{"content":"x"}}]}' }]);
    const notEmb = await c.embeddings({ model: 'emb', input: 'a' });
    assert.throws(
      () => notEmb.embeddings(),
      (e) => e.code === Code.INVALID_ARGUMENT && /not an embeddings answer/.test(e.message),
    );
  } finally {
    await c.close();
  }
});

test('log callback, console logging and the Prometheus exposition', async () => {
  const c = client();
  try {
    const lines = [];
    c.setLogCallback((level, line) => lines.push([level, line]), LogLevel.DEBUG);
    await c.chat(chatReq('logged'));
    const text = lines.map(([, l]) => l).join('\n');
    assert.match(text, /opened to 127\.0\.0\.1/);
    assert.match(text, /answer HTTP 200/);
    assert.ok(lines.some(([lv]) => lv === LogLevel.DEBUG), text);
    assert.ok(lines.every(([lv]) => lv >= LogLevel.ERROR && lv <= LogLevel.DEBUG), text);

    const seen = [];
    const orig = console.info;
    console.info = (s) => seen.push(s);
    try {
      c.logToConsole(LogLevel.INFO);
      await c.chat(chatReq('to the console'));
    } finally {
      console.info = orig;
    }
    assert.ok(seen.some((s) => /^llmpool INFO call=\d+ answer HTTP 200/.test(s)), seen.join('\n'));

    c.setLogCallback(() => {
      throw new Error('sink');
    }, LogLevel.TRACE);
    assert.equal((await c.chat(chatReq('still'))).text, 'Echo: still');
    c.setLogCallback(null);
    assert.throws(() => c.setLogCallback(() => {}, 9), LLMPoolError);

    const prom = c.metricsPrometheus();
    assert.match(prom, /# TYPE llmpool_requests_total counter\n/);
    assert.match(prom, /code="LLMPOOL_OK"\} 3\n/);
  } finally {
    await c.close();
  }
});

test('HTTP 400 rejects with LLMPoolError carrying code, status and body', async () => {
  const c = client({ max_retries: 0 });
  try {
    await pushFaults([{ type: 'status', code: 400 }]);
    await assert.rejects(c.chat(chatReq('bad')), (e) => {
      assert.ok(e instanceof LLMPoolError);
      assert.equal(e.code, Code.HTTP_STATUS);
      assert.equal(e.codeName, 'LLMPOOL_HTTP_STATUS');
      assert.equal(e.status, 400);
      assert.ok(JSON.parse(e.body).error.message, `body ${e.body}`);
      assert.match(e.message, /HTTP 400/);
      assert.equal(e.response.status, 400);
      return true;
    });
    // The client still works.
    assert.equal((await c.chat(chatReq('ok'))).text, 'Echo: ok');
  } finally {
    await c.close();
  }
});

/** A loopback port nothing listens on. */
function closedPort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
}

test('connection refused rejects with CONNECT', async () => {
  const port = await closedPort();
  const c = new Client({ base_url: `http://127.0.0.1:${port}/v1`, max_retries: 0 });
  try {
    await assert.rejects(c.chat(chatReq('x')), (e) => e.code === Code.CONNECT && e.status === 0);
  } finally {
    await c.close();
  }
});

test('the event loop keeps ticking during a slow call', async () => {
  const c = client({ max_retries: 0 });
  try {
    await pushFaults([{ type: 'delay_before_headers', ms: 500 }]);
    const start = Date.now();
    const { ticks, value } = await ticksDuring(c.chat(chatReq('slow')), 10);
    const elapsed = Date.now() - start;
    assert.equal(value.text, 'Echo: slow');
    assert.ok(elapsed >= 450, `the call took only ${elapsed} ms`);
    // ~50 ticks if the loop is free; a blocked loop gives 0 to 2 (timers
    // do not catch up). 8 leaves room for a loaded machine.
    assert.ok(ticks >= 8, `only ${ticks} ticks in ${elapsed} ms: the event loop was blocked`);
  } finally {
    await c.close();
  }
});

test('many concurrent calls share one client and few connections', async () => {
  const c = client({ max_concurrency: 16, pool_max_idle_per_host: 16 });
  try {
    const n = 200;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => c.chat(chatReq(`call ${i}`))),
    );
    results.forEach((r, i) => assert.equal(r.text, `Echo: call ${i}`));
    const m = c.metrics();
    assert.equal(m.requests, n);
    assert.equal(m.errors, 0);
    assert.ok(m.connections_opened >= 1 && m.connections_opened <= 32, `connections_opened ${m.connections_opened}`);
  } finally {
    await c.close();
  }
});

test('sequential calls reuse one connection', async () => {
  const c = client();
  try {
    for (let i = 0; i < 5; i++) await c.chat(chatReq('seq'));
    const m = c.metrics();
    assert.equal(m.connections_opened, 1);
    assert.equal(m.connections_reused, 4);
  } finally {
    await c.close();
  }
});

test('chatStream delivers events in order on the main thread', async () => {
  const c = client();
  try {
    const deltas = [];
    const r = await c.chatStream(chatReq('stream these words please'), (delta, event) => {
      assert.equal(typeof event, 'object');
      assert.ok(event.object === 'chat.completion.chunk' || event.choices, JSON.stringify(event));
      deltas.push(delta);
    });
    assert.equal(deltas.join(''), 'Echo: stream these words please');
    assert.equal(r.text, deltas.join(''));
    assert.ok(deltas.filter((d) => d !== '').length >= 2, JSON.stringify(deltas));
    assert.equal(r.info.chunks, deltas.length);
    assert.ok(r.info.finish_reason);
    assert.equal(typeof r.info.ttft_ms, 'number');
  } finally {
    await c.close();
  }
});

test('the event loop keeps ticking during a slow stream', async () => {
  const c = client();
  try {
    let events = 0;
    const start = Date.now();
    const { ticks, value } = await ticksDuring(
      c.chatStream(chatReq('one two three four five', { x_test_stream_delay_ms: 60 }), () => {
        events++;
      }),
      10,
    );
    const elapsed = Date.now() - start;
    assert.equal(value.text, 'Echo: one two three four five');
    assert.ok(events >= 5);
    assert.ok(elapsed >= 250, `the stream took only ${elapsed} ms`);
    assert.ok(ticks >= 8, `only ${ticks} ticks in ${elapsed} ms`);
  } finally {
    await c.close();
  }
});

test('stream as an async iterator', async () => {
  const c = client();
  try {
    let text = '';
    for await (const { delta, event } of c.stream(chatReq('iterate me'))) {
      assert.equal(typeof event, 'object');
      text += delta;
    }
    assert.equal(text, 'Echo: iterate me');

    // Breaking out stops the stream; the client stays usable.
    let seen = 0;
    for await (const _ of c.stream(chatReq('a b c d e f g'))) {
      if (++seen === 2) break;
    }
    assert.equal(seen, 2);
    assert.equal((await c.chat(chatReq('after'))).text, 'Echo: after');

    // Failures are thrown from the loop.
    await pushFaults([{ type: 'status', code: 400 }]);
    await assert.rejects(
      (async () => {
        for await (const _ of c.stream(chatReq('x'), {})) {
          // never reached
        }
      })(),
      (e) => e instanceof LLMPoolError && e.status === 400,
    );
  } finally {
    await c.close();
  }
});

test('1,000 streams at once all complete, in order and whole (500 crashed Node when each library thread called into JS)', async () => {
  const c = client();
  try {
    const words = 'one two three four five six';
    const results = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        let text = '';
        for await (const { delta } of c.stream(chatReq(`${i} ${words}`, { x_test_stream_delay_ms: 50 }))) {
          text += delta;
        }
        return text;
      }),
    );
    results.forEach((text, i) => assert.equal(text, `Echo: ${i} ${words}`));
  } finally {
    c.close();
  }
});

test('1,000 typed-delta streams at once through the queue: whole, and no JS called from library threads', async () => {
  const c = client();
  try {
    const words = 'red green blue';
    const texts = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        let text = '';
        const s = c.streamDeltas(chatReq(`${i} ${words}`, { x_test_stream_delay_ms: 50 }));
        for await (const d of s) text += d.text;
        assert.equal(s.response.ok, true);
        return text;
      }),
    );
    texts.forEach((text, i) => assert.equal(text, `Echo: ${i} ${words}`));
  } finally {
    c.close();
  }
});

test('stopping a stream: false, a throw, an AbortSignal', async () => {
  const c = client();
  try {
    let calls = 0;
    await assert.rejects(
      c.chatStream(chatReq('one two three four'), () => ++calls < 2),
      (e) => e instanceof LLMPoolError && e.code === Code.CANCELLED,
    );
    assert.equal(calls, 2);

    const boom = new Error('boom');
    await assert.rejects(
      c.chatStream(chatReq('one two'), () => {
        throw boom;
      }),
      (e) => e === boom,
    );

    const ac = new AbortController();
    let n = 0;
    await assert.rejects(
      c.chatStream(chatReq('one two three four'), () => {
        n++;
        ac.abort();
      }, { signal: ac.signal }),
      (e) => e.code === Code.CANCELLED,
    );
    assert.equal(n, 1);
    assert.equal((await c.chat(chatReq('after'))).text, 'Echo: after');
  } finally {
    await c.close();
  }
});

test('batch keeps order, reports progress and isolates failures', async () => {
  const c = client();
  try {
    const reqs = Array.from({ length: 20 }, (_, i) => chatReq(`item ${i}`));
    const progress = [];
    const res = await c.batch(reqs, { maxConcurrency: 4, onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(res.length, 20);
    res.forEach((r, i) => {
      assert.ok(r.ok);
      assert.equal(r.text, `Echo: item ${i}`);
    });
    assert.equal(progress.length, 20);
    assert.deepEqual(progress[0], [1, 20]);
    assert.deepEqual(progress[19], [20, 20]);

    reqs[3] = 'not json';
    const res2 = await c.batch(reqs);
    res2.forEach((r, i) => assert.equal(r.ok, i !== 3, `item ${i}`));
    const err = res2[3].toError();
    assert.ok(err instanceof LLMPoolError);
    assert.equal(err.code, Code.INVALID_ARGUMENT);

    assert.deepEqual(await c.batch([]), []);
  } finally {
    await c.close();
  }
});

test('cancel stops calls in flight', async () => {
  const c = client({ max_retries: 0 });
  try {
    await pushFaults([{ type: 'delay_before_headers', ms: 5000 }]);
    const start = Date.now();
    const p = c.chat(chatReq('slow'));
    await new Promise((r) => setTimeout(r, 300));
    c.cancel();
    await assert.rejects(p, (e) => e.code === Code.CANCELLED);
    assert.ok(Date.now() - start < 3000);
    assert.equal((await c.chat(chatReq('after'))).text, 'Echo: after');
  } finally {
    await c.close();
  }
});

test('setApiKey', async () => {
  const c = new Client({ base_url: keyedURL, max_retries: 0 });
  try {
    await assert.rejects(c.chat(chatReq('x')), (e) => e.status === 401);
    c.setApiKey(TEST_KEY);
    assert.equal((await c.chat(chatReq('x'))).text, 'Echo: x');
    assert.throws(() => c.setApiKey('bad\nkey'), LLMPoolError);
  } finally {
    await c.close();
  }
});

test('key provider, also from batch worker threads', async () => {
  const c = new Client({ base_url: keyedURL, max_retries: 0, api_key: 'sk-wrong' });
  try {
    let asked = 0;
    c.setKeyProvider(() => {
      asked++;
      return TEST_KEY;
    });
    assert.equal((await c.chat(chatReq('k'))).text, 'Echo: k');
    assert.equal(asked, 1);

    c.setApiKey('sk-wrong-again');
    asked = 0;
    const res = await c.batch(
      Array.from({ length: 8 }, (_, i) => chatReq(`k${i}`)),
      { maxConcurrency: 4 },
    );
    res.forEach((r, i) => assert.equal(r.text, `Echo: k${i}`, r.error));
    assert.ok(asked >= 1 && asked <= 8, `asked ${asked}`);

    // A provider that has no key: the 401 stands.
    c.setApiKey('sk-wrong');
    c.setKeyProvider(() => null);
    await assert.rejects(c.chat(chatReq('x')), (e) => e.status === 401);
    c.setKeyProvider(null);
  } finally {
    await c.close();
  }
});

test('warm opens connections', async () => {
  const c = client();
  try {
    assert.equal(await c.warm(3), 3);
    c.resetPool();
    assert.throws(() => c.warm(-1), TypeError);
  } finally {
    await c.close();
  }
});

test('warm against a dead gateway rejects with CONNECT and the reason', async () => {
  const c = new Client({ base_url: `http://127.0.0.1:${await closedPort()}/v1`, max_retries: 0 });
  try {
    await assert.rejects(c.warm(2), (e) => {
      assert.ok(e instanceof LLMPoolError);
      assert.equal(e.code, Code.CONNECT);
      assert.ok(e.message.length > 'LLMPOOL_CONNECT: '.length, e.message);
      return true;
    });
  } finally {
    await c.close();
  }
});

test('warm is async: 8 warm-ups to a 1 s server leave fs fast; an AbortSignal makes one reject with CANCELLED', async () => {
  assert.equal(process.env.UV_THREADPOOL_SIZE, undefined, 'UV_THREADPOOL_SIZE must be unset');
  // 8 clients x 2 handshakes, each GET /models answered after 1 s. On
  // libuv's 4-thread pool they took 2 s and an fs read waited about 1 s.
  const clients = Array.from({ length: 8 }, () => client({ max_retries: 0 }));
  try {
    await pushFaults({ type: 'delay', ms: 1000, times: 16 });
    const t0 = Date.now();
    const warms = clients.map((c) => c.warm(2));
    await new Promise((r) => setTimeout(r, 100));
    const f0 = Date.now();
    await require('node:fs').promises.readFile(__filename);
    const fsMs = Date.now() - f0;
    const opened = await Promise.all(warms);
    const wall = Date.now() - t0;
    console.log(`8 warm(2) to a 1 s server: ${wall} ms; fs.readFile during them: ${fsMs} ms`);
    assert.deepEqual(opened, Array(8).fill(2));
    assert.ok(fsMs < 200, `fs.readFile took ${fsMs} ms`);

    // A fresh client (the others' pools are warm: they would need nothing).
    // Aborted while the server holds its answers (1 s), the warm-up's
    // sockets are shut down: it rejects with CANCELLED within 100 ms.
    const cold = client({ max_retries: 0 });
    clients.push(cold);
    await pushFaults({ type: 'delay', ms: 1000, times: 2 });
    const ac = new AbortController();
    const slow = cold.warm(2, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    const a0 = Date.now();
    ac.abort();
    await assert.rejects(slow, (e) => e instanceof LLMPoolError && e.code === Code.CANCELLED);
    const settled = Date.now() - a0;
    console.log(`warm aborted while the server held its answer: settled in ${settled} ms`);
    assert.ok(settled < 100, `abort took ${settled} ms`);
    await assert.rejects(cold.warm(1, { signal: ac.signal }), (e) => e.code === Code.CANCELLED);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

test('close waits for calls in flight, then rejects new ones', async () => {
  const c = client({ max_retries: 0 });
  await pushFaults([{ type: 'delay_before_headers', ms: 200 }]);
  const p = c.chat(chatReq('in flight'));
  const closed = c.close();
  assert.equal((await p).text, 'Echo: in flight');
  await closed;
  await assert.rejects(c.chat(chatReq('x')), (e) => e.code === Code.INVALID_ARGUMENT);
  assert.throws(() => c.metrics(), LLMPoolError);
  await c.close(); // twice is fine
});

test('256 concurrent chats to a 1 s server: under 3.5 s, and fs stays fast', async () => {
  assert.equal(process.env.UV_THREADPOOL_SIZE, undefined, 'UV_THREADPOOL_SIZE must be unset');
  const c = client({ max_retries: 0 });
  await c.chat(chatReq('warm-up'));
  await pushFaults({ type: 'delay', ms: 1000, times: 256 });
  const t0 = Date.now();
  const calls = Array.from({ length: 256 }, (_, i) => c.chat(chatReq(`p${i}`)));
  // An unrelated fs read started while all 256 are in flight.
  await new Promise((r) => setTimeout(r, 100));
  const f0 = Date.now();
  await require('node:fs').promises.readFile(__filename);
  const fsMs = Date.now() - f0;
  const res = await Promise.all(calls);
  const wall = Date.now() - t0;
  res.forEach((r, i) => assert.equal(r.text, `Echo: p${i}`));
  console.log(`256 chats: ${wall} ms; fs.readFile during them: ${fsMs} ms`);
  assert.ok(wall < 3500, `256 calls took ${wall} ms`);
  assert.ok(fsMs < 200, `fs.readFile took ${fsMs} ms`);
  await c.close();
});

test('an AbortSignal cancels one call within 100 ms; its sibling completes', async () => {
  const c = client({ max_retries: 0 });
  await c.chat(chatReq('warm-up'));
  await pushFaults({ type: 'delay', ms: 1500 });
  const ac = new AbortController();
  const slow = c.chat(chatReq('slow'), { signal: ac.signal });
  await new Promise((r) => setTimeout(r, 200));
  const fast = c.chat(chatReq('fast'));
  assert.equal((await fast).text, 'Echo: fast');
  const t0 = Date.now();
  ac.abort();
  await assert.rejects(slow, (e) => e instanceof LLMPoolError && e.code === Code.CANCELLED);
  const took = Date.now() - t0;
  assert.ok(took < 100, `abort took ${took} ms`);
  // An already-aborted signal rejects at once, nothing is sent.
  await assert.rejects(c.chat(chatReq('x'), { signal: ac.signal }), (e) => e.code === Code.CANCELLED);
  await c.close();
});

test('requestRaw: binary upload, audio answer and headers', async () => {
  const c = client();
  try {
    const body = Buffer.alloc(1 << 20);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + 3) & 0xff;
    const r = await c.requestRaw('POST', '/echo', body, {
      contentType: 'application/octet-stream',
      headers: ['Content-Type', 'x-body-bytes', 'x-absent'],
    });
    assert.ok(Buffer.isBuffer(r.bodyBuffer));
    assert.ok(r.bodyBuffer.equals(body), 'echoed bytes differ');
    assert.equal(r.header('content-type'), 'application/octet-stream');
    assert.equal(r.header('X-Body-Bytes'), String(body.length));
    assert.equal(r.header('x-absent'), null);

    const speech = await c.requestRaw(
      'POST',
      '/audio/speech',
      Buffer.from(JSON.stringify({ model: 'tts-1', input: 'hi there', voice: 'a' })),
      { contentType: 'application/json' },
    );
    assert.equal(speech.header('content-type'), 'audio/mpeg');
    assert.match(speech.header('x-request-id'), /^req-/);
    assert.equal(speech.bodyBuffer.length, 8000);
    assert.equal(speech.bodyBuffer.subarray(0, 3).toString('latin1'), 'ID3');

    assert.throws(() => c.requestRaw('POST', '/echo', 'not bytes'), TypeError);
    await assert.rejects(
      c.requestRaw('POST', '/echo', Buffer.from('x'), { contentType: 'a\r\nb: c' }),
      (e) => e instanceof LLMPoolError && e.code === Code.INVALID_ARGUMENT,
    );
  } finally {
    c.close();
  }
});

test('requestRaw is async: 64 byte-exact echoes to a 1 s server in under 3.5 s, body reusable at once, fs stays fast', async () => {
  assert.equal(process.env.UV_THREADPOOL_SIZE, undefined, 'UV_THREADPOOL_SIZE must be unset');
  const n = 64;
  const c = client({ max_retries: 0 });
  try {
    await c.chat(chatReq('warm-up'));
    await pushFaults({ type: 'delay', ms: 1000, times: n });
    const t0 = Date.now();
    const want = [];
    const calls = [];
    for (let i = 0; i < n; i++) {
      const body = Buffer.alloc(4096 + i);
      for (let j = 0; j < body.length; j++) body[j] = (j * 31 + i) & 0xff;
      want.push(Buffer.from(body));
      calls.push(c.requestRaw('POST', '/echo', body, { contentType: 'application/octet-stream' }));
      // Copied at submit: overwriting it now must not change what is sent.
      body.fill(0x58);
    }
    // On libuv's 4-thread pool these would take 16 s and block fs meanwhile.
    await new Promise((r) => setTimeout(r, 100));
    const f0 = Date.now();
    await require('node:fs').promises.readFile(__filename);
    const fsMs = Date.now() - f0;
    const res = await Promise.all(calls);
    const wall = Date.now() - t0;
    res.forEach((r, i) => assert.ok(r.bodyBuffer.equals(want[i]), `echo ${i} differs`));
    console.log(`${n} requestRaw calls to a 1 s server: ${wall} ms; fs.readFile during them: ${fsMs} ms`);
    assert.ok(wall < 3500, `${n} requestRaw calls took ${wall} ms`);
    assert.ok(fsMs < 200, `fs.readFile took ${fsMs} ms`);
  } finally {
    await c.close();
  }
});

test('an AbortSignal cancels one requestRaw within 100 ms; its sibling completes', async () => {
  const c = client({ max_retries: 0 });
  try {
    await c.chat(chatReq('warm-up'));
    await pushFaults({ type: 'delay', ms: 1500 });
    const ac = new AbortController();
    const slow = c.requestRaw('POST', '/echo', Buffer.from([0, 1, 2]), { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    const bytes = Buffer.from([0xff, 0, 0x80, 0x41]);
    const fast = await c.requestRaw('POST', '/echo', bytes, { contentType: 'application/octet-stream' });
    assert.ok(fast.bodyBuffer.equals(bytes));
    const t0 = Date.now();
    ac.abort();
    await assert.rejects(slow, (e) => e instanceof LLMPoolError && e.code === Code.CANCELLED);
    const took = Date.now() - t0;
    console.log(`requestRaw aborted in ${took} ms`);
    assert.ok(took < 100, `abort took ${took} ms`);
    await assert.rejects(
      c.requestRaw('POST', '/echo', bytes, { signal: ac.signal }),
      (e) => e.code === Code.CANCELLED,
    );
  } finally {
    await c.close();
  }
});
