"""asyncio client on llmpool's async C API (``llmpool_*_async``).

A call is submitted without blocking; llmpool runs it on one of its own
threads and calls back (``done``) on that thread, which hands the result to
the event loop with ``loop.call_soon_threadsafe``. No thread of the program
(and no executor) waits per call.
"""

import asyncio
import ctypes
import itertools
import json as _json
import threading

from . import (API_CHAT, DELTA_CB, DONE_CB, OK, STREAM_CB, Client, Response, _CEvent, _Owned,
               _cstr, _error, _raw_args, _to_json_bytes)
from ._agents import AsyncDeltaStream, _delta_from_c

# Calls in flight, by the integer passed as userdata: (loop, on_done, on_event).
_pending = {}
_pending_lock = threading.Lock()
_keys = itertools.count(1)
_keep = set()  # keys of calls whose C response the Response keeps
_header_names = {}  # key -> the response headers a raw call copies out
_lib_for_cb = []  # the CDLL the callbacks read responses with


def _on_done(key, resp):
    with _pending_lock:
        entry = _pending.pop(key or 0, None)
        keep = key in _keep
        _keep.discard(key)
        names = _header_names.pop(key, ())
    lib = _lib_for_cb[0]
    if keep:
        # An embeddings answer: the Response owns its C response (for
        # Response.embeddings) and frees it when no view refers to it.
        r = Response._from_c(lib, resp, _Owned(lib, resp))
    else:
        try:
            r = Response._from_c(lib, resp, header_names=names)
        finally:
            lib.llmpool_response_free(resp)
    if entry is None:
        return
    loop, on_done, _ = entry
    try:
        loop.call_soon_threadsafe(on_done, r)
    except RuntimeError:
        pass  # the loop was closed: nobody waits any more


def _on_event(key, delta, delta_len, event, event_len):
    with _pending_lock:
        entry = _pending.get(key or 0)
    if entry is None or entry[2] is None:
        return 1
    loop, _, on_event = entry
    d = ctypes.string_at(delta, delta_len).decode("utf-8", "replace")
    ev = ctypes.string_at(event, event_len)
    try:
        loop.call_soon_threadsafe(on_event, d, ev)
    except RuntimeError:
        return 1
    return 0


def _on_delta(key, p):
    with _pending_lock:
        entry = _pending.get(key or 0)
    if entry is None or entry[2] is None:
        return 1
    loop, _, on_event = entry
    try:
        loop.call_soon_threadsafe(on_event, _delta_from_c(p))
    except RuntimeError:
        return 1  # the loop was closed: stop the stream
    return 0


# Module-level, so they live as long as any call may use them.
_DONE = DONE_CB(_on_done)
_EVENT = STREAM_CB(_on_event)
_DELTA = DELTA_CB(_on_delta)


class _LoopQueue:
    """One llmpool_queue per event loop for queued streams
    (llmpool_stream_queued): the loop watches its fd (``add_reader``) and
    takes every waiting event in batches, so a stream's deltas never cross
    from a library thread into the interpreter one by one."""

    TAKE = 256

    def __init__(self, lib, loop):
        self._lib = lib
        self._loop = loop
        q = ctypes.c_void_p()
        rc = lib.llmpool_queue_new(ctypes.byref(q))
        if rc != OK:
            raise _error(rc, message="llmpool_queue_new failed")
        self.ptr = q
        self._events = (_CEvent * self.TAKE)()
        self._in_flight = 0
        self._fd = lib.llmpool_queue_fd(q)

    def started(self):
        if self._in_flight == 0:
            self._loop.add_reader(self._fd, self._drain)
        self._in_flight += 1

    def _drain(self):
        lib = _lib_for_cb[0]
        while True:
            n = self._lib.llmpool_queue_take(self.ptr, self._events, self.TAKE)
            for i in range(n):
                ev = self._events[i]
                key = int(ev.tag)
                if ev.kind == 1:
                    with _pending_lock:
                        entry = _pending.get(key)
                    if entry is not None and entry[2] is not None:
                        entry[2](_delta_from_c(ctypes.pointer(ev.delta)))
                    continue
                with _pending_lock:
                    entry = _pending.pop(key, None)
                try:
                    r = Response._from_c(lib, ev.response)
                finally:
                    lib.llmpool_response_free(ev.response)
                self._in_flight -= 1
                if entry is not None:
                    entry[1](r)
            if n < self.TAKE:
                break
        if self._in_flight == 0:
            self._loop.remove_reader(self._fd)


