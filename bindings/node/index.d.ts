// TypeScript declarations for llmpool (llmpool.js / llmpool.mjs).

/** Result codes (the numbers of the C enum llmpool_code; they never change). */
export declare const Code: Readonly<{
  OK: 0;
  INVALID_ARGUMENT: 1;
  CONNECT: 2;
  TLS: 3;
  TIMEOUT: 4;
  HTTP_STATUS: 5;
  IO: 6;
  PROTOCOL: 7;
  POOL_EXHAUSTED: 8;
  BUDGET_EXCEEDED: 9;
  CANCELLED: 10;
  RATE_LIMITED: 11;
  PANIC: 99;
}>;
export type Code = (typeof Code)[keyof typeof Code];

/** Log levels (llmpool_log_level). */
export declare const LogLevel: Readonly<{ ERROR: 1; WARN: 2; INFO: 3; DEBUG: 4; TRACE: 5 }>;
export type LogLevel = (typeof LogLevel)[keyof typeof LogLevel];

/** The API a stream speaks (llmpool_api), for Client.streamDeltas. */
export declare const Api: Readonly<{ CHAT: 0; RESPONSES: 1; MESSAGES: 2 }>;
export type Api = (typeof Api)[keyof typeof Api];

/** What a Delta carries (llmpool_delta_kind). */
export declare const DeltaKind: Readonly<{ CONTENT: 0; REASONING: 1; REFUSAL: 2; TOOL_CALL: 3 }>;
export type DeltaKind = (typeof DeltaKind)[keyof typeof DeltaKind];

/** One typed piece of a stream. */
export interface Delta {
  kind: DeltaKind;
  /** The chat choice (n > 1); 0 for the other APIs. */
  choice: number;
  /** A tool call's position (chat), output item (Responses) or content block (Messages); else 0. */
  callIndex: number;
  /** A tool call's id once known, else null. */
  id: string | null;
  /** A tool call's function name once known, else null. */
  name: string | null;
  /** The text or argument fragment. */
  text: string;
}

export interface DeltaStreamOptions extends CallOptions {
  /** Default Api.CHAT. */
  api?: Api | 'chat' | 'responses' | 'messages';
}

/** The path of the loaded libllmpool. */
export declare const LIB_PATH: string;

/** The name of a result code, e.g. "LLMPOOL_TIMEOUT". */
export declare function codeName(code: number): string;
/** The C library's version, e.g. "0.1.0". */
export declare function version(): string;

/** A request or options object (sent as JSON), or JSON text. */
export type JSONInput = object | string;

export interface CallOptions {
  /** Cancels this call alone: it rejects with Code.CANCELLED within about 100 ms. */
  signal?: AbortSignal;
}

export interface RawOptions extends CallOptions {
  contentType?: string | null;
  /** Response headers to copy out (lower-case names). */
  headers?: string[];
}

export interface BatchOptions extends CallOptions {
  maxConcurrency?: number;
  onProgress?: ((done: number, total: number) => void) | null;
}

export interface Embeddings {
  /** Row-major count x dim floats. */
  data: Float32Array;
  count: number;
  dim: number;
  row(i: number): Float32Array;
}

export interface StreamItem {
  delta: string;
  event: string;
}

/** One call's result, copied out of the C response. */
export declare class Response {
  code: Code;
  codeName: string;
  /** HTTP status of the last answer, 0 if none. */
  status: number;
  /** choices[0].message.content (streams: every delta received). */
  text: string;
  /** The raw body (streams: the SSE bytes, only with the option keep_stream_body). */
  body: string;
  /** Call details: attempts, retries, connection_reused, latency_ms, usage, cost_usd, ... */
  info: Record<string, any>;
  /** Why the call failed, '' on success. */
  error: string;
  /** The raw body (requestRaw only; null otherwise). */
  bodyBuffer: Buffer | null;
  headers: Record<string, string>;
  readonly ok: boolean;
  /** The answer in its API's non-streaming shape (a stream's assembled one), or null. */
  readonly completion: Record<string, any> | null;
  header(name: string): string | null;
  json(): any;
  embeddings(): Embeddings;
  toError(): LLMPoolError | null;
}

/** A failed llmpool call. */
export declare class LLMPoolError extends Error {
  constructor(code: number, message: string, extra?: { status?: number; body?: string; response?: Response | null });
  code: Code;
  codeName: string;
  status: number;
  body: string;
  response: Response | null;
}

/** A typed-delta stream (Client.streamDeltas): iterate it, then read the completion. */
export declare class DeltaStream implements AsyncIterable<Delta> {
  /** The final Response once the stream ended (also after a failure or a break). */
  response: Response | null;
  /** The final Response's completion, null until the stream ended. */
  readonly completion: Record<string, any> | null;
  [Symbol.asyncIterator](): AsyncGenerator<Delta, void, undefined>;
  finalResponse(): Promise<Response>;
  finalCompletion(): Promise<Record<string, any> | null>;
}

export declare class Client {
  /** Options object or JSON (base_url, api_key, timeout_ms, max_retries, max_concurrency, ...). */
  constructor(options?: JSONInput | null);
  chat(request: JSONInput, options?: CallOptions): Promise<Response>;
  responses(request: JSONInput, options?: CallOptions): Promise<Response>;
  messages(request: JSONInput, options?: CallOptions): Promise<Response>;
  streamDeltas(request: JSONInput, options?: DeltaStreamOptions): DeltaStream;
  embeddings(request: JSONInput, options?: CallOptions): Promise<Response>;
  request(method: string, path: string, body?: JSONInput | null, options?: CallOptions): Promise<Response>;
  requestRaw(method: string, path: string, body?: Buffer | Uint8Array | string | null, options?: RawOptions): Promise<Response>;
  /** `onEvent(delta, event)`; returning false stops the stream. */
  chatStream(request: JSONInput, onEvent: (delta: string, event: string) => boolean | void, options?: CallOptions): Promise<Response>;
  stream(request: JSONInput, options?: CallOptions): AsyncGenerator<StreamItem, Response, undefined>;
  batch(requests: JSONInput[], options?: BatchOptions): Promise<Response[]>;
  metrics(): Record<string, any>;
  metricsPrometheus(): string;
  setLogCallback(fn: ((level: LogLevel, line: string) => void) | null, level?: LogLevel): void;
  logToConsole(level?: LogLevel): void;
  setApiKey(key: string | null): void;
  setKeyProvider(fn: (() => string | null) | null): void;
  cancel(): void;
  resetPool(): void;
  /** Opens up to n connections ahead of the first calls; resolves with how many opened. */
  warm(n: number, options?: CallOptions): Promise<number>;
  /** Waits for the calls in flight, then frees the client. */
  close(): Promise<void>;
}

declare const llmpool: {
  Client: typeof Client;
  Response: typeof Response;
  DeltaStream: typeof DeltaStream;
  LLMPoolError: typeof LLMPoolError;
  Code: typeof Code;
  LogLevel: typeof LogLevel;
  Api: typeof Api;
  DeltaKind: typeof DeltaKind;
  codeName: typeof codeName;
  version: typeof version;
  LIB_PATH: string;
};
export default llmpool;
