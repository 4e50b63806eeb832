'use strict';
// llmpool for Node.js: a thin binding of the llmpool C library through
// koffi (https://koffi.dev). CommonJS; Node >= 18.
//
// Calls (chat, embeddings, request, requestRaw, streams, batches, warm) use llmpool's async C
// API (`llmpool_*_async`): a submit returns at once, the call runs on one of
// llmpool's own threads, and its completion comes back through a koffi
// *registered* callback, which koffi queues onto the main thread. Nothing
// runs on libuv's thread pool (which fs, dns.lookup, zlib and crypto
// share), so thousands of calls may be in flight without slowing them.
// Each call takes an optional AbortSignal (`{ signal }`) that cancels that
// call alone (`llmpool_call_cancel`). Quick calls that never do I/O
// (metrics, setApiKey, cancel, resetPool) are synchronous; warm() is async
// like the calls (its handshakes run on llmpool's threads).
//
// Streaming: stream events reach JS in order, on the main thread, between
// other event-loop work (llmpool's thread waits for each callback's return
// value: 0 = go on, 1 = stop). `chatStream()` takes a callback; `stream()`
// wraps it as an async iterator. `streamDeltas()` streams any of the three
// APIs (chat, Responses, Messages) as typed deltas without any callback
// from llmpool's threads: its deltas go to an llmpool_queue, taken in
// batches on the main thread (see `drainQueue`).
//
// The library is found in the platform package (@llmpool/linux-x64-gnu,
// an optional dependency), else at $LLMPOOL_LIB, else in the newer of
// ../../target/release and ../../target/debug (libllmpool.so / .dylib /
// llmpool.dll) of the repository.

const fs = require('node:fs');
const path = require('node:path');
const koffi = require('koffi');

/** Result codes (the numbers of the C enum llmpool_code; they never change). */
const Code = Object.freeze({
  OK: 0,
  INVALID_ARGUMENT: 1,
  CONNECT: 2,
  TLS: 3,
  TIMEOUT: 4,
  HTTP_STATUS: 5,
  IO: 6,
  PROTOCOL: 7,
  POOL_EXHAUSTED: 8,
  BUDGET_EXCEEDED: 9,
  CANCELLED: 10,
  RATE_LIMITED: 11,
  PANIC: 99,
});

// The platform package for this machine, napi-rs/esbuild style: one npm
// package per platform (`@llmpool/linux-x64-gnu`, ...) holding the prebuilt
// library, listed as an optionalDependency of `llmpool` so npm installs only
// the one whose `os`/`cpu`/`libc` match.
function platformPackage() {
  if (process.platform === 'linux') {
    const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
    const glibc = !report || Boolean(report.header?.glibcVersionRuntime);
    return `@llmpool/linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  return `@llmpool/${process.platform}-${process.arch}`;
}

function libraryPath() {
  const name =
    process.platform === 'win32'
      ? 'llmpool.dll'
      : process.platform === 'darwin'
        ? 'libllmpool.dylib'
        : 'libllmpool.so';
  // 1. The prebuilt library of the installed platform package.
  const pkg = platformPackage();
  try {
    const dir = path.dirname(require.resolve(`${pkg}/package.json`));
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  } catch {
    // not installed: go on
  }
  // 2. An explicit path.
  if (process.env.LLMPOOL_LIB) return process.env.LLMPOOL_LIB;
  // 3. The repository's build tree (bindings/node -> ../../target).
  const target = path.join(__dirname, '..', '..', 'target');
  const found = ['release', 'debug']
    .map((p) => path.join(target, p, name))
    .filter((p) => fs.existsSync(p))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (found.length === 0) {
    throw new Error(
      `llmpool: ${name} not found: install ${pkg} (an optional dependency of llmpool), ` +
        `set LLMPOOL_LIB, or build it in the repository (\`cargo build\`, looked in ${target}/{release,debug})`,
    );
  }
  return found[0];
}

const LIB_PATH = libraryPath();
const lib = koffi.load(LIB_PATH);

koffi.opaque('llmpool_client');
koffi.opaque('llmpool_response');
koffi.opaque('llmpool_call');
// userdata is declared as intptr_t: a call's number in `pending`, never a pointer.
const DoneCb = koffi.proto('void llmpool_done_cb(intptr_t userdata, llmpool_response *response)');
const EventCb = koffi.proto(
  'int llmpool_event_cb(intptr_t userdata, void *delta, size_t delta_len, void *event_json, size_t event_len)',
);
const StreamCb = koffi.proto(
  'int llmpool_stream_cb(void *userdata, void *delta, size_t delta_len, void *event_json, size_t event_len)',
);
// The delta arrives as a pointer, decoded with koffi.decode(ptr, DeltaStruct).
const DeltaStruct = koffi.struct('llmpool_delta', {
  kind: 'int',
  choice: 'uint32_t',
  call_index: 'uint32_t',
  id: 'const char *',
  name: 'const char *',
  text: 'void *',
  text_len: 'size_t',
});
const EventStruct = koffi.struct('llmpool_event', {
  kind: 'int',
  tag: 'uint64_t',
  call_id: 'uint64_t',
  delta: DeltaStruct,
  response: 'void *',
});
const ProgressCb = koffi.proto('void llmpool_progress_cb(void *userdata, size_t done, size_t total)');
const KeyCb = koffi.proto('int llmpool_key_provider_cb(void *userdata, void *buf, size_t buf_len)');
const LogCb = koffi.proto('void llmpool_log_cb(void *userdata, int level, void *message, size_t len)');

