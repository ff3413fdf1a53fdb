"""A one-line progress report on stderr for long builds (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts rows and phases; prints at most every ``interval`` seconds when enabled."""

    def __init__(self, enabled: bool, stream: TextIO | None = None, interval: float = 0.5):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.rows = 0
        self.phase = "reading"
        self._start = time.monotonic()
        self._last = 0.0
        self._closed = False

    def add_rows(self, n: int) -> None:
        self.rows += n
        self._show()

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        self.stream.write(
            f"\r{self.phase}: {self.rows:,} rows read ({self.rows / elapsed:,.0f} rows/s, "
            f"{elapsed:.1f} s)\x1b[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and not self._closed:
            self._closed = True
            self._show(force=True)
            self.stream.write("\n")
            self.stream.flush()
