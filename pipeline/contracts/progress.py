"""The one channel through which long work reports progress.

Stages and the orchestrator call a hook with :class:`ProgressEvent` values; they never print nor
draw bars themselves. The CLI turns the events into progress bars and status lines; the Python
API's default hook ignores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of a stage's work, a status line (``message``), or both."""

    stage: str  # "people", "speech", "link", "answer", "preview", "eval", ...
    done: float | None = None
    total: float | None = None
    unit: str = ""  # what is counted: "frame", "s" (seconds of audio), "question"
    message: str | None = None


ProgressHook = Callable[[ProgressEvent], None]


def quiet(event: ProgressEvent) -> None:
    """The hook that ignores every event."""


class Counter:
    """Counts a stage's units and reports each step to a hook: ``counter.advance(n)``."""

    def __init__(self, progress: ProgressHook, stage: str, total: float, unit: str):
        self.progress, self.stage, self.total, self.unit, self.done = progress, stage, total, unit, 0.0
        progress(ProgressEvent(stage, 0.0, total, unit))

    def advance(self, amount: float) -> None:
        self.done = min(self.done + amount, self.total)
        self.progress(ProgressEvent(self.stage, self.done, self.total, self.unit))

    def finish(self) -> None:
        if self.done < self.total:
            self.advance(self.total - self.done)


class Timer:
    """Seconds spent in named parts of a stage's work, the one way stages time themselves:
    ``with timer("asr"): ...``; ``timer.seconds()`` gives ``{"asr_s": 1.2345, ...}`` (0.1 ms)."""

    def __init__(self, *parts: str):
        self.totals = dict.fromkeys(parts, 0.0)

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.totals[part] = self.totals.get(part, 0.0) + time.perf_counter() - started

    def move(self, seconds: float, source: str, target: str) -> None:
        """Count ``seconds`` timed inside part ``source`` as part ``target``'s (work done within another part)."""
        self.totals[source] = self.totals.get(source, 0.0) - seconds
        self.totals[target] = self.totals.get(target, 0.0) + seconds

    def seconds(self) -> dict[str, float]:
        return {f"{part}_s": round(seconds, 4) for part, seconds in self.totals.items()}


def stopwatch() -> Callable[[], float]:
    """A clock started now: each call of the returned function gives the seconds since (to the millisecond)."""
    started = time.perf_counter()
    return lambda: round(time.perf_counter() - started, 3)
