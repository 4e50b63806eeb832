"""Python bindings for llmpool over ctypes (no dependencies beyond the stdlib).

    from llmpool import Client, LLMPoolError

    with Client({"base_url": "http://127.0.0.1:8080/v1", "max_retries": 2}) as c:
        r = c.chat({"model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Hi"}]})
        print(r.text, r.info["latency_ms"])
        for delta in c.stream({"model": "gpt-4o-mini",
                               "messages": [{"role": "user", "content": "Count"}]}):
            print(delta, end="", flush=True)

The shared library is found, in this order, inside this package (the
wheel ships ``llmpool/libllmpool.so``), at ``$LLMPOOL_LIB`` (a path to
``libllmpool.so``), in the newer of ``target/release`` and ``target/debug``
of the repository this file lives in (``bindings/python/llmpool``), or by
``ctypes.util.find_library``.

Requests are dicts (sent as JSON) or ``str``/``bytes`` holding JSON text.
Every failing call raises :class:`LLMPoolError` (a subclass per result code,
e.g. :class:`HTTPStatusError`), carrying ``code``, ``code_name``, ``status``,
``body`` and ``message``. Calls release the GIL, so one ``Client`` can be
shared by many Python threads.

For asyncio, :class:`AsyncClient` (``await client.chat(...)``, ``async for``
over a stream) runs every call on llmpool's own threads through its async C
API: no executor thread per call, hundreds of calls in flight from one
event loop, and ``task.cancel()`` cancels that call alone.
"""

import ctypes
import ctypes.util
import json as _json
import logging
import os
import queue
import threading

__all__ = [
    "Client",
    "AsyncClient",
    "Response",
    "Delta",
    "DeltaStream",
    "AsyncDeltaStream",
    "LLMPoolError",
    "InvalidArgumentError",
    "ConnectError",
    "TLSError",
    "LLMPoolTimeoutError",
    "HTTPStatusError",
    "LLMPoolIOError",
    "ProtocolError",
    "PoolExhaustedError",
    "BudgetExceededError",
    "CancelledError",
    "RateLimitedError",
    "PanicError",
    "version",
    "code_name",
    "load_library",
]

# Result codes (stable numbers, see include/llmpool.h).
OK = 0
INVALID_ARGUMENT = 1
CONNECT = 2
TLS = 3
TIMEOUT = 4
HTTP_STATUS = 5
IO = 6
PROTOCOL = 7
POOL_EXHAUSTED = 8
BUDGET_EXCEEDED = 9
CANCELLED = 10
RATE_LIMITED = 11
PANIC = 99


# The API a stream speaks (llmpool_api), for Client.stream_deltas.
API_CHAT, API_RESPONSES, API_MESSAGES = 0, 1, 2

# What a Delta carries (llmpool_delta_kind).
DELTA_CONTENT, DELTA_REASONING, DELTA_REFUSAL, DELTA_TOOL_CALL = 0, 1, 2, 3


class LLMPoolError(Exception):
    """A failed llmpool call.

    Attributes: ``code`` (int), ``code_name`` (e.g. "LLMPOOL_HTTP_STATUS"),
    ``status`` (HTTP status, 0 when no answer arrived), ``body`` (the raw
    response body as str, "" when none), ``message`` (why it failed) and
    ``response`` (the :class:`Response`, or None).
    """

    def __init__(self, code, code_name, status, body, message, response=None):
        super().__init__(message or code_name)
        self.code = code
        self.code_name = code_name
        self.status = status
        self.body = body
        self.message = message
        self.response = response

    def __repr__(self):
        return "%s(code=%s, status=%d, message=%r)" % (
            type(self).__name__, self.code_name, self.status, self.message)


class InvalidArgumentError(LLMPoolError, ValueError):
    """Bad JSON, an unknown option, a wrong type (LLMPOOL_INVALID_ARGUMENT)."""


class ConnectError(LLMPoolError, ConnectionError):
    """The TCP connection could not be made (LLMPOOL_CONNECT)."""


class TLSError(LLMPoolError):
    """The TLS handshake failed (LLMPOOL_TLS)."""


class LLMPoolTimeoutError(LLMPoolError, TimeoutError):
    """A timeout expired (LLMPOOL_TIMEOUT)."""


class HTTPStatusError(LLMPoolError):
    """A non-2xx answer; ``status`` and ``body`` are kept (LLMPOOL_HTTP_STATUS)."""


class LLMPoolIOError(LLMPoolError):
    """The connection failed mid-call (LLMPOOL_IO)."""


class ProtocolError(LLMPoolError):
    """Not valid HTTP, unexpected JSON, or an error mid-stream (LLMPOOL_PROTOCOL)."""


class PoolExhaustedError(LLMPoolError):
    """No call slot freed up within queue_timeout_ms (LLMPOOL_POOL_EXHAUSTED)."""


