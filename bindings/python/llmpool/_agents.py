"""Typed deltas of the three streaming APIs (chat, Responses, Messages).

``Client.stream_deltas`` and ``AsyncClient.stream_deltas`` return the stream
objects defined here: iterate them for :class:`Delta` values, then read
``.completion`` (the assembled answer as a dict) and ``.response``.
"""

import asyncio
import ctypes
import queue
import threading
from typing import NamedTuple, Optional

from . import (API_CHAT, API_MESSAGES, API_RESPONSES, CANCELLED, DELTA_CB, INVALID_ARGUMENT, OK,
               Response, _error, _to_json_bytes)

_API_NAMES = {"chat": API_CHAT, "responses": API_RESPONSES, "messages": API_MESSAGES}


class Delta(NamedTuple):
    """One typed piece of a stream.

    ``kind`` is DELTA_CONTENT, DELTA_REASONING, DELTA_REFUSAL or
    DELTA_TOOL_CALL; ``choice`` the chat choice (0 for the other APIs);
    ``call_index`` the tool call's position (chat), output item (Responses)
    or content block (Messages); ``id`` and ``name`` the tool call's, once
    known (else None); ``text`` the text or argument fragment.
    """

    kind: int
    choice: int
    call_index: int
    id: Optional[str]
    name: Optional[str]
    text: str


def _api_number(api):
    """`api` as an llmpool_api number: an int passes through (the C side
    rejects unknown ones), a name is looked up."""
    if isinstance(api, int) and not isinstance(api, bool):
        return api
    try:
        return _API_NAMES[api]
    except (KeyError, TypeError):
        raise _error(INVALID_ARGUMENT, message="api must be API_CHAT, API_RESPONSES, "
                     "API_MESSAGES or one of %s, got %r" % (sorted(_API_NAMES), api))


def _delta_from_c(p):
    d = p.contents

    def opt(s):
        return None if s is None else s.decode("utf-8", "replace")

    text = ctypes.string_at(d.text, d.text_len).decode("utf-8", "replace")
    return Delta(d.kind, d.choice, d.call_index, opt(d.id), opt(d.name), text)


def stream_deltas_blocking(client, api, request, on_delta):
    """Runs llmpool_stream_deltas on this thread, calling ``on_delta(Delta)``;
    ``False`` from it stops the stream. Returns the final Response (also when
    stopped); raises for any other failure, and re-raises what ``on_delta``
    raised."""
    data = _to_json_bytes(request, "request")
    state = {"error": None, "stopped": False}

    def trampoline(_userdata, p):
        try:
            if on_delta(_delta_from_c(p)) is False:
                state["stopped"] = True
                return 1
            return 0
        except BaseException as e:  # never unwind into C
            state["error"] = e
            return 1

    cb = DELTA_CB(trampoline)  # referenced until the call returns
    out = ctypes.c_void_p()
    lib = client._lib
    rc = lib.llmpool_stream_deltas(client._handle(), _api_number(api), data, cb, None,
                                   ctypes.byref(out))
    if state["error"] is not None:
        lib.llmpool_response_free(out)
        raise state["error"]
    if rc == CANCELLED and state["stopped"]:
        try:
            return Response._from_c(lib, out)
        finally:
            lib.llmpool_response_free(out)
    return client._finish(rc, out)


