"""A one-line progress report on stderr for long builds (no dependency)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Rows read and the current phase, on one line, at most every ``interval`` seconds.

    Rows are counted as batches pass (:meth:`add_rows`); when DuckDB reads the input itself,
    :meth:`watch` polls the running query's completion instead.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None, interval: float = 0.5):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.rows = 0
        self.total_rows: int | None = None
        self.phase = "reading"
        self._start = time.monotonic()
        self._last = 0.0
        self._closed = False
        self._percent: Callable[[], float] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def add_rows(self, n: int) -> None:
        self.rows += n
        self._show()

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self._show(force=True)

    def watch(self, percent: Callable[[], float], total_rows: int | None) -> None:
        """Show ``percent()`` (a running query's progress, -1 when none) every interval."""
        if not self.enabled:
            return
        self._percent, self.total_rows = percent, total_rows
        threading.Thread(target=self._tick, name="grouparrow-progress", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._show(force=True)

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if self._closed or (not force and now - self._last < self.interval):
                return
            self._last = now
            self.stream.write(f"\r{self._line(now - self._start)}\x1b[K")
            self.stream.flush()

    def _line(self, elapsed: float) -> str:
        if self._percent is None:
            rate = self.rows / max(elapsed, 1e-9)
            return f"{self.phase}: {self.rows:,} rows read ({rate:,.0f} rows/s, {elapsed:.1f} s)"
        try:
            percent = self._percent()
        except Exception:  # the connection is closing: show the phase alone
            percent = -1.0
        done = f"{percent:.0f}% of the query, " if percent >= 0 else ""
        total = f"{self.total_rows:,} rows in all, " if self.total_rows else ""
        return f"{self.phase}: {done}{total}{elapsed:.1f} s"

    def close(self) -> None:
        if not self.enabled or self._closed:
            return
        self._stop.set()
        self._show(force=True)
        with self._lock:
            self._closed = True
            self.stream.write("\n")
            self.stream.flush()
