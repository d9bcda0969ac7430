"""A terminal progress line for long-running commands: items done, rate and ETA.

    progress = Progress(total=1000, unit="images", label="density")
    for batch in batches:
        ...
        progress.update(len(batch))
    progress.close()

Prints at most every ``interval`` seconds (and always on the last item) to ``stream``
(stderr by default), one line each: ``density: 320/1000 images (32%), 41.3 images/s, ETA 0:00:16``.
"""

import sys
import time
from datetime import timedelta
from typing import Optional, TextIO


def format_duration(seconds: float) -> str:
    return str(timedelta(seconds=int(round(max(0.0, seconds)))))


class Progress:
    def __init__(
        self,
        total: int,
        unit: str = "items",
        label: str = "",
        interval: float = 2.0,
        stream: Optional[TextIO] = None,
        clock=time.monotonic,
    ):
        if total < 0:
            raise ValueError(f"Progress total={total} must be >= 0")
        self.total = int(total)
        self.unit = unit
        self.label = label
        self.interval = float(interval)
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.done = 0
        self.start = clock()
        self._last_print = None

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def rate(self) -> float:
        """Items per second so far (0 before the first item)."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 and self.done else 0.0

    @property
    def eta(self) -> Optional[float]:
        """Seconds left at the current rate (None while unknown)."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = self.eta
        head = f"{self.label}: " if self.label else ""
        return (
            f"{head}{self.done}/{self.total} {self.unit}{percent}, {self.rate:.3g} {self.unit}/s, "
            f"ETA {format_duration(eta) if eta is not None else '?'}"
        )

    def advance(self, n: int = 1) -> None:
        """Counts ``n`` more items without printing (for callers that log the :meth:`line` themselves)."""
        self.done += int(n)

    def update(self, n: int = 1) -> None:
        self.advance(n)
        now = self.clock()
        finished = self.done >= self.total
        if finished or self._last_print is None or now - self._last_print >= self.interval:
            self._last_print = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> str:
        """The closing summary line (also printed): items, elapsed time, mean rate."""
        text = (
            f"{self.label + ': ' if self.label else ''}{self.done} {self.unit} in "
            f"{format_duration(self.elapsed)} ({self.rate:.3g} {self.unit}/s)"
        )
        print(text, file=self.stream, flush=True)
        return text
