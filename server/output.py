"""Printing results for people (rich tables) or scripts (``--json``)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from rerank_mcp.index.contract import Progress


class Output:
    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        from rich.console import Console

        self.console = Console(soft_wrap=False)
        if not self.console.is_terminal and "COLUMNS" not in os.environ:
            # a file or a pipe has no width: tables keep their natural width instead of wrapping at 80
            self.console.width = 400
        self.err = Console(stderr=True)

    def json(self, obj: Any) -> None:
        if isinstance(obj, BaseModel):
            text = obj.model_dump_json(indent=2)
        elif isinstance(obj, list) and obj and isinstance(obj[0], BaseModel):
            text = json.dumps([o.model_dump(mode="json") for o in obj], indent=2, ensure_ascii=False)
        else:
            text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write(text + "\n")

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        from rich.table import Table

        t = Table(title=title, show_lines=False)
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*[("" if v is None else str(v)) for v in r])
        self.console.print(t)

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)  # file names may hold [brackets]

    @contextlib.contextmanager
    def progress(self, description: str) -> Iterator[Progress]:
        """Progress on stderr; yields a ``(done, total, message)`` callback. A bar in a terminal;
        otherwise (a log file, a pipe, CI) a plain line every few seconds or every 10%."""
        if not self.err.is_terminal:
            lines = ProgressLines(description, lambda text: print(text, file=sys.stderr, flush=True))
            yield lines.update
            lines.finish()
            return
        if self.as_json:
            yield lambda done, total, message: None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeRemainingColumn(), console=self.err, transient=True) as prog:
            task = prog.add_task(description, total=None)

            def update(done: float, total: float | None, message: str) -> None:
                prog.update(task, completed=done, total=total or None, description=message or description)

            yield update


class ProgressLines:
    """Progress as plain lines, for output that is not a terminal: the first update, then one line
    when ``every_s`` seconds have passed or the fraction done has crossed another ``every_pct``
    percent (at most one line a second), and a last line when the work ends."""

    def __init__(self, description: str, write: Callable[[str], None], every_s: float = 5.0,
                 every_pct: float = 10.0, clock: Callable[[], float] | None = None) -> None:
        import time

        self.description = description
        self.write = write
        self.every_s = every_s
        self.every_pct = every_pct
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.last_t: float | None = None
        self.last_step = -1
        self.pending: tuple[float, float | None, str] | None = None

    def _line(self, done: float, total: float | None, message: str) -> str:
        elapsed = self.clock() - self.start
        # a count of whole things (documents, queries) shows whole numbers: work reports progress
        # inside a batch as a fraction of it, which the percentage carries
        shown = math.floor(done) if total is None or float(total).is_integer() else done
        where = f"{100 * done / total:.0f}% ({shown:g}/{total:g})" if total else f"{done:g}"
        what = message or self.description
        if message and not message.startswith(self.description):
            what = f"{self.description}: {message}"
        return f"{what}: {where}, {elapsed:.0f} s"

    def update(self, done: float, total: float | None, message: str = "") -> None:
        now = self.clock()
        step = int(100 * done / total // self.every_pct) if total else -1
        due = (self.last_t is None or now - self.last_t >= self.every_s
               or (step > self.last_step and now - self.last_t >= 1.0))
        if due:
            self.write(self._line(done, total, message))
            self.last_t, self.last_step, self.pending = now, max(step, self.last_step), None
        else:
            self.pending = (done, total, message)

    def finish(self) -> None:
        """The last state, if not yet printed (so the log shows where the work ended)."""
        if self.pending is not None:
            self.write(self._line(*self.pending))
            self.pending = None


def short(text: str, n: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