const C = {
  client_new: lib.func(
    'int llmpool_client_new(const char *options_json, _Out_ llmpool_client **out, void *errbuf, size_t errbuf_len)',
  ),
  client_free: lib.func('void llmpool_client_free(llmpool_client *client)'),
  chat: lib.func('int llmpool_chat(llmpool_client *client, const char *req, _Out_ llmpool_response **out)'),
  embeddings: lib.func(
    'int llmpool_embeddings(llmpool_client *client, const char *req, _Out_ llmpool_response **out)',
  ),
  request: lib.func(
    'int llmpool_request(llmpool_client *client, const char *method, const char *path, const char *body, _Out_ llmpool_response **out)',
  ),
  chat_stream: lib.func(
    'int llmpool_chat_stream(llmpool_client *client, const char *req, llmpool_stream_cb *cb, void *userdata, _Out_ llmpool_response **out)',
  ),
  chat_async: lib.func(
    'int llmpool_chat_async(llmpool_client *client, const char *req, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  embeddings_async: lib.func(
    'int llmpool_embeddings_async(llmpool_client *client, const char *req, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  request_async: lib.func(
    'int llmpool_request_async(llmpool_client *client, const char *method, const char *path, const char *body, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  request_raw_async: lib.func(
    'int llmpool_request_raw_async(llmpool_client *client, const char *method, const char *path, const char *content_type, const uint8_t *body, size_t body_len, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  chat_stream_async: lib.func(
    'int llmpool_chat_stream_async(llmpool_client *client, const char *req, llmpool_event_cb *on_event, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  responses_async: lib.func(
    'int llmpool_responses_async(llmpool_client *client, const char *req, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  messages_async: lib.func(
    'int llmpool_messages_async(llmpool_client *client, const char *req, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  stream_queued: lib.func(
    'int llmpool_stream_queued(llmpool_client *client, int api, const char *req, void *queue, uint64_t tag, _Out_ llmpool_call **call)',
  ),
  queue_new: lib.func('int llmpool_queue_new(_Out_ void **out)'),
  queue_wait: lib.func('int llmpool_queue_wait(void *queue, int timeout_ms)'),
  queue_take: lib.func('size_t llmpool_queue_take(void *queue, void *out, size_t max)'),
  call_cancel: lib.func('int llmpool_call_cancel(llmpool_call *call)'),
  call_free: lib.func('void llmpool_call_free(llmpool_call *call)'),
  chat_batch: lib.func(
    'int llmpool_chat_batch(llmpool_client *client, const char **reqs, size_t n, size_t max_concurrency, llmpool_progress_cb *progress, void *userdata, void *out)',
  ),
  responses_free: lib.func('void llmpool_responses_free(void *responses, size_t n)'),
  set_api_key: lib.func('int llmpool_client_set_api_key(llmpool_client *client, const char *key)'),
  set_key_provider: lib.func(
    'int llmpool_client_set_key_provider(llmpool_client *client, llmpool_key_provider_cb *cb, void *userdata)',
  ),
  reset_pool: lib.func('int llmpool_client_reset_pool(llmpool_client *client)'),
  cancel: lib.func('int llmpool_client_cancel(llmpool_client *client)'),
  warm_async: lib.func(
    'int llmpool_client_warm_async(llmpool_client *client, size_t n, llmpool_done_cb *done, intptr_t userdata, _Out_ llmpool_call **call)',
  ),
  metrics: lib.func('void *llmpool_client_metrics(llmpool_client *client)'),
  metrics_prometheus: lib.func('void *llmpool_client_metrics_prometheus(llmpool_client *client)'),
  set_log_callback: lib.func(
    'int llmpool_client_set_log_callback(llmpool_client *client, int min_level, llmpool_log_cb *cb, void *userdata)',
  ),
  string_free: lib.func('void llmpool_string_free(void *s)'),
  version: lib.func('const char *llmpool_version()'),
  code_name: lib.func('const char *llmpool_code_name(int code)'),
  response_code: lib.func('int llmpool_response_code(llmpool_response *r)'),
  response_status: lib.func('uint16_t llmpool_response_status(llmpool_response *r)'),
  response_body: lib.func('void *llmpool_response_body(llmpool_response *r, _Out_ size_t *len)'),
  response_text: lib.func('const char *llmpool_response_text(llmpool_response *r)'),
  response_error: lib.func('const char *llmpool_response_error(llmpool_response *r)'),
  response_info: lib.func('const char *llmpool_response_info(llmpool_response *r)'),
  response_completion: lib.func('const char *llmpool_response_completion(llmpool_response *r)'),
  response_header: lib.func('const char *llmpool_response_header(llmpool_response *r, const char *name)'),
  response_free: lib.func('void llmpool_response_free(llmpool_response *r)'),
  response_embeddings: lib.func(
    'int llmpool_response_embeddings(llmpool_response *r, _Out_ void **data, _Out_ size_t *count, _Out_ size_t *dim)',
  ),
  response_embeddings_error: lib.func('const char *llmpool_response_embeddings_error(llmpool_response *r)'),
};

// Frees the C response an embeddings Response kept (see Response.embeddings)
// when the Response is garbage collected without asking for its vectors.
const responseFinalizer = new FinalizationRegistry((ptr) => C.response_free(ptr));

/** Log levels (llmpool_log_level). */
const LogLevel = Object.freeze({ ERROR: 1, WARN: 2, INFO: 3, DEBUG: 4, TRACE: 5 });
const LOG_NAMES = ['', 'ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'];