class DeltaStream:
    """Iterator over the :class:`Delta` values of one stream (see
    ``Client.stream_deltas``). The C call runs on a helper thread; breaking
    out of the loop (or ``close()``) stops it. Afterwards ``response`` is the
    final :class:`Response` (also after a failure or an early stop) and
    ``completion`` its assembled answer as a dict."""

    _END = object()

    def __init__(self, client, api, request):
        _to_json_bytes(request, "request")  # unencodable input fails here, not later
        self._api = _api_number(api)
        self._client = client
        self._request = request
        self._queue = queue.Queue()
        self._abort = threading.Event()
        self._thread = None
        self._done = False
        self.response = None

    @property
    def completion(self):
        """The assembled answer (dict) once the stream ended, else None."""
        return None if self.response is None else self.response.completion

    def __iter__(self):
        # A generator, so that leaving a for loop early (break, an
        # exception) closes it and with it the stream, even while the
        # caller still holds this object for .completion.
        try:
            while True:
                try:
                    d = self.__next__()
                except StopIteration:
                    return
                yield d
        finally:
            self.close()

    def _run(self):
        def on_delta(d):
            if self._abort.is_set():
                return False
            self._queue.put(d)
            return True

        try:
            resp = stream_deltas_blocking(self._client, self._api, self._request, on_delta)
            self._queue.put((self._END, resp, None))
        except BaseException as e:  # handed to the iterating thread
            self._queue.put((self._END, getattr(e, "response", None), e))

    def _end(self, item):
        self._done = True
        self._thread.join()
        self.response = item[1]
        return item[2]

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llmpool-deltas", daemon=True)
            self._thread.start()
        item = self._queue.get()
        if not isinstance(item, Delta):  # a Delta is a tuple too
            err = self._end(item)
            if err is not None:
                raise err
            raise StopIteration
        return item

    def close(self):
        """Stops the stream early; ``response`` then holds what arrived."""
        if self._thread is not None and not self._done:
            self._abort.set()
            while True:
                item = self._queue.get()
                if not isinstance(item, Delta):
                    self._end(item)
                    break
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


class AsyncDeltaStream:
    """Async iterator over the :class:`Delta` values of one stream (see
    ``AsyncClient.stream_deltas``). The call is submitted on the first
    iteration; leaving the loop early (``break``, an exception, task
    cancel) cancels it, and ``await aclose()`` (or ``async with``) waits for
    its partial response. Afterwards ``response`` and ``completion`` as for
    :class:`DeltaStream`."""

    def __init__(self, aclient, api, request):
        self._aclient = aclient
        self._api = _api_number(api)
        self._data = _to_json_bytes(request, "request")
        self._queue = None
        self._call = None
        self._fut = None
        self._finished = False
        self.response = None

    @property
    def completion(self):
        return None if self.response is None else self.response.completion

    async def __aiter__(self):
        # An async generator: leaving an async for early finalizes it,
        # which cancels the call at once (await aclose() for the response).
        try:
            while True:
                try:
                    d = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield d
        finally:
            self._cancel()

    def _set_response(self, r):
        # Also when nobody reads the queue any more (a loop left early).
        self.response = r
        self._queue.put_nowait(r)

    async def _start(self):
        # The deltas come through the loop's llmpool_queue, taken in
        # batches on the loop (see _async._LoopQueue), not one callback
        # from a library thread per delta.
        from ._async import _queue_for
        lib = self._aclient._lib
        q = self._queue = asyncio.Queue()
        api, data = self._api, self._data
        lq = _queue_for(lib, asyncio.get_running_loop())

        def submit(c, k, out):
            rc = lib.llmpool_stream_queued(c, api, data, lq.ptr, k.value, out)
            if rc == OK:
                lq.started()
            return rc

        self._fut, self._call = await self._aclient._submit(
            submit, on_event=lambda d: q.put_nowait(d), on_done=self._set_response)

    def _release(self):
        call, self._call = self._call, None
        if call is not None:
            self._aclient._lib.llmpool_call_free(call)
            self._fut.cancel()

    async def __anext__(self):
        if self._finished:
            raise StopAsyncIteration
        if self._queue is None:
            await self._start()
        try:
            item = await self._queue.get()
        except BaseException:
            # The awaiting task was cancelled: so is the call.
            self._cancel()
            raise
        if isinstance(item, Delta):
            return item
        self._finished = True
        self.response = item
        self._release()
        if item.code != OK:
            raise item.to_error()
        raise StopAsyncIteration

    def _cancel(self):
        if self._call is not None and not self._finished:
            self._aclient._lib.llmpool_call_cancel(self._call)

    async def aclose(self):
        """Stops the stream early and waits for ``response`` (what arrived)."""
        if self._queue is None or self._finished:
            self._finished = True
            return
        self._cancel()
        while True:
            item = await self._queue.get()
            if not isinstance(item, Delta):
                break
        self._finished = True
        self.response = item
        self._release()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
        return False

    def __del__(self):
        # Dropped mid-stream without aclose(): cancel the call; its done
        # still runs and is dropped.
        try:
            self._cancel()
            self._release()
        except Exception:
            pass
