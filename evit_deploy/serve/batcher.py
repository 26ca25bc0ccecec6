"""Dynamic batching: concurrent requests are grouped into one model run (up to ``max_batch`` items, waiting at
most ``max_wait_ms`` after the first one arrives).

Model runs happen one at a time in a dedicated worker thread; while one runs, new requests queue up and form the
next batch. A failing batch is retried item by item, so one bad item cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """The queue is full or the batcher is shutting down: the caller should answer 503."""


@dataclass
class _Job(Generic[T]):
    item: T
    future: asyncio.Future


class DynamicBatcher(Generic[T, R]):
    """``await batcher.submit(item)`` → ``run_batch([..., item, ...])[i]``.

    ``run_batch`` gets a list of items and returns one result per item; it runs in a worker thread.
    ``on_batch(size, seconds)`` is called after every model run (metrics).
    """

    def __init__(self, run_batch: Callable[[list[T]], list[R]], max_batch: int = 8, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, on_batch: Callable[[int, float], None] | None = None,
                 on_queue: Callable[[int], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_queue = on_queue
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the collector task on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evit-infer")
        self._closing = False
        self._task = asyncio.create_task(self._loop(), name="evit-batcher")

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result (exceptions of the model run are re-raised here)."""
        if self._queue is None or self._closing:
            raise Overloaded("the server is shutting down")
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"too many queued requests (limit {self.max_queue}); retry later")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(item, future))
        self._report_queue()
        return await future

    async def close(self) -> None:
        """Stop taking items, finish every queued one (drain), then stop the worker."""
        if self._queue is None or self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)  # FIFO: everything queued before the sentinel is still run
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _report_queue(self) -> None:
        if self.on_queue is not None and self._queue is not None:
            self.on_queue(self._queue.qsize())

    async def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The batch that starts with ``first``; True when the stop sentinel was met."""
        assert self._queue is not None
        batch = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch, stop = await self._collect(first)
            self._report_queue()
            batch = [job for job in batch if not job.future.done()]  # the client went away
            if not batch:
                continue
            outcomes = await loop.run_in_executor(self._executor, self._run, [job.item for job in batch])
            for job, outcome in zip(batch, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _run(self, items: list[T]) -> list[Any]:
        return run_isolated(self.run_batch, items, self.on_batch)


def run_isolated(run_batch: Callable[[list[T]], list[R]], items: list[T],
                 on_batch: Callable[[int, float], None] | None = None) -> list[R | BaseException]:
    """One model run over ``items``; on failure the items run one by one, so only the bad one(s) fail: one
    result or exception per item. ``on_batch(size, seconds)`` after each successful run."""
    started = time.perf_counter()
    try:
        results = list(run_batch(items))
        if len(results) != len(items):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
    except Exception as exc:  # noqa: BLE001 - reported per item
        if len(items) == 1:
            return [exc]
        return [run_isolated(run_batch, [item], on_batch)[0] for item in items]
    if on_batch is not None:
        on_batch(len(items), time.perf_counter() - started)
    return results