/** The API a stream speaks (llmpool_api), for streamDeltas(). */
const Api = Object.freeze({ CHAT: 0, RESPONSES: 1, MESSAGES: 2 });
/** What a delta carries (llmpool_delta_kind). */
const DeltaKind = Object.freeze({ CONTENT: 0, REASONING: 1, REFUSAL: 2, TOOL_CALL: 3 });
const API_NAMES = { chat: Api.CHAT, responses: Api.RESPONSES, messages: Api.MESSAGES };

/** The name of a result code, e.g. "LLMPOOL_TIMEOUT". */
function codeName(code) {
  return C.code_name(code);
}

/** The C library's version, e.g. "0.1.0". */
function version() {
  return C.version();
}

/**
 * A failed llmpool call: `code` (a Code value), `codeName`
 * ("LLMPOOL_HTTP_STATUS"), `status` (HTTP status, 0 when no answer
 * arrived), `body` (the raw answer body, e.g. the gateway's JSON error) and
 * `response` (the whole Response, when there is one).
 */
class LLMPoolError extends Error {
  constructor(code, message, { status = 0, body = '', response = null } = {}) {
    const name = codeName(code);
    super(status ? `${name} (HTTP ${status}): ${message}` : `${name}: ${message}`);
    this.name = 'LLMPoolError';
    this.code = code;
    this.codeName = name;
    this.status = status;
    this.body = body;
    this.response = response;
  }
}

/** One call's result, copied out of the C response (already freed). */
class Response {
  constructor(fields) {
    /** A Code value; Code.OK on success. */
    this.code = fields.code;
    this.codeName = codeName(fields.code);
    /** HTTP status of the last answer, 0 if none. */
    this.status = fields.status;
    /** choices[0].message.content (streams: every delta received). */
    this.text = fields.text;
    /** The raw body (streams: the SSE bytes, only with the option keep_stream_body). */
    this.body = fields.body;
    /** Call details: attempts, retries, connection_reused, latency_ms, usage, ... */
    this.info = fields.info;
    /** Why the call failed, '' on success. */
    this.error = fields.error;
    /** The raw body as a Buffer (requestRaw only; null otherwise). */
    this.bodyBuffer = fields.bodyBuffer || null;
    /** Response headers copied out (lower-case names): those requestRaw asked for. */
    this.headers = fields.headers || {};
    // The completion's JSON text, parsed on first use of `.completion`.
    Object.defineProperty(this, '_completion', { value: fields.completion ?? null, writable: true });
  }

  /**
   * The answer as an object in its API's non-streaming shape: a chat
   * stream's assembled `chat.completion` (tool calls joined), a Responses
   * stream's final `response`, a Messages stream's final `message`, a
   * non-streamed call's body; null when there is none (embeddings, no answer).
   */
  get completion() {
    if (typeof this._completion === 'string') this._completion = JSON.parse(this._completion);
    return this._completion;
  }

  /** A copied-out response header (case-insensitive), or null. */
  header(name) {
    const v = this.headers[String(name).toLowerCase()];
    return v === undefined ? null : v;
  }

  get ok() {
    return this.code === Code.OK;
  }

  /** The body parsed as JSON. */
  json() {
    return JSON.parse(this.body);
  }

  /**
   * The vectors of an embeddings answer (float arrays or base64 alike):
   * `{ data, count, dim, row(i) }` where `data` is a row-major
   * Float32Array of count * dim floats, row i being the vector whose
   * `index` is i, and `row(i)` a subarray view of one vector. Decoded by
   * llmpool on first use and copied once into `data` (then the C response
   * is freed); later calls return the same object. Throws LLMPoolError:
   * Code.PROTOCOL for ragged or malformed vectors, Code.INVALID_ARGUMENT
   * for a response that is not an embeddings answer (only
   * Client.embeddings responses carry vectors).
   */
  embeddings() {
    if (this._vectors) return this._vectors;
    const ptr = this._c;
    if (!ptr) {
      throw new LLMPoolError(
        Code.INVALID_ARGUMENT,
        'not an embeddings answer: only Client.embeddings responses carry vectors',
      );
    }
    const data = [null];
    const count = [0];
    const dim = [0];
    const code = C.response_embeddings(ptr, data, count, dim);
    if (code !== Code.OK) {
      throw new LLMPoolError(code, C.response_embeddings_error(ptr), { status: this.status, response: this });
    }
    const rows = Number(count[0]);
    const cols = Number(dim[0]);
    const n = rows * cols;
    const floats = n > 0 ? new Float32Array(koffi.view(data[0], n * 4).slice(0)) : new Float32Array(0);
    responseFinalizer.unregister(this);
    this._c = null;
    C.response_free(ptr);
    const vectors = {
      data: floats,
      count: rows,
      dim: cols,
      row: (i) => {
        if (!Number.isInteger(i) || i < 0 || i >= rows) throw new RangeError(`llmpool: row ${i} of ${rows}`);
        return floats.subarray(i * cols, (i + 1) * cols);
      },
    };
    Object.defineProperty(this, '_vectors', { value: vectors, enumerable: false });
    return vectors;
  }

  /** This response's failure as an LLMPoolError, or null on success. */
  toError() {
    if (this.ok) return null;
    return new LLMPoolError(this.code, this.error, { status: this.status, body: this.body, response: this });
  }
}

/**
 * Copies a C response (a pointer) into a Response and frees it, unless
 * `keep`: then the Response owns it (for its embeddings()). `raw`:
 * `{ headers: [names] }` also copies the body as a Buffer and those headers.
 */
