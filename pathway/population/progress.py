"""A progress bar on stderr, only when stderr is a terminal (cron and CI logs stay clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, enabled: bool | None = None, stream: TextIO | None = None, every: float = 0.2
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.every = every
        self._last = 0.0
        self._shown = False

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.every:
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        self.stream.write(
            f"\r{stage:<11} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.flush()