class BudgetExceededError(LLMPoolError):
    """The call would exceed a budget; it was not sent (LLMPOOL_BUDGET_EXCEEDED)."""


class CancelledError(LLMPoolError):
    """Cancelled by Client.cancel() or a callback (LLMPOOL_CANCELLED)."""


class RateLimitedError(LLMPoolError):
    """A rate limit would need a longer wait than queue_timeout_ms; the call
    was not sent (LLMPOOL_RATE_LIMITED)."""


class PanicError(LLMPoolError):
    """A bug inside llmpool was caught at the C boundary (LLMPOOL_PANIC)."""


_ERRORS = {
    INVALID_ARGUMENT: InvalidArgumentError,
    CONNECT: ConnectError,
    TLS: TLSError,
    TIMEOUT: LLMPoolTimeoutError,
    HTTP_STATUS: HTTPStatusError,
    IO: LLMPoolIOError,
    PROTOCOL: ProtocolError,
    POOL_EXHAUSTED: PoolExhaustedError,
    BUDGET_EXCEEDED: BudgetExceededError,
    CANCELLED: CancelledError,
    RATE_LIMITED: RateLimitedError,
    PANIC: PanicError,
}


def _error(code, status=0, body="", message="", response=None):
    cls = _ERRORS.get(code, LLMPoolError)
    return cls(code, code_name(code), status, body, message, response)


# ---------------------------------------------------------------------------
# Loading the library and declaring the C signatures.

STREAM_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)
PROGRESS_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char),
                          ctypes.c_size_t)
KEY_PROVIDER_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)


class _CDelta(ctypes.Structure):
    """struct llmpool_delta (an enum is an int in the C ABI)."""
    _fields_ = [("kind", ctypes.c_int), ("choice", ctypes.c_uint32),
                ("call_index", ctypes.c_uint32), ("id", ctypes.c_char_p),
                ("name", ctypes.c_char_p), ("text", ctypes.POINTER(ctypes.c_char)),
                ("text_len", ctypes.c_size_t)]


class _CEvent(ctypes.Structure):
    """struct llmpool_event (llmpool_queue_take)."""
    _fields_ = [("kind", ctypes.c_int), ("tag", ctypes.c_uint64),
                ("call_id", ctypes.c_uint64), ("delta", _CDelta),
                ("response", ctypes.c_void_p)]


DELTA_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_CDelta))
# Async calls: userdata is an integer key (see llmpool/_async.py), never a pointer.
DONE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)

_lib = None
_lib_lock = threading.Lock()

# Log levels (llmpool_log_level) and their logging counterparts.
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE = 1, 2, 3, 4, 5
TRACE = 5
logging.addLevelName(TRACE, "TRACE")
_PY_LEVELS = [(LOG_TRACE, TRACE), (LOG_DEBUG, logging.DEBUG), (LOG_INFO, logging.INFO),
              (LOG_WARN, logging.WARNING), (LOG_ERROR, logging.ERROR)]
_PY_LEVEL = dict(_PY_LEVELS)
_LOGGER = logging.getLogger("llmpool")
_LOGGER.addHandler(logging.NullHandler())


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    bundled = os.path.join(here, "libllmpool.so")
    if os.path.exists(bundled):
        return [bundled]
    env = os.environ.get("LLMPOOL_LIB")
    if env:
        return [env]
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    found = []
    for profile in ("release", "debug"):
        p = os.path.join(repo, "target", profile, "libllmpool.so")
        if os.path.exists(p):
            found.append((os.path.getmtime(p), p))
    paths = [p for _, p in sorted(found, reverse=True)]
    system = ctypes.util.find_library("llmpool")
    if system:
        paths.append(system)
    return paths


def load_library(path=None):
    """Loads (once) and returns the llmpool ``ctypes.CDLL``."""
    global _lib
    with _lib_lock:
        if _lib is not None and path is None:
            return _lib
        paths = [path] if path else _candidates()
        if not paths:
            raise OSError(
                "libllmpool.so not found: set LLMPOOL_LIB or run `cargo build --release`")
        lib = ctypes.CDLL(paths[0])
        _declare(lib)
        _lib = lib
        return lib