function takeResponse(ptr, keep = false, raw = null) {
  if (ptr === null || ptr === undefined || ptr === 0n) return null;
  try {
    const len = [0];
    const bodyPtr = C.response_body(ptr, len);
    const n = Number(len[0]);
    let info;
    try {
      info = JSON.parse(C.response_info(ptr));
    } catch {
      info = {};
    }
    let bodyBuffer = null;
    const headers = {};
    if (raw) {
      // Copied: the view points into the C response, freed below.
      bodyBuffer = n > 0 ? Buffer.from(new Uint8Array(koffi.view(bodyPtr, n))) : Buffer.alloc(0);
      for (const name of raw.headers) {
        const v = C.response_header(ptr, String(name));
        if (v !== null) headers[String(name).toLowerCase()] = v;
      }
    }
    const r = new Response({
      code: C.response_code(ptr),
      status: C.response_status(ptr),
      text: C.response_text(ptr),
      body: n > 0 ? koffi.decode.string(bodyPtr, n) : '',
      info,
      error: C.response_error(ptr),
      completion: C.response_completion(ptr),
      bodyBuffer,
      headers,
    });
    if (keep) {
      Object.defineProperty(r, '_c', { value: ptr, writable: true, enumerable: false });
      responseFinalizer.register(r, ptr, r);
      ptr = null;
    }
    return r;
  } finally {
    if (ptr) C.response_free(ptr);
  }
}

// Async calls in flight, by number (the C userdata). One registered `done`
// and one `on_event` callback serve them all.
const pending = new Map();
let nextCall = 1;
// koffi's queue of foreign-thread callbacks does not keep Node alive: a
// timer does, while any call is in flight.
let keepAlive = null;

const doneCb = koffi.register((ud, resp) => {
  const id = Number(ud);
  const p = pending.get(id);
  if (!p) {
    takeResponse(resp);
    return;
  }
  pending.delete(id);
  if (pending.size === 0 && keepAlive) {
    clearInterval(keepAlive);
    keepAlive = null;
  }
  p.finish(resp);
}, koffi.pointer(DoneCb));

const eventCb = koffi.register((ud, deltaPtr, deltaLen, eventPtr, eventLen) => {
  const p = pending.get(Number(ud));
  if (!p || !p.onEvent) return 1;
  return p.onEvent(deltaPtr, deltaLen, eventPtr, eventLen);
}, koffi.pointer(EventCb));


// Typed-delta streams hand their events over through one llmpool_queue
// (llmpool_stream_queued), never by calling JS from a library thread: a
// wait on libuv's thread pool (llmpool_queue_wait through koffi's async
// call) resolves on the main thread, which then takes every waiting event
// in batches of up to TAKE_MAX. The wait is armed only while queued
// streams are in flight, so an idle process can exit.
const TAKE_MAX = 256;
let eventQueue = null;
let eventBuf = null;
let queuedInFlight = 0;
let waiting = false;

function theQueue() {
  if (!eventQueue) {
    const out = [null];
    const code = C.queue_new(out);
    if (code !== Code.OK) throw new LLMPoolError(code, 'llmpool_queue_new failed');
    eventQueue = out[0];
    eventBuf = koffi.alloc(EventStruct, TAKE_MAX);
  }
  return eventQueue;
}

function armWait() {
  if (waiting || queuedInFlight === 0) return;
  waiting = true;
  C.queue_wait.async(eventQueue, 1000, (err) => {
    waiting = false;
    if (!err) drainQueue();
    armWait();
  });
}

function drainQueue() {
  for (;;) {
    const n = Number(C.queue_take(eventQueue, eventBuf, TAKE_MAX));
    if (n === 0) return;
    const events = koffi.decode(eventBuf, EventStruct, n);
    for (const ev of events) {
      const id = Number(ev.tag);
      const p = pending.get(id);
      if (ev.kind === 1) {
        if (p && p.onDelta) p.onDelta(deltaObject(ev.delta));
        continue;
      }
      queuedInFlight--;
      if (!p) {
        takeResponse(ev.response);
        continue;
      }
      pending.delete(id);
      if (pending.size === 0 && keepAlive) {
        clearInterval(keepAlive);
        keepAlive = null;
      }
      p.finish(ev.response);
    }
    if (n < TAKE_MAX) return;
  }
}

/** A decoded llmpool_delta as a plain object (its strings copied). */
function deltaObject(d) {
  const n = Number(d.text_len);
  return {
    kind: d.kind,
    choice: d.choice,
    callIndex: d.call_index,
    id: d.id,
    name: d.name,
    text: n > 0 ? koffi.decode.string(d.text, n) : '',
  };
}

/**
 * Submits one async call: `submit(id, callOut)` calls the C `*_async`
 * function. Resolves with `finish(responsePtr)`'s value. `signal` (an
 * AbortSignal) cancels this call alone.
 */
