"""Produce tensors on both cores while the writer streams them out in order.

NumPy releases the GIL inside its loops, so two threads encoding two tensors run in
parallel; a small window bounds memory to a few tensors in flight.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Weights converted at a time in a tensor converted in parts (a block of rows): a few MB of
# codes, which stay in the CPU cache (whole-tensor passes ran 3-4x slower on a 128256 x 2560
# embedding), and two blocks in flight keep both cores on one large tensor.
PART_WEIGHTS = 1 << 21


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
                   progress: Callable[[str, int], None] | None = None,
                   write_part: Callable[[str, object], None] | None = None) -> None:
    """Produce every planned tensor (``name``, ``produce()``, ``done``) on all cores and
    write them in order; ``done`` runs once a tensor's bytes are out (it drops its source pages).
    Given ``write_part``, a tensor whose ``parts`` list producers of consecutive pieces of its
    bytes is produced and written a piece at a time: the window then holds a few pieces, not a
    few whole tensors, and both cores work on one large tensor."""
    nbytes = 0
    pieces = _pieces(planned, split=write_part is not None)
    for (t, last, _), data in ordered(pieces, lambda piece: piece[2]()):
        (write if last is None else write_part)(t.name, data)
        nbytes += data.nbytes
        del data
        if last is False:
            continue
        if t.done:
            t.done()
        if progress:
            progress(t.name, nbytes)
        nbytes = 0


def row_spans(m: int, k: int) -> list[tuple[int, int]] | None:
    """The blocks of rows (start, stop) of about PART_WEIGHTS weights each of an (m, k) tensor,
    for ``PlannedTensor.parts``; None when the tensor is one block."""
    step = max(1, PART_WEIGHTS // k)
    if step >= m:
        return None
    return [(r, min(r + step, m)) for r in range(0, m, step)]


def _pieces(planned: Iterable, split: bool) -> Iterator[tuple]:
    """(tensor, last, producer) per piece; ``last`` is None for a tensor produced whole."""
    for t in planned:
        parts = getattr(t, "parts", None) if split else None
        if not parts:
            yield t, None, t.produce
            continue
        for i, part in enumerate(parts):
            yield t, i == len(parts) - 1, part


@functools.cache
def _openblas_threads() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """OpenBLAS's get/set_num_threads, found among the libraries this process has loaded."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux: leave the BLAS alone
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("scipy_openblas", ""), ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                return get, put
    return None


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit OpenBLAS to ``n`` threads inside the block (this module's threads already use
    the cores): its own threads on top oversubscribe two cores, and on a shared machine that
    made BitStack writes 10-30x slower (llama-f16 fixture: 0.6-1.0 s with one BLAS thread,
    7-30 s without)."""
    funcs = _openblas_threads()
    if funcs is None:
        yield
        return
    get, put = funcs
    before = get()
    put(n)
    try:
        yield
    finally:
        put(before)
