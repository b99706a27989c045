"""Dynamic batching inside a server worker: many requests, one forward pass.

A :class:`Batcher` belongs to one worker process (create it after the fork: it starts a
thread). Request threads (or coroutines) hand it their decoded batch and wait; its one
model thread takes the first queued request, adds more until the batch holds
``max_batch`` examples or ``max_wait_ms`` have passed since that first request arrived
(with 0, only what is already queued), concatenates them, runs :func:`serve_batch` once
and hands each caller exactly its own predictions, in order.

A request is never split: one that would overflow the batch starts the next one, and
one larger than ``max_batch`` is served alone. When a batch of several requests fails,
each of its requests is run again alone, so only the request that fails by itself gets
its error (a non-finite output is a 400 for its own input, not for its neighbours'),
and a model that fails outright fails only the callers of that batch.

With ``max_wait_ms=0`` a blocking caller that finds the queue empty and the model idle
runs its own request at once, in its own thread: nothing could join its batch anyway,
and the hand-off to the model thread and back (two thread wake-ups, tens of microseconds
on a busy machine) is what one client alone would otherwise pay on every request.
Requests that arrive meanwhile queue for the model thread, which takes them all as soon
as that pass is over.

Every forward pass is one line of the worker's :class:`BatchLog` (requests, examples);
the model thread flushes it every :data:`targets.batching.FLUSH_S` while idle. Under
``--metrics`` each forward pass's time and examples are observed here
(:meth:`targets.monitor.Monitor.forward`), where the model runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from targets.batching import FLUSH_S, BatchingSpec, BatchLog
from targets.bundles.protocol import serve_batch

if TYPE_CHECKING:
    from targets.bundles.protocol import Bundle, Prediction
    from targets.monitor import Monitor

#: How long close() waits for the forward pass in progress to finish.
CLOSE_WAIT_S = 5.0


class BatcherClosed(RuntimeError):
    """The batcher was closed before this request was served."""


class _Request:
    """One caller's batch, and its outcome once the model thread has served it."""

    __slots__ = ("answered", "arrived", "batch", "error", "notify", "predictions", "size")

    def __init__(self, batch: np.ndarray) -> None:
        self.batch = batch
        self.size = len(batch)
        self.arrived = time.monotonic()
        self.predictions: list[Prediction] = []
        self.error: BaseException | None = None
        self.answered = False
        #: Wakes the caller; called once, from the model thread (or close()).
        self.notify: Callable[[], object] = _nothing


def _nothing() -> None:
    """A request's notify until its caller sets one."""


def _wake_loop(loop: asyncio.AbstractEventLoop, future: asyncio.Future[list[Prediction]],
               request: _Request) -> None:
    """From the model thread: settle ``future`` on its own loop."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, request)


def _settle(future: asyncio.Future[list[Prediction]], request: _Request) -> None:
    """On the caller's event loop: complete its future (unless it was cancelled)."""
    if future.done():
        return
    if request.error is not None:
        future.set_exception(request.error)
    else:
        future.set_result(request.predictions)


#: What close() puts in the queue to stop the model thread.
_STOP = _Request(np.empty((0,), dtype=np.float32))