function submitCall(submit, { signal, onEvent = null, onDelta = null, finish = settle } = {}) {
  if (signal && signal.aborted) {
    return Promise.reject(new LLMPoolError(Code.CANCELLED, 'aborted before start'));
  }
  return new Promise((resolve, reject) => {
    const id = nextCall++;
    const callOut = [null];
    let abort = null;
    const entry = {
      onEvent,
      onDelta,
      finish: (resp) => {
        if (abort) signal.removeEventListener('abort', abort);
        C.call_free(callOut[0]);
        try {
          resolve(finish(Code.OK, resp));
        } catch (e) {
          reject(e);
        }
      },
    };
    pending.set(id, entry);
    if (!keepAlive) keepAlive = setInterval(() => {}, 1 << 30);
    let code;
    try {
      code = submit(id, callOut);
    } catch (e) {
      code = null;
      pending.delete(id);
      reject(e);
      return;
    }
    if (code !== Code.OK) {
      pending.delete(id);
      if (pending.size === 0 && keepAlive) {
        clearInterval(keepAlive);
        keepAlive = null;
      }
      reject(new LLMPoolError(code, 'the request was refused before sending (invalid JSON, method, path or content type, or a closed client)'));
      return;
    }
    if (signal) {
      abort = () => C.call_cancel(callOut[0]);
      signal.addEventListener('abort', abort, { once: true });
    }
  });
}

function toJSON(value, what) {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object') {
    throw new TypeError(`llmpool: ${what} must be a JSON string or an object`);
  }
  return JSON.stringify(value);
}

/** Settles a call: the Response on success, else an LLMPoolError. */
function settle(code, ptr, keep = false, raw = null) {
  const r = takeResponse(ptr, keep, raw);
  if (!r) throw new LLMPoolError(code === Code.OK ? Code.PANIC : code, 'llmpool returned no response');
  if (!r.ok) throw r.toError();
  return r;
}

// Frees clients that were never closed once they are garbage collected
// (no call can be in flight then: a call keeps its Client reachable).
const finalizer = new FinalizationRegistry((ptr) => C.client_free(ptr));

/**
 * A pooled client for one gateway. One Client serves any number of
 * concurrent calls (the C client is thread-safe; each call runs on one of
 * llmpool's own threads).
 */
class Client {
  /**
   * @param {object|string} [options] the options object or JSON (base_url,
   *   api_key, timeout_ms, max_retries, max_concurrency, ca_file, ...);
   *   omitted: defaults plus LLMPOOL_BASE_URL / LLMPOOL_API_KEY.
   */
  constructor(options) {
    const json = options === undefined || options === null ? null : toJSON(options, 'options');
    const out = [null];
    const errbuf = Buffer.alloc(1024);
    const code = C.client_new(json, out, errbuf, errbuf.length);
    if (code !== Code.OK || !out[0]) {
      const end = errbuf.indexOf(0);
      throw new LLMPoolError(code, errbuf.toString('utf8', 0, end < 0 ? errbuf.length : end));
    }
    this._ptr = out[0];
    this._maxConcurrency = (options && typeof options === 'object' && options.max_concurrency) || 0;
    this._inflight = 0;
    this._closing = null;
    this._drained = null;
    this._keyCallbacks = [];
    finalizer.register(this, this._ptr, this);
  }

  _acquire() {
    if (this._closing) throw new LLMPoolError(Code.INVALID_ARGUMENT, 'client is closed');
    this._inflight++;
    return this._ptr;
  }

  _release() {
    this._inflight--;
    if (this._inflight === 0 && this._drained) this._drained();
  }

  async _run(fn) {
    const ptr = this._acquire();
    try {
      return await fn(ptr);
    } finally {
      this._release();
    }
  }

  /**
   * POST {base_url}/chat/completions; resolves with a Response (`.text`).
   * `options.signal` (an AbortSignal) cancels this call alone: it rejects
   * with Code.CANCELLED within about 100 ms.
   */
  chat(request, options = {}) {
    const json = toJSON(request, 'request');
    return this._run((ptr) => submitCall((id, out) => C.chat_async(ptr, json, doneCb, id, out), options));
  }

  /** POST {base_url}/responses (OpenAI's Responses API); `.completion` is the `response` object. Options as for chat(). */
  responses(request, options = {}) {
    const json = toJSON(request, 'request');
    return this._run((ptr) => submitCall((id, out) => C.responses_async(ptr, json, doneCb, id, out), options));
  }

  /** POST {base_url}/messages (Anthropic's Messages API); `.completion` is the `message`. Options as for chat(). */
  messages(request, options = {}) {
    const json = toJSON(request, 'request');
    return this._run((ptr) => submitCall((id, out) => C.messages_async(ptr, json, doneCb, id, out), options));
  }

  /**
   * Streams `request` on `api` (Api.CHAT, the default, Api.RESPONSES,
   * Api.MESSAGES, or 'chat' / 'responses' / 'messages') as typed deltas
   * `{kind, choice, callIndex, id, name, text}` (kind a DeltaKind):
   *
   *     const s = client.streamDeltas(req);
   *     for await (const d of s) if (d.kind === DeltaKind.TOOL_CALL) args += d.text;
   *     const done = await s.finalCompletion();
   *
   * Breaking out of the loop cancels the call (`finalResponse()` then
   * resolves with what arrived, code CANCELLED); `signal` cancels it too
   * (the loop throws Code.CANCELLED). A failure is thrown from the loop and
   * from finalResponse(); its error's `response.completion` keeps what arrived.
   */
  streamDeltas(request, { api = Api.CHAT, signal } = {}) {
    const json = toJSON(request, 'request');
    const n = typeof api === 'string' ? API_NAMES[api] : api;
    if (!Number.isInteger(n)) throw new TypeError(`llmpool: unknown api ${JSON.stringify(api)}`);
    return new DeltaStream(this, json, n, signal);
  }

  /**
   * POST {base_url}/embeddings; resolves with a Response whose
   * `embeddings()` gives the vectors as a Float32Array (`.json().data` has
   * them as JSON). Ask for `encoding_format: 'base64'` for half the bytes.
   * Options as for chat().
   */
  embeddings(request, options = {}) {
    const json = toJSON(request, 'request');
    const finish = (code, resp) => settle(code, resp, true);
    return this._run((ptr) =>
      submitCall((id, out) => C.embeddings_async(ptr, json, doneCb, id, out), { ...options, finish }),
    );
  }

