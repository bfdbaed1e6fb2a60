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


def write_in_order(planned: Iterable, write: Callable[[str, object], None],
                   progress: Callable[[str, int], None] | None = None) -> None:
    """Produce every planned tensor (``name``, ``produce()``, ``done``) on all cores and
    write them in order; ``done`` runs once a tensor's bytes are out (it drops its source pages)."""
    for t, data in ordered(planned, lambda t: t.produce()):
        write(t.name, data)
        nbytes = data.nbytes
        del data
        if t.done:
            t.done()
        if progress:
            progress(t.name, nbytes)
