"""Progress on stderr: rich when importable, else plain lines."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, quiet: bool = False, title: str = "bench") -> None:
        self.total = max(total, 1)
        self.done = 0
        self.quiet = quiet
        self.start = time.monotonic()
        self._rich = None
        if not quiet:
            try:
                from rich.progress import Progress as RichProgress  # noqa: PLC0415

                self._rich = RichProgress(transient=False)
                self._rich.start()
                self._task = self._rich.add_task(title, total=self.total)
            except Exception:  # noqa: BLE001 - plain prints instead
                self._rich = None

    def step(self, text: str, advance: int = 1) -> None:
        self.done += advance
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.update(self._task, advance=advance, description=text)
        else:
            elapsed = time.monotonic() - self.start
            print(f"[{self.done}/{self.total} {elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