  /** Any method on a path below base_url, e.g. request('GET', '/models'). Options as for chat(). */
  request(method, path, body, options = {}) {
    const json = body === undefined || body === null ? null : toJSON(body, 'body');
    return this._run((ptr) =>
      submitCall((id, out) => C.request_async(ptr, method, path, json, doneCb, id, out), options),
    );
  }

  /**
   * Any method on a path below base_url with any bytes as the body (a
   * Buffer or Uint8Array; null for none), sent with `contentType` (e.g.
   * 'multipart/form-data; boundary=...'). Resolves with a Response whose
   * `bodyBuffer` holds the answer's bytes (e.g. audio/mpeg) and whose
   * `headers` holds the response headers named in `headers`. The bytes are
   * copied when the call is submitted: `body` may be reused at once.
   * `signal` (an AbortSignal) cancels this call alone, as for chat(); a
   * bad method, path or content type rejects with Code.INVALID_ARGUMENT
   * before anything is sent.
   */
  requestRaw(method, path, body, { contentType = null, headers = ['content-type', 'x-request-id'], signal } = {}) {
    let buf = null;
    if (body !== null && body !== undefined) {
      if (!(body instanceof Uint8Array)) throw new TypeError('llmpool: body must be a Buffer, a Uint8Array or null');
      buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    }
    const raw = { headers: Array.from(headers, String) };
    const finish = (code, resp) => settle(code, resp, false, raw);
    return this._run((ptr) =>
      submitCall(
        (id, out) =>
          C.request_raw_async(ptr, method, path, contentType, buf, buf ? buf.length : 0, doneCb, id, out),
        { signal, finish },
      ),
    );
  }

  /**
   * Streams a chat completion. `onEvent(delta, event)` is called on the main
   * thread for every chunk, in order: `delta` is the content text (often ''
   * for the first and last chunks) and `event` the parsed chunk JSON.
   * Return `false` to stop the stream (the promise then rejects with
   * Code.CANCELLED); `options.signal` (an AbortSignal) stops it too. An
   * exception thrown by onEvent stops the stream and rejects the promise
   * with that exception. Resolves with the Response (`.text` is the whole
   * answer, `.info` has ttft_ms, chunks, finish_reason, usage).
   */
  async chatStream(request, onEvent, options = {}) {
    if (typeof onEvent !== 'function') throw new TypeError('llmpool: onEvent must be a function');
    const json = toJSON(request, 'request');
    const { signal } = options;
    if (signal && signal.aborted) throw new LLMPoolError(Code.CANCELLED, 'aborted before start');
    let thrown = null;
    let failed = false;
    const handle = (deltaPtr, deltaLen, eventPtr, eventLen) => {
      if (failed || (signal && signal.aborted)) return 1;
      try {
        const dl = Number(deltaLen);
        const delta = dl > 0 ? koffi.decode.string(deltaPtr, dl) : '';
        const event = JSON.parse(koffi.decode.string(eventPtr, Number(eventLen)));
        return onEvent(delta, event) === false ? 1 : 0;
      } catch (e) {
        failed = true;
        thrown = e;
        return 1;
      }
    };
    const finish = (code, resp) => {
      if (thrown) {
        takeResponse(resp);
        throw thrown;
      }
      return settle(code, resp);
    };
    return this._run((ptr) =>
      submitCall((id, out) => C.chat_stream_async(ptr, json, eventCb, doneCb, id, out), {
        signal,
        onEvent: handle,
        finish,
      }),
    );
  }

  /**
   * The stream as an async iterator of `{delta, event}`:
   *
   *     for await (const { delta } of client.stream(req)) process.stdout.write(delta);
   *
   * Breaking out of the loop stops the stream. A failure is thrown from the
   * loop. The iterator's return value (not seen by for-await) is the Response.
   */
  async *stream(request, options = {}) {
    const queue = [];
    let wake = null;
    let stopped = false;
    let finished = false;
    let result;
    let error = null;
    const notify = () => {
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
    };
    const call = this.chatStream(
      request,
      (delta, event) => {
        if (stopped) return false;
        queue.push({ delta, event });
        notify();
        return true;
      },
      options,
    ).then(
      (r) => {
        result = r;
      },
      (e) => {
        error = e;
      },
    ).finally(() => {
      finished = true;
      notify();
    });
    try {
      for (;;) {
        if (queue.length > 0) {
          yield queue.shift();
          continue;
        }
        if (finished) break;
        await new Promise((resolve) => {
          wake = resolve;
        });
      }
      if (error) throw error;
      return result;
    } finally {
      // Reached on break/throw too: stop the stream and wait for the call.
      stopped = true;
      await call;
    }
  }

