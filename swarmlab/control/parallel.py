"""Run one function on several items at once (the work is SSH round trips, not CPU)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def on_each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` on every item at once (one thread each: the work is SSH round trips), results in
    order; the first exception is raised after all have finished."""
    items = list(items)
    if len(items) < 2:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, i) for i in items]
    return [f.result() for f in futures]