class Batcher:
    """One worker's batcher: :meth:`predict` (blocking, for threaded servers) and
    :meth:`apredict` (for asyncio servers) until :meth:`close`."""

    def __init__(self, bundle: Bundle, spec: BatchingSpec, log: BatchLog | None = None,
                 monitor: Monitor | None = None) -> None:
        self.bundle = bundle
        self.spec = spec
        self.log = log
        #: --metrics: each forward pass's time and examples (None: not observed).
        self.monitor = monitor if monitor is not None and monitor.metrics is not None \
            else None
        self._max_batch = spec.max_batch
        self._wait_s = spec.max_wait_ms / 1000.0
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        # Held while a request is queued, so that none is queued after close() has
        # drained the queue (it would never be answered).
        self._accepting = threading.Lock()
        self._closed = False
        # Held for every forward pass: one at a time, by the model thread or a caller.
        self._model = threading.Lock()
        # Whether a caller may run its own request when nothing else is queued.
        self._direct = self._wait_s == 0
        self._thread = threading.Thread(target=self._run, name="deploybench-batcher",
                                        daemon=True)
        self._thread.start()

    # -- callers ------------------------------------------------------------------------
    def predict(self, batch: np.ndarray) -> list[Prediction]:
        """``batch``'s predictions, one per example, once its forward pass has run; raises
        what serving it raised, or BatcherClosed."""
        request = _Request(batch)
        done = threading.Lock()
        done.acquire()
        request.notify = done.release
        if self._direct and self._queue.empty() and self._model.acquire(blocking=False):
            try:  # the model is idle and nobody waits: no batch to form, no hand-off
                if self._closed:
                    raise BatcherClosed("the batcher is closed: the server is stopping")
                self._serve([request], request.size)
            finally:
                self._model.release()
        else:
            self._submit(request)
        done.acquire()  # released once request is served (at once on the direct path)
        if request.error is not None:
            raise request.error
        return request.predictions

    async def apredict(self, batch: np.ndarray) -> list[Prediction]:
        """:meth:`predict` for a coroutine: the event loop runs on while the model thread
        serves the batch; the answer comes back through ``call_soon_threadsafe``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Prediction]] = loop.create_future()
        request = _Request(batch)
        request.notify = functools.partial(_wake_loop, loop, future, request)
        self._submit(request)
        return await future

    def _submit(self, request: _Request) -> None:
        with self._accepting:
            if self._closed:
                raise BatcherClosed("the batcher is closed: the server is stopping")
            self._queue.put(request)

    def close(self) -> None:
        """Stop: new requests are refused, the forward pass in progress (if any)
        finishes and answers its callers, requests still queued fail with BatcherClosed,
        and the log is closed. Idempotent."""
        with self._accepting:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(CLOSE_WAIT_S)
        # Whatever the model thread did not take (it stops at _STOP, or was stuck).
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            _fail(request)
        if self.log is not None:
            self.log.close()

    # -- the model thread -----------------------------------------------------------------
    def _run(self) -> None:
        carry: _Request | None = None  # the request that did not fit the last batch
        # While idle, flush the log now and then (callers' direct passes write it too).
        idle_s = FLUSH_S if self.log is not None else None
        while True:
            if self._closed:  # close() fails what is still queued
                if carry is not None:
                    _fail(carry)
                return
            first = carry
            carry = None
            if first is None:
                try:
                    first = self._queue.get(timeout=idle_s)
                except queue.Empty:
                    if self.log is not None:
                        self.log.flush()
                    continue
            if first is _STOP:
                return
            with self._model:  # after a caller's direct pass: gathers what queued during it
                if self._closed:  # closed during that pass: first is still only queued
                    _fail(first)
                    return
                requests, examples, carry = self._gather(first)
                try:
                    self._serve(requests, examples)
                except Exception as exc:  # a bug: this pass's callers get it, none waits
                    for request in requests:  # forever, and the thread serves on
                        if not request.answered:
                            _answer(request, [], exc)

    def _gather(self, first: _Request) -> tuple[list[_Request], int, _Request | None]:
        """``first`` and the requests that join its batch; and the one that came next but
        did not fit (or _STOP), if any."""
        requests = [first]
        examples = first.size
        deadline = first.arrived + self._wait_s
        waiting, get, max_batch = self._wait_s > 0, self._queue.get, self._max_batch
        while examples < max_batch:
            # A first request that queued past its deadline (the model was busy) takes
            # only what is queued already: the busier the worker, the fuller the batch.
            left = deadline - time.monotonic() if waiting else 0.0
            if left > 0:
                try:
                    nxt = get(timeout=left)
                except queue.Empty:
                    break
            elif self._queue.empty():  # cheaper than get()'s Empty exception
                break
            else:
                nxt = get()
            if nxt is _STOP or examples + nxt.size > max_batch:
                return requests, examples, nxt
            requests.append(nxt)
            examples += nxt.size
        return requests, examples, None

    def _serve(self, requests: list[_Request], examples: int) -> None:
        """One forward pass for ``requests``; each caller woken with its own answer."""
        try:
            stacked = requests[0].batch if len(requests) == 1 \
                else np.concatenate([r.batch for r in requests])
            if self.monitor is None:
                predictions = serve_batch(self.bundle, stacked)
            else:
                started = time.perf_counter()
                try:
                    predictions = serve_batch(self.bundle, stacked)
                finally:
                    self.monitor.forward(time.perf_counter() - started, examples)
            if len(predictions) != examples:
                raise RuntimeError(f"the model answered {len(predictions)} predictions for "
                                   f"{examples} examples")
        except Exception as exc:
            if self.log is not None:
                self.log.record(len(requests), examples)
            if len(requests) == 1:
                _answer(requests[0], [], exc)
            else:  # each alone: only a request that fails by itself gets an error
                for request in requests:
                    self._serve([request], request.size)
            return
        if self.log is not None:
            self.log.record(len(requests), examples)
        if len(requests) == 1:
            _answer(requests[0], predictions, None)
            return
        start = 0
        for request in requests:
            end = start + request.size
            _answer(request, predictions[start:end], None)
            start = end


def _answer(request: _Request, predictions: list[Prediction],
            error: BaseException | None) -> None:
    request.predictions = predictions
    request.error = error
    request.answered = True
    request.notify()


def _fail(request: _Request) -> None:
    if request is not _STOP:
        _answer(request, [], BatcherClosed("the batcher closed before this request was "
                                           "served: the server is stopping"))


def worker_batcher(bundle: Bundle, spec: BatchingSpec | None,
                   log_dir: str | None, monitor: Monitor | None = None) -> Batcher | None:
    """In a server worker, after the fork (the batcher starts a thread): its batcher for
    the loaded ``bundle``, logging under ``log_dir`` when given, its forward passes
    observed by ``monitor`` (--metrics); None when batching is off."""
    if spec is None:
        return None
    return Batcher(bundle, spec, BatchLog(log_dir) if log_dir else None, monitor)