  /**
   * Sends the chat requests with at most `maxConcurrency` in flight (0: the
   * client's max_concurrency, else 16) and resolves with one Response per
   * request, in order, success or failure (see `response.ok` and
   * `response.toError()`): one failing item never fails the others.
   * `onProgress(done, total)` runs on the main thread after each item.
   */
  async batch(requests, { maxConcurrency = 0, onProgress = null, signal } = {}) {
    if (!Array.isArray(requests)) throw new TypeError('llmpool: requests must be an array');
    const jsons = requests.map((r) => toJSON(r, 'request'));
    const n = jsons.length;
    if (n === 0) {
      this._acquire();
      this._release();
      return [];
    }
    let limit = maxConcurrency;
    if (!limit) limit = this._maxConcurrency || 16;
    const results = new Array(n);
    let next = 0;
    let done = 0;
    let thrown = null;
    const asResponse = (_code, ptr) =>
      takeResponse(ptr) ||
      new Response({ code: Code.PANIC, status: 0, text: '', body: '', info: {}, error: 'no response' });
    const worker = async () => {
      while (next < n) {
        const i = next++;
        try {
          results[i] = await this._run((ptr) =>
            submitCall((id, out) => C.chat_async(ptr, jsons[i], doneCb, id, out), { signal, finish: asResponse }),
          );
        } catch (e) {
          results[i] =
            e instanceof LLMPoolError
              ? new Response({ code: e.code, status: 0, text: '', body: '', info: {}, error: e.message })
              : new Response({ code: Code.PANIC, status: 0, text: '', body: '', info: {}, error: String(e) });
        }
        done++;
        if (onProgress && !thrown) {
          try {
            onProgress(done, n);
          } catch (e) {
            thrown = e;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
    if (thrown) throw thrown;
    return results;
  }

  /** The client's metrics object (requests, errors, connections_opened, latency_ms, ...). */
  metrics() {
    const ptr = this._acquire();
    try {
      const s = C.metrics(ptr);
      if (!s) throw new LLMPoolError(Code.INVALID_ARGUMENT, 'no metrics');
      try {
        return JSON.parse(koffi.decode.string(s));
      } finally {
        C.string_free(s);
      }
    } finally {
      this._release();
    }
  }

  /** The client's metrics in the Prometheus text exposition format 0.0.4 (a string for /metrics). */
  metricsPrometheus() {
    const ptr = this._acquire();
    try {
      const s = C.metrics_prometheus(ptr);
      if (!s) throw new LLMPoolError(Code.INVALID_ARGUMENT, 'no metrics');
      try {
        return koffi.decode.string(s);
      } finally {
        C.string_free(s);
      }
    } finally {
      this._release();
    }
  }

  /**
   * Sends every log line at `level` (LogLevel.ERROR = 1 .. LogLevel.TRACE =
   * 5) and more severe to `fn(level, line)`. llmpool calls it on whatever
   * thread logs; koffi runs it on the JS main thread (a library thread
   * waits for it), so keep it quick. A throw loses that line only. null
   * turns logging off (also the LLMPOOL_LOG stderr fallback).
   */
  setLogCallback(fn, level = LogLevel.INFO) {
    const ptr = this._acquire();
    try {
      let cb = null;
      if (fn) {
        if (typeof fn !== 'function') throw new TypeError('llmpool: the log callback must be a function');
        cb = koffi.register((_ud, lvl, msg, len) => {
          try {
            fn(lvl, Buffer.from(koffi.view(msg, Number(len))).toString('utf8'));
          } catch {
            // never unwind into C
          }
        }, koffi.pointer(LogCb));
      }
      const code = C.set_log_callback(ptr, level, cb, null);
      if (code !== Code.OK) {
        if (cb) koffi.unregister(cb);
        throw new LLMPoolError(code, `cannot set the log callback (level ${level})`);
      }
      // Kept until close(): a line may still be on its way to an older one.
      if (cb) this._keyCallbacks.push(cb);
    } finally {
      this._release();
    }
  }

  /** Logs to `console` (error, warn, info, debug) at `level` and more severe. */
  logToConsole(level = LogLevel.INFO) {
    const out = [null, console.error, console.warn, console.info, console.debug, console.debug];
    this.setLogCallback((lvl, line) => (out[lvl] || console.log)(`llmpool ${LOG_NAMES[lvl]} ${line}`), level);
  }

  /** Replaces the API key for every later request ('' or null removes it). */
  setApiKey(key) {
    const ptr = this._acquire();
    try {
      const code = C.set_api_key(ptr, key || null);
      if (code !== Code.OK) throw new LLMPoolError(code, 'invalid API key (control characters?)');
    } finally {
      this._release();
    }
  }

  /**
   * Installs a key provider: when a call gets HTTP 401, `fn()` runs (on the
   * main thread, while that call waits) and returns a fresh key, or
   * null/'' for "no new key"; the call is retried once with it and the key
   * serves every later call. `fn` must be synchronous. null removes it.
   */
  setKeyProvider(fn) {
    const ptr = this._acquire();
    try {
      let cb = null;
      if (fn) {
        if (typeof fn !== 'function') throw new TypeError('llmpool: the key provider must be a function');
        cb = koffi.register((_ud, buf, bufLen) => {
          try {
            const key = fn();
            if (typeof key !== 'string' || key === '') return 1;
            const bytes = Buffer.from(key, 'utf8');
            const n = Number(bufLen);
            if (bytes.length + 1 > n) return 1;
            const dst = Buffer.from(koffi.view(buf, n));
            bytes.copy(dst);
            dst[bytes.length] = 0;
            return 0;
          } catch {
            return 1; // "no new key": the call fails with its 401
          }
        }, koffi.pointer(KeyCb));
      }
      const code = C.set_key_provider(ptr, cb, null);
      if (code !== Code.OK) {
        if (cb) koffi.unregister(cb);
        throw new LLMPoolError(code, 'cannot set the key provider');
      }
      // Kept until close(): a call in flight may still use an older one.
      if (cb) this._keyCallbacks.push(cb);
    } finally {
      this._release();
    }
  }

  /** Makes every call of this client in flight now reject promptly with Code.CANCELLED (per call: pass an AbortSignal). */
  cancel() {
    const ptr = this._acquire();
    try {
      C.cancel(ptr);
    } finally {
      this._release();
    }
  }

  /** Drops every idle pooled connection. */
  resetPool() {
    const ptr = this._acquire();
    try {
      C.reset_pool(ptr);
    } finally {
      this._release();
    }
  }

  /**
   * Opens up to n connections ahead of the first calls (TCP and TLS
   * handshakes done, on llmpool's threads); resolves with how many opened.
   * Rejects with an LLMPoolError (the first failure's code and error) when
   * none could be. `signal` (an AbortSignal) cancels it (Code.CANCELLED).
   */
  warm(n, { signal } = {}) {
    if (!Number.isInteger(n) || n < 0) throw new TypeError('llmpool: warm(n) needs an integer n >= 0');
    const finish = (code, resp) => {
      const r = settle(code, resp);
      // Aborted after its connects were done, llmpool may answer OK (with
      // the connects counted): the warm-up did not finish, say CANCELLED.
      if (signal && signal.aborted) throw new LLMPoolError(Code.CANCELLED, 'warm-up aborted by its AbortSignal');
      return Number(r.info.opened) || 0;
    };
    return this._run((ptr) => submitCall((id, out) => C.warm_async(ptr, n, doneCb, id, out), { signal, finish }));
  }

  /**
   * Waits for the calls in flight, then frees the client. Later calls
   * reject; closing twice returns the same promise.
   */
  close() {
    if (!this._closing) {
      this._closing = (async () => {
        if (this._inflight > 0) {
          await new Promise((resolve) => {
            this._drained = resolve;
          });
        }
        finalizer.unregister(this);
        C.client_free(this._ptr);
        this._ptr = null;
        for (const cb of this._keyCallbacks) koffi.unregister(cb);
        this._keyCallbacks = [];
      })();
    }
    return this._closing;
  }
}

/**
 * One typed-delta stream (see Client.streamDeltas): an async iterable of
 * deltas, started by the first iteration or finalResponse(). Deltas wait
 * in a queue until iterated.
 */
class DeltaStream {
  constructor(client, json, api, signal) {
    this._client = client;
    this._json = json;
    this._api = api;
    this._signal = signal;
    // Aborted on break as well as by `signal`: the call ends at once, even
    // while the server is silent (no next delta needed to notice).
    this._ac = new AbortController();
    this._queue = [];
    this._wake = null;
    this._stopped = false;
    this._ended = false;
    this._error = null;
    this._promise = null;
    /** The final Response once the stream ended (also after a failure or a break). */
    this.response = null;
  }

  /** The final Response's completion, null until the stream ended. */
  get completion() {
    return this.response ? this.response.completion : null;
  }

  _notify() {
    const w = this._wake;
    this._wake = null;
    if (w) w();
  }

  _start() {
    if (this._promise) return this._promise;
    const { _signal: signal, _ac: ac } = this;
    const onUserAbort = () => ac.abort();
    if (signal) {
      if (signal.aborted) ac.abort();
      else signal.addEventListener('abort', onUserAbort, { once: true });
    }
    const onDelta = (delta) => {
      // After a break or an abort the call is being cancelled: what
      // still arrives is dropped.
      if (this._stopped || ac.signal.aborted) return;
      this._queue.push(delta);
      this._notify();
    };
    const finish = (code, resp) => {
      const r = takeResponse(resp);
      this.response = r;
      if (!r) throw new LLMPoolError(code === Code.OK ? Code.PANIC : code, 'llmpool returned no response');
      const broke = this._stopped && !(signal && signal.aborted);
      if (!r.ok && !(broke && r.code === Code.CANCELLED)) throw r.toError();
      return r;
    };
    const json = this._json;
    const api = this._api;
    this._promise = this._client._run((ptr) =>
      submitCall(
        (id, out) => {
          const code = C.stream_queued(ptr, api, json, theQueue(), id, out);
          if (code === Code.OK) {
            queuedInFlight++;
            armWait();
          }
          return code;
        },
        { signal: ac.signal, onDelta, finish },
      ),
    );
    this._promise
      .then(
        () => {},
        (e) => {
          this._error = e;
          if (!this.response && e instanceof LLMPoolError) this.response = e.response;
        },
      )
      .finally(() => {
        if (signal) signal.removeEventListener('abort', onUserAbort);
        this._ended = true;
        this._notify();
      });
    return this._promise;
  }

  async *[Symbol.asyncIterator]() {
    this._start();
    try {
      for (;;) {
        if (this._queue.length > 0) {
          yield this._queue.shift();
          continue;
        }
        if (this._ended) break;
        await new Promise((resolve) => {
          this._wake = resolve;
        });
      }
      if (this._error) throw this._error;
    } finally {
      if (!this._ended) {
        // Left early (break, throw): cancel the call and wait for it.
        this._stopped = true;
        this._ac.abort();
        await this._promise.catch(() => {});
      }
    }
  }

  /** Resolves with the final Response when the stream ends (starting it if need be); rejects on failure. */
  finalResponse() {
    return this._start();
  }

  /** Resolves with the final Response's completion (see Response.completion). */
  async finalCompletion() {
    return (await this._start()).completion;
  }
}

module.exports = {
  Client,
  Response,
  DeltaStream,
  LLMPoolError,
  Code,
  LogLevel,
  Api,
  DeltaKind,
  codeName,
  version,
  LIB_PATH,
};