def _declare(lib):
    c_client = ctypes.c_void_p
    c_resp = ctypes.c_void_p
    p_resp = ctypes.POINTER(ctypes.c_void_p)
    p_call = ctypes.POINTER(ctypes.c_void_p)
    sigs = {
        "llmpool_version": (ctypes.c_char_p, []),
        "llmpool_code_name": (ctypes.c_char_p, [ctypes.c_int]),
        "llmpool_client_new": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(c_client),
                                              ctypes.c_char_p, ctypes.c_size_t]),
        "llmpool_client_free": (None, [c_client]),
        "llmpool_client_set_api_key": (ctypes.c_int, [c_client, ctypes.c_char_p]),
        "llmpool_client_reset_pool": (ctypes.c_int, [c_client]),
        "llmpool_client_cancel": (ctypes.c_int, [c_client]),
        # c_void_p, not c_char_p: the string must be freed by llmpool_string_free.
        "llmpool_client_metrics": (ctypes.c_void_p, [c_client]),
        "llmpool_string_free": (None, [ctypes.c_void_p]),
        "llmpool_client_metrics_prometheus": (ctypes.c_void_p, [c_client]),
        "llmpool_client_set_log_callback": (ctypes.c_int, [c_client, ctypes.c_int, LOG_CB,
                                                           ctypes.c_void_p]),
        "llmpool_client_set_key_provider": (ctypes.c_int, [c_client, KEY_PROVIDER_CB,
                                                           ctypes.c_void_p]),
        "llmpool_client_warm": (ctypes.c_int, [c_client, ctypes.c_size_t,
                                               ctypes.POINTER(ctypes.c_size_t)]),
        "llmpool_chat": (ctypes.c_int, [c_client, ctypes.c_char_p, p_resp]),
        "llmpool_responses": (ctypes.c_int, [c_client, ctypes.c_char_p, p_resp]),
        "llmpool_messages": (ctypes.c_int, [c_client, ctypes.c_char_p, p_resp]),
        "llmpool_stream_deltas": (ctypes.c_int, [c_client, ctypes.c_int, ctypes.c_char_p,
                                                 DELTA_CB, ctypes.c_void_p, p_resp]),
        "llmpool_responses_async": (ctypes.c_int, [c_client, ctypes.c_char_p, DONE_CB,
                                                   ctypes.c_void_p, p_call]),
        "llmpool_messages_async": (ctypes.c_int, [c_client, ctypes.c_char_p, DONE_CB,
                                                  ctypes.c_void_p, p_call]),
        "llmpool_stream_deltas_async": (ctypes.c_int, [c_client, ctypes.c_int,
                                                       ctypes.c_char_p, DELTA_CB, DONE_CB,
                                                       ctypes.c_void_p, p_call]),
        "llmpool_response_completion": (ctypes.c_char_p, [c_resp]),
        "llmpool_stream_queued": (ctypes.c_int, [c_client, ctypes.c_int, ctypes.c_char_p,
                                                 ctypes.c_void_p, ctypes.c_uint64, p_call]),
        "llmpool_queue_new": (ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p)]),
        "llmpool_queue_free": (None, [ctypes.c_void_p]),
        "llmpool_queue_fd": (ctypes.c_int, [ctypes.c_void_p]),
        "llmpool_queue_take": (ctypes.c_size_t, [ctypes.c_void_p, ctypes.POINTER(_CEvent),
                                                 ctypes.c_size_t]),
        "llmpool_embeddings": (ctypes.c_int, [c_client, ctypes.c_char_p, p_resp]),
        "llmpool_request": (ctypes.c_int, [c_client, ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_char_p, p_resp]),
        "llmpool_request_raw": (ctypes.c_int, [c_client, ctypes.c_char_p, ctypes.c_char_p,
                                               ctypes.c_char_p, ctypes.c_char_p,
                                               ctypes.c_size_t, p_resp]),
        "llmpool_response_header": (ctypes.c_char_p, [c_resp, ctypes.c_char_p]),
        "llmpool_chat_stream": (ctypes.c_int, [c_client, ctypes.c_char_p, STREAM_CB,
                                               ctypes.c_void_p, p_resp]),
        "llmpool_chat_batch": (ctypes.c_int, [c_client, ctypes.POINTER(ctypes.c_char_p),
                                              ctypes.c_size_t, ctypes.c_size_t, PROGRESS_CB,
                                              ctypes.c_void_p, p_resp]),
        "llmpool_responses_free": (None, [p_resp, ctypes.c_size_t]),
        "llmpool_chat_async": (ctypes.c_int, [c_client, ctypes.c_char_p, DONE_CB,
                                              ctypes.c_void_p, p_call]),
        "llmpool_embeddings_async": (ctypes.c_int, [c_client, ctypes.c_char_p, DONE_CB,
                                                    ctypes.c_void_p, p_call]),
        "llmpool_request_async": (ctypes.c_int, [c_client, ctypes.c_char_p, ctypes.c_char_p,
                                                 ctypes.c_char_p, DONE_CB, ctypes.c_void_p,
                                                 p_call]),
        "llmpool_request_raw_async": (ctypes.c_int, [c_client, ctypes.c_char_p, ctypes.c_char_p,
                                                     ctypes.c_char_p, ctypes.c_char_p,
                                                     ctypes.c_size_t, DONE_CB, ctypes.c_void_p,
                                                     p_call]),
        "llmpool_chat_stream_async": (ctypes.c_int, [c_client, ctypes.c_char_p, STREAM_CB,
                                                     DONE_CB, ctypes.c_void_p, p_call]),
        "llmpool_client_warm_async": (ctypes.c_int, [c_client, ctypes.c_size_t, DONE_CB,
                                                     ctypes.c_void_p, p_call]),
        "llmpool_call_cancel": (ctypes.c_int, [ctypes.c_void_p]),
        "llmpool_call_free": (None, [ctypes.c_void_p]),
        "llmpool_response_call_id": (ctypes.c_uint64, [c_resp]),
        "llmpool_response_code": (ctypes.c_int, [c_resp]),
        "llmpool_response_status": (ctypes.c_uint16, [c_resp]),
        "llmpool_response_body": (ctypes.POINTER(ctypes.c_char),
                                  [c_resp, ctypes.POINTER(ctypes.c_size_t)]),
        "llmpool_response_text": (ctypes.c_char_p, [c_resp]),
        "llmpool_response_error": (ctypes.c_char_p, [c_resp]),
        "llmpool_response_info": (ctypes.c_char_p, [c_resp]),
        "llmpool_response_free": (None, [c_resp]),
        "llmpool_response_embeddings": (ctypes.c_int, [c_resp,
                                                       ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
                                                       ctypes.POINTER(ctypes.c_size_t),
                                                       ctypes.POINTER(ctypes.c_size_t)]),
        "llmpool_response_embeddings_error": (ctypes.c_char_p, [c_resp]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def version():
    """The library version, e.g. "0.1.0"."""
    return load_library().llmpool_version().decode()


def code_name(code):
    """The name of a result code, e.g. "LLMPOOL_TIMEOUT"."""
    return load_library().llmpool_code_name(int(code)).decode()


def _to_json_bytes(value, what):
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    else:
        try:
            data = _json.dumps(value).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise _error(INVALID_ARGUMENT, message="%s: cannot encode as JSON: %s" % (what, e))
    if b"\0" in data:
        raise _error(INVALID_ARGUMENT, message="%s: contains a NUL byte" % what)
    return data


def _cstr(value, what):
    data = value.encode("utf-8") if isinstance(value, str) else value
    if not isinstance(data, bytes):
        raise _error(INVALID_ARGUMENT, message="%s: expected str, got %s" % (
            what, type(value).__name__))
    if b"\0" in data:
        raise _error(INVALID_ARGUMENT, message="%s: contains a NUL byte" % what)
    return data


# ---------------------------------------------------------------------------


class _Owned:
    """Owns a C response until no Python object refers to it any more."""

    __slots__ = ("lib", "ptr")

    def __init__(self, lib, ptr):
        self.lib = lib
        self.ptr = ptr

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            try:
                self.lib.llmpool_response_free(ptr)
            except Exception:  # noqa: BLE001 - interpreter shutdown: the process frees it
                pass


def _raw_args(body, content_type, headers):
    """request_raw's arguments as C values: (data, len, content type, header names)."""
    if body is None:
        data, n = None, 0
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        n = len(data)
    else:
        raise TypeError("body must be bytes, bytearray, memoryview or None")
    ct = None if content_type is None else _cstr(content_type, "content_type")
    return data, n, ct, tuple(h.lower() for h in headers)


def _headers(lib, ptr, names):
    out = {}
    for name in names:
        v = lib.llmpool_response_header(ptr, name.encode("utf-8"))
        if v is not None:
            out[name.lower()] = v.decode("utf-8", "replace")
    return out


class Response:
    """The result of one call, copied out of the C response.

    Attributes: ``code``, ``code_name``, ``ok``, ``status``, ``text``,
    ``body`` (str), ``body_bytes``, ``error`` ("" on success) and ``info``
    (dict: attempts, latency_ms, usage, ...), ``headers`` (dict of the
    response headers copied out, lower-case names: those asked for with
    :meth:`Client.request_raw`, else none). ``completion`` is the answer
    as a dict in its API's non-streaming shape (a stream's assembled one),
    or None. ``json()`` parses the body;
    ``header(name)`` looks a header up; ``embeddings()`` gives the vectors
    of an embeddings answer as floats.
    """

    __slots__ = ("code", "status", "text", "body_bytes", "error", "info", "_c", "headers",
                 "_completion")

    def __init__(self, code, status, text, body_bytes, error, info, owned=None,
                 headers=None, completion=None):
        self.code = code
        self.status = status
        self.text = text
        self.body_bytes = body_bytes
        self.error = error
        self.info = info
        # The C response, kept only for Client.embeddings answers: its
        # float matrix is decoded on first use and shared without a copy.
        self._c = owned
        self.headers = headers or {}
        # JSON text, parsed on first use of .completion (most callers never ask).
        self._completion = completion

    def header(self, name):
        """The copied-out header ``name`` (case-insensitive), or None."""
        return self.headers.get(name.lower())

    def embeddings(self, numpy=None):
        """The vectors of an embeddings answer as a read-only ``count x dim``
        float32 matrix, row ``i`` being the vector whose ``index`` is ``i``;
        float and base64 answers alike.

        Returns a ``numpy.ndarray`` of shape ``(count, dim)`` when numpy is
        installed (``numpy=False`` to never use it, ``True`` to require it),
        else a ``memoryview`` of format ``"f"`` and the same shape. Neither
        copies: both view the matrix llmpool decoded (once, on first use) and
        keep it alive. Raises :class:`LLMPoolError`: ``PROTOCOL`` for
        ragged or malformed vectors, ``INVALID_ARGUMENT`` for a response
        that is not an embeddings answer (only ``Client.embeddings``
        responses carry vectors).
        """
        owned = self._c
        if owned is None or not owned.ptr:
            raise _error(INVALID_ARGUMENT, message="not an embeddings answer: only "
                         "Client.embeddings responses carry vectors")
        lib = owned.lib
        data = ctypes.POINTER(ctypes.c_float)()
        count, dim = ctypes.c_size_t(0), ctypes.c_size_t(0)
        rc = lib.llmpool_response_embeddings(owned.ptr, ctypes.byref(data), ctypes.byref(count),
                                             ctypes.byref(dim))
        if rc != OK:
            msg = lib.llmpool_response_embeddings_error(owned.ptr).decode("utf-8", "replace")
            raise _error(rc, message=msg)
        rows, cols = count.value, dim.value
        if data:
            buf = (ctypes.c_float * (rows * cols)).from_address(ctypes.addressof(data.contents))
            buf._owner = owned  # the matrix lives as long as any view of it
        else:
            buf = (ctypes.c_float * 0)()
        if numpy is not False:
            try:
                import numpy as np
            except ImportError:
                if numpy:
                    raise
            else:
                arr = np.frombuffer(buf, dtype=np.float32).reshape(rows, cols)
                arr.flags.writeable = False
                return arr
        view = memoryview(buf).cast("B")
        if rows * cols == 0:
            return view.cast("f").toreadonly()
        return view.cast("f", [rows, cols]).toreadonly()

    @classmethod
    def _from_c(cls, lib, ptr, owned=None, header_names=()):
        n = ctypes.c_size_t(0)
        body_p = lib.llmpool_response_body(ptr, ctypes.byref(n))
        body = ctypes.string_at(body_p, n.value)
        info_text = lib.llmpool_response_info(ptr).decode("utf-8", "replace")
        try:
            info = _json.loads(info_text)
        except ValueError:
            info = {}
        return cls(
            lib.llmpool_response_code(ptr),
            lib.llmpool_response_status(ptr),
            lib.llmpool_response_text(ptr).decode("utf-8", "replace"),
            body,
            lib.llmpool_response_error(ptr).decode("utf-8", "replace"),
            info,
            owned,
            _headers(lib, ptr, header_names),
            lib.llmpool_response_completion(ptr),
        )

    @property
    def completion(self):
        """The answer as a dict in its API's non-streaming shape: a chat
        stream's assembled ``chat.completion`` (tool calls joined), a
        Responses stream's final ``response``, a Messages stream's final
        ``message``, a non-streamed call's body; None when there is none
        (e.g. embeddings, or no answer arrived)."""
        c = self._completion
        if isinstance(c, bytes):
            c = self._completion = _json.loads(c)
        return c

    @property
    def ok(self):
        return self.code == OK

    @property
    def code_name(self):
        return code_name(self.code)

    @property
    def body(self):
        return self.body_bytes.decode("utf-8", "replace")

    def json(self):
        """The body parsed as JSON."""
        return _json.loads(self.body_bytes)

    def to_error(self):
        """The :class:`LLMPoolError` this (failed) response describes."""
        return _error(self.code, self.status, self.body, self.error, self)

    def raise_for_error(self):
        """Raises :meth:`to_error` unless ``ok``; returns self."""
        if not self.ok:
            raise self.to_error()
        return self

    def __repr__(self):
        return "Response(code=%s, status=%d, text=%r)" % (self.code_name, self.status, self.text)


class _Stream:
    """Iterator over the deltas of one streamed chat (see Client.stream)."""

    _END = object()

    def __init__(self, client, request):
        self._client = client
        self._request = request
        self._queue = queue.Queue()
        self._abort = threading.Event()
        self._thread = None
        self._done = False
        self.response = None  # the final Response, once iteration ended

    def __iter__(self):
        return self

    def _run(self):
        def on_chunk(delta, _event):
            if self._abort.is_set():
                return False
            self._queue.put(delta)
            return True

        try:
            resp = self._client.chat_stream(self._request, on_chunk)
            self._queue.put((self._END, resp, None))
        except BaseException as e:  # handed to the iterating thread
            self._queue.put((self._END, None, e))

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llmpool-stream", daemon=True)
            self._thread.start()
        while True:
            item = self._queue.get()
            if isinstance(item, tuple) and item and item[0] is self._END:
                self._done = True
                self._thread.join()
                _, resp, err = item
                self.response = resp
                if err is not None:
                    raise err
                raise StopIteration
            if item:
                return item

    def close(self):
        """Stops the stream early (also done by breaking out of a for loop
        and on garbage collection)."""
        if self._thread is not None and not self._done:
            self._abort.set()
            while True:
                item = self._queue.get()
                if isinstance(item, tuple) and item and item[0] is self._END:
                    self.response = item[1]
                    break
            self._thread.join()
        self._done = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Client:
    """A pooled, thread-safe client for one gateway.

    ``options`` is a dict of options (see README), a JSON string, or None
    (all defaults). ``base_url`` and ``api_key`` come from LLMPOOL_BASE_URL
    and LLMPOOL_API_KEY when the options lack them. Use as a context manager
    or call :meth:`close`.
    """

    def __init__(self, options=None, lib=None):
        self._lib = lib or load_library()
        self._ptr = None
        self._callbacks = []  # key providers kept alive while installed
        opts = None if options is None else _to_json_bytes(options, "options")
        ptr = ctypes.c_void_p()
        err = ctypes.create_string_buffer(1024)
        rc = self._lib.llmpool_client_new(opts, ctypes.byref(ptr), err, len(err))
        if rc != OK:
            raise _error(rc, message=err.value.decode("utf-8", "replace"))
        self._ptr = ptr
        if not os.environ.get("LLMPOOL_LOG"):
            self.log_to_python()

    # -- lifetime ----------------------------------------------------------

    def close(self):
        """Frees the client and closes its connections. No call may be in
        flight on another thread. Idempotent."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._lib.llmpool_client_free(ptr)
        self._callbacks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if self._ptr is None:
            raise _error(INVALID_ARGUMENT, message="client is closed")
        return self._ptr

    def _finish(self, rc, out, header_names=()):
        try:
            resp = Response._from_c(self._lib, out, header_names=header_names) if out else None
        finally:
            self._lib.llmpool_response_free(out)
        if rc != OK:
            if resp is None:
                raise _error(rc)
            raise resp.to_error()
        return resp

    # -- calls -------------------------------------------------------------

    def chat(self, request):
        """POST /chat/completions; ``request`` is a dict or JSON text."""
        data = _to_json_bytes(request, "request")
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_chat(self._handle(), data, ctypes.byref(out))
        return self._finish(rc, out)

    def responses(self, request):
        """POST /responses (OpenAI's Responses API); ``text`` is the output
        text, ``completion`` the ``response`` object."""
        data = _to_json_bytes(request, "request")
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_responses(self._handle(), data, ctypes.byref(out))
        return self._finish(rc, out)

    def messages(self, request):
        """POST /messages (Anthropic's Messages API); ``text`` is the text
        blocks joined, ``completion`` the ``message``."""
        data = _to_json_bytes(request, "request")
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_messages(self._handle(), data, ctypes.byref(out))
        return self._finish(rc, out)

    def stream_deltas(self, request, api=API_CHAT):
        """Streams ``request`` on ``api`` (API_CHAT, API_RESPONSES,
        API_MESSAGES or "chat", "responses", "messages") as a
        :class:`DeltaStream` of typed :class:`Delta` values (content,
        reasoning, refusal, tool-call argument fragments)::

            s = client.stream_deltas(req)
            for d in s:
                if d.kind == llmpool.DELTA_TOOL_CALL:
                    print(d.name, d.text)
            print(s.completion["choices"][0]["message"]["tool_calls"])

        Errors are raised from the loop (``err.response.completion`` keeps
        what arrived)."""
        return DeltaStream(self, api, request)

    def embeddings(self, request):
        """POST /embeddings; ``request`` is a dict or JSON text. The
        response's ``embeddings()`` gives the vectors as floats (ask for
        ``"encoding_format": "base64"`` for half the bytes on the wire)."""
        data = _to_json_bytes(request, "request")
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_embeddings(self._handle(), data, ctypes.byref(out))
        if not out:
            raise _error(rc)
        # Owned by the Response (freed when it and its views are gone).
        resp = Response._from_c(self._lib, out, _Owned(self._lib, out.value))
        if rc != OK:
            raise resp.to_error()
        return resp

    def request(self, method, path, body=None):
        """Any method on ``path`` below base_url (e.g. "GET", "/models"),
        with an optional JSON object body (dict or JSON text)."""
        data = None if body is None else _to_json_bytes(body, "body")
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_request(self._handle(), _cstr(method, "method"),
                                       _cstr(path, "path"), data, ctypes.byref(out))
        return self._finish(rc, out)

    def request_raw(self, method, path, body=b"", content_type=None,
                    headers=("content-type", "x-request-id")):
        """Any method on ``path`` with any bytes as the body (``bytes``,
        ``bytearray`` or ``memoryview``; ``None`` for no body), sent with
        ``content_type`` (e.g. ``"multipart/form-data; boundary=..."``).
        The answer's body is ``response.body_bytes`` whatever its type (e.g.
        ``audio/mpeg``); the response headers named in ``headers`` are
        copied into ``response.headers``."""
        data, n, ct, names = _raw_args(body, content_type, headers)
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_request_raw(self._handle(), _cstr(method, "method"),
                                           _cstr(path, "path"), ct, data, n,
                                           ctypes.byref(out))
        return self._finish(rc, out, names)

    def chat_stream(self, request, on_chunk):
        """Streams a chat completion, calling ``on_chunk(delta: str, event: dict)``
        on this thread for every chunk. Return ``False`` from it to stop: the
        call then returns the Response with ``code == CANCELLED`` and the text
        so far. An exception raised by ``on_chunk`` aborts the stream and is
        re-raised here. Returns the final Response (``text`` is the whole
        text, ``info`` has ttft_ms, chunks, finish_reason, usage); any other
        failure raises."""
        data = _to_json_bytes(request, "request")
        state = {"error": None, "stopped": False}

        def trampoline(_userdata, delta, delta_len, event, event_len):
            try:
                d = ctypes.string_at(delta, delta_len).decode("utf-8", "replace")
                ev = _json.loads(ctypes.string_at(event, event_len))
                if on_chunk(d, ev) is False:
                    state["stopped"] = True
                    return 1
                return 0
            except BaseException as e:  # never let it reach the C side
                state["error"] = e
                return 1

        cb = STREAM_CB(trampoline)  # referenced until the call returns
        out = ctypes.c_void_p()
        rc = self._lib.llmpool_chat_stream(self._handle(), data, cb, None, ctypes.byref(out))
        if state["error"] is not None:
            self._lib.llmpool_response_free(out)
            raise state["error"]
        if rc == CANCELLED and state["stopped"]:
            try:
                return Response._from_c(self._lib, out)
            finally:
                self._lib.llmpool_response_free(out)
        return self._finish(rc, out)

    def stream(self, request):
        """Streams a chat completion as an iterator of non-empty text deltas::

            for delta in client.stream(req):
                print(delta, end="")

        The C call runs on a helper thread. Errors are raised from the
        iterator; breaking out of the loop (or ``close()``) stops the stream.
        After the loop, the iterator's ``response`` attribute holds the
        final :class:`Response`."""
        _to_json_bytes(request, "request")  # unencodable input fails here, not later
        return _Stream(self, request)

    def chat_batch(self, requests, max_concurrency=0, progress=None):
        """Sends every request (dicts or JSON text) with at most
        ``max_concurrency`` in flight (0: the client's max_concurrency, else
        16) and returns one Response per request, in order. A failed item
        never raises: check each ``Response.ok`` (or ``raise_for_error()``).
        ``progress(done, total)`` runs on this thread after each item; if it
        raises, the batch finishes and the exception is re-raised here."""
        items = [_to_json_bytes(r, "requests[%d]" % i) for i, r in enumerate(requests)]
        n = len(items)
        handle = self._handle()
        if n == 0:
            return []
        arr = (ctypes.c_char_p * n)(*items)
        out = (ctypes.c_void_p * n)()
        state = {"error": None}

        def on_progress(_userdata, done, total):
            if state["error"] is not None:
                return
            try:
                progress(done, total)
            except BaseException as e:
                state["error"] = e

        cb = PROGRESS_CB(on_progress) if progress is not None else PROGRESS_CB()
        self._lib.llmpool_chat_batch(handle, arr, n, max_concurrency, cb, None, out)
        try:
            results = [Response._from_c(self._lib, out[i]) for i in range(n)]
        finally:
            self._lib.llmpool_responses_free(out, n)
        if state["error"] is not None:
            raise state["error"]
        return results

    # -- control -----------------------------------------------------------

    def metrics(self):
        """The client's metrics as a dict (requests, errors, latency_ms, ...)."""
        p = self._lib.llmpool_client_metrics(self._handle())
        if not p:
            raise _error(INVALID_ARGUMENT, message="metrics: no client")
        try:
            return _json.loads(ctypes.string_at(p))
        finally:
            self._lib.llmpool_string_free(p)

    def metrics_prometheus(self):
        """The client's metrics in the Prometheus text exposition format
        0.0.4 (a str to serve on ``/metrics``)."""
        p = self._lib.llmpool_client_metrics_prometheus(self._handle())
        if not p:
            raise _error(INVALID_ARGUMENT, message="metrics_prometheus: no client")
        try:
            return ctypes.string_at(p).decode("utf-8", "replace")
        finally:
            self._lib.llmpool_string_free(p)

    def set_log_callback(self, fn, level=LOG_INFO):
        """Sends every log line at ``level`` (LOG_ERROR=1 .. LOG_TRACE=5) and
        more severe to ``fn(level, line)``. ``fn`` MAY RUN ON ANY THREAD
        (llmpool's as well as yours), several at once; an exception it raises
        loses that line only. None turns logging off."""
        if fn is None:
            self._check(self._lib.llmpool_client_set_log_callback(
                self._handle(), int(level), LOG_CB(), None), "set_log_callback")
            return

        def trampoline(_userdata, lvl, message, length):
            try:
                fn(lvl, ctypes.string_at(message, length).decode("utf-8", "replace"))
            except BaseException:
                pass  # never unwind into C

        cb = LOG_CB(trampoline)
        self._check(self._lib.llmpool_client_set_log_callback(self._handle(), int(level), cb,
                                                               None), "set_log_callback")
        # Kept until close(): another thread may still be inside an old one.
        self._callbacks.append(cb)

    def log_to_python(self, logger=None):
        """Forwards llmpool's log to the :mod:`logging` logger ``logger``
        (default ``logging.getLogger("llmpool")``), at the levels it has
        enabled now: ERROR, WARNING, INFO, DEBUG, and TRACE (5) below DEBUG.
        Every Client does this when created unless ``LLMPOOL_LOG`` is set
        (then lines go to stderr); call it again after changing the logger's
        level. The logger has a NullHandler, so nothing shows until logging
        is configured (e.g. ``logging.basicConfig(level=logging.INFO)``)."""
        log = logger or _LOGGER
        level = max((lv for lv, py in _PY_LEVELS if log.isEnabledFor(py)), default=None)
        if level is None:
            self.set_log_callback(None)
            return

        def emit(lvl, line):
            py = _PY_LEVEL.get(lvl, logging.INFO)
            if log.isEnabledFor(py):
                log.log(py, "%s", line)

        self.set_log_callback(emit, level)

    def set_api_key(self, api_key):
        """Replaces the API key for every later request (None or "" removes it)."""
        key = None if api_key is None else _cstr(api_key, "api_key")
        self._check(self._lib.llmpool_client_set_api_key(self._handle(), key), "set_api_key")

    def set_key_provider(self, provider):
        """Installs ``provider() -> str | None``, called (on any thread) when a
        call gets HTTP 401; its key is used for one retry and every later call.
        None removes it."""
        if provider is None:
            self._check(self._lib.llmpool_client_set_key_provider(
                self._handle(), KEY_PROVIDER_CB(), None), "set_key_provider")
            return

        def trampoline(_userdata, buf, buf_len):
            try:
                key = provider()
                if key is None:
                    return 1
                data = key.encode("utf-8")
                if len(data) + 1 > buf_len or b"\0" in data:
                    return 1
                ctypes.memmove(buf, data + b"\0", len(data) + 1)
                return 0
            except BaseException:
                return 1  # "no new key"

        cb = KEY_PROVIDER_CB(trampoline)
        self._check(self._lib.llmpool_client_set_key_provider(self._handle(), cb, None),
                    "set_key_provider")
        # Keep every installed callback alive until close(): a call may still
        # be inside an old one.
        self._callbacks.append(cb)

    def cancel(self):
        """Cancels every call of this client in flight now (from any thread);
        they raise CancelledError."""
        self._check(self._lib.llmpool_client_cancel(self._handle()), "cancel")

    def reset_pool(self):
        """Drops every idle pooled connection."""
        self._check(self._lib.llmpool_client_reset_pool(self._handle()), "reset_pool")

    def warm(self, n):
        """Opens up to ``n`` connections ahead of the first call; returns how many."""
        opened = ctypes.c_size_t(0)
        self._check(self._lib.llmpool_client_warm(self._handle(), n, ctypes.byref(opened)),
                    "warm")
        return opened.value

    def _check(self, rc, what):
        if rc != OK:
            raise _error(rc, message="%s: %s" % (what, code_name(rc)))


from ._agents import AsyncDeltaStream, Delta, DeltaStream  # noqa: E402  (needs the names above)
from ._async import AsyncClient  # noqa: E402  (needs the names above)
