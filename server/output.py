"""Printing results for people (rich tables) or scripts (``--json``)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator

from pydantic import BaseModel


class Output:
    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        from rich.console import Console

        self.console = Console(soft_wrap=False)
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
        self.console.print(text)

    @contextlib.contextmanager
    def progress(self, description: str) -> Iterator[Callable[[float, float, str], None]]:
        """A progress bar on stderr; yields a ``(done, total, message)`` callback."""
        if self.as_json or not self.err.is_terminal:
            yield lambda done, total, message: None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeRemainingColumn(), console=self.err, transient=True) as prog:
            task = prog.add_task(description, total=None)

            def update(done: float, total: float, message: str) -> None:
                prog.update(task, completed=done, total=total or None, description=message or description)

            yield update


def short(text: str, n: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