_loop_queues = {}  # id(loop) -> (loop, _LoopQueue); one per loop, never freed while it runs


def _queue_for(lib, loop):
    entry = _loop_queues.get(id(loop))
    if entry is None or entry[0] is not loop:
        entry = (loop, _LoopQueue(lib, loop))
        _loop_queues[id(loop)] = entry
    return entry[1]


def _resolve(fut, r):
    if not fut.done():
        fut.set_result(r)


class AsyncClient:
    """An asyncio client: the same options, calls and errors as :class:`Client`,
    but every call is a coroutine and none blocks the event loop::

        async with AsyncClient({"base_url": url}) as c:
            r = await c.chat(req)
            rs = await asyncio.gather(*(c.chat(q) for q in reqs))
            async for delta in c.stream(req):
                print(delta, end="")

    Cancelling the task awaiting a call (``task.cancel()``,
    ``asyncio.wait_for`` timeouts) cancels that call alone in llmpool.
    """

    def __init__(self, options=None, lib=None):
        self._client = Client(options, lib)
        self._lib = self._client._lib
        if not _lib_for_cb:
            _lib_for_cb.append(self._lib)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Frees the client: calls in flight are cancelled (their awaiters
        get CancelledError from llmpool) and waited for. Idempotent."""
        self._client.close()

    async def aclose(self):
        self.close()

    @property
    def client(self):
        """The blocking :class:`Client` sharing this pool (metrics, set_api_key, ...)."""
        return self._client

    def metrics(self):
        return self._client.metrics()

    def cancel(self):
        """Cancels every call of this client in flight now."""
        self._client.cancel()

    async def _submit(self, submit, on_event=None, on_done=None, keep=False, header_names=()):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        key = next(_keys)
        done = on_done or (lambda r: _resolve(fut, r))
        with _pending_lock:
            _pending[key] = (loop, done, on_event)
            if keep:
                _keep.add(key)
            if header_names:
                _header_names[key] = header_names
        call = ctypes.c_void_p()
        rc = submit(self._client._handle(), ctypes.c_void_p(key), ctypes.byref(call))
        if rc != OK:
            with _pending_lock:
                _pending.pop(key, None)
                _keep.discard(key)
                _header_names.pop(key, None)
            raise _error(rc, message="the request was refused before sending "
                                     "(invalid JSON, method, path or content type, "
                                     "or a closed client)")
        return fut, call

    async def _await(self, fut, call):
        try:
            r = await fut
        except asyncio.CancelledError:
            # This task was cancelled: cancel the llmpool call too; its
            # done still runs and is dropped.
            self._lib.llmpool_call_cancel(call)
            raise
        finally:
            self._lib.llmpool_call_free(call)
        if not r.ok:
            raise r.to_error()
        return r

    async def chat(self, request):
        """POST /chat/completions; resolves with a :class:`Response`."""
        data = _to_json_bytes(request, "request")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_chat_async(c, data, _DONE, k, out))
        return await self._await(fut, call)

    async def responses(self, request):
        """POST /responses (OpenAI's Responses API); resolves with a
        :class:`Response` (``completion`` is the ``response`` object)."""
        data = _to_json_bytes(request, "request")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_responses_async(c, data, _DONE, k, out))
        return await self._await(fut, call)

    async def messages(self, request):
        """POST /messages (Anthropic's Messages API); resolves with a
        :class:`Response` (``completion`` is the ``message``)."""
        data = _to_json_bytes(request, "request")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_messages_async(c, data, _DONE, k, out))
        return await self._await(fut, call)

    def stream_deltas(self, request, api=API_CHAT):
        """Streams ``request`` on ``api`` (as :meth:`Client.stream_deltas`)
        as an :class:`AsyncDeltaStream`: ``async for d in s`` gives typed
        :class:`Delta` values on the event loop, then ``s.completion`` is
        the assembled answer. Leaving the loop early cancels the call."""
        return AsyncDeltaStream(self, api, request)

    async def embeddings(self, request):
        """POST /embeddings; resolves with a :class:`Response` whose
        ``embeddings()`` gives the vectors as floats."""
        data = _to_json_bytes(request, "request")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_embeddings_async(c, data, _DONE, k, out),
            keep=True)
        return await self._await(fut, call)

    async def request(self, method, path, body=None):
        """Any method on ``path`` below base_url, e.g. ``("GET", "/models")``."""
        data = None if body is None else _to_json_bytes(body, "body")
        m, p = _cstr(method, "method"), _cstr(path, "path")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_request_async(c, m, p, data, _DONE, k, out))
        return await self._await(fut, call)

    async def request_raw(self, method, path, body=b"", content_type=None,
                          headers=("content-type", "x-request-id")):
        """Any method on ``path`` with any bytes as the body, exactly like
        :meth:`Client.request_raw` (``response.body_bytes``,
        ``response.headers``) but awaited: the bytes are copied when the call
        is submitted, and cancelling the task cancels this call alone."""
        data, n, ct, names = _raw_args(body, content_type, headers)
        m, p = _cstr(method, "method"), _cstr(path, "path")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_request_raw_async(c, m, p, ct, data, n, _DONE, k,
                                                                  out),
            header_names=names)
        return await self._await(fut, call)

    async def warm(self, n):
        """Opens up to ``n`` connections ahead of the first calls (the
        handshakes run on llmpool's threads) and returns how many opened.
        Raises the first failure's error only when none opened; cancelling
        the task cancels the warm-up."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("warm: n must be an int >= 0")
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_client_warm_async(c, n, _DONE, k, out))
        r = await self._await(fut, call)
        return int(r.info.get("opened", 0))

    async def stream(self, request):
        """Streams a chat completion as an async iterator of non-empty text
        deltas. Leaving the loop early (``break``, an exception, task
        cancel) cancels the call. A failure is raised from the loop."""
        data = _to_json_bytes(request, "request")
        q = asyncio.Queue()
        fut, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_chat_stream_async(c, data, _EVENT, _DONE, k,
                                                                   out),
            on_event=lambda d, _ev: q.put_nowait(("delta", d)),
            on_done=lambda r: q.put_nowait(("done", r)))
        finished = False
        try:
            while True:
                kind, val = await q.get()
                if kind == "delta":
                    if val:
                        yield val
                    continue
                finished = True
                if not val.ok:
                    raise val.to_error()
                return
        finally:
            if not finished:
                self._lib.llmpool_call_cancel(call)
            self._lib.llmpool_call_free(call)
            fut.cancel()

    async def chat_stream(self, request, on_chunk):
        """Streams a chat completion, calling ``on_chunk(delta, event: dict)``
        on the event loop for every chunk; returns the final Response."""
        data = _to_json_bytes(request, "request")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def on_event(d, ev):
            if not fut.done():
                on_chunk(d, _json.loads(ev))

        fut2, call = await self._submit(
            lambda c, k, out: self._lib.llmpool_chat_stream_async(c, data, _EVENT, _DONE, k,
                                                                   out),
            on_event=on_event,
            on_done=lambda r: _resolve(fut, r))
        fut2.cancel()
        return await self._await(fut, call)


