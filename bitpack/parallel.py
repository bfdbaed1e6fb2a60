"""Produce tensors on both cores while the writer streams them out in order.

NumPy releases the GIL inside its loops, so two threads encoding two tensors run in
parallel; a small window bounds memory to a few tensors in flight.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def workers() -> int:
    """Threads to use: the CPUs this process may run on, at most 4 (memory grows with it)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


def ordered(items: Iterable[T], produce: Callable[[T], R], threads: int | None = None) -> Iterator[tuple[T, R]]:
    """(item, produce(item)) in input order, computed up to ``threads`` items ahead."""
    threads = threads or workers()
    if threads == 1:
        for item in items:
            yield item, produce(item)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bitpack")
    window: deque[tuple[T, Future]] = deque()
    try:
        for item in items:
            window.append((item, pool.submit(produce, item)))
            if len(window) > threads:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
