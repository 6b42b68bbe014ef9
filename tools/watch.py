"""Keep a collection in sync with folders as their files change (``rerank-mcp watch``).

File system events (``watchdog``: inotify, FSEvents, ReadDirectoryChangesW, or polling) mark
the folders dirty; once no event has come for ``debounce_s`` seconds one sync runs
(:func:`rerank_mcp.tools.sync.sync_folders`: changed files re-embedded, unchanged skipped,
removed ones deleted). Events during a sync schedule another after it. Only events that can
change the result count: files of the types a walk takes (or matching the glob), ignore files,
and folders; reads (the sync's own) and hidden paths do not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rerank_mcp.index.loaders import IGNORE_FILES, selected
from rerank_mcp.tools.models import IngestResult

log = logging.getLogger(__name__)

CHANGES = {"created", "modified", "deleted", "moved", "closed"}  # "closed": closed after writing


class FolderWatcher:
    """Calls ``sync()`` after the folders change, debounced; ``on_result``/``on_error`` hear each run."""

    def __init__(
        self,
        folders: Sequence[Path],
        sync: Callable[[], IngestResult],
        *,
        debounce_s: float = 1.0,
        glob: str | None = None,
        on_result: Callable[[IngestResult], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        polling: bool = False,
    ) -> None:
        self.folders = [Path(f).resolve() for f in folders]
        self.sync = sync
        self.debounce_s = max(0.0, float(debounce_s))
        self.glob = glob
        self.on_result = on_result
        self.on_error = on_error
        self.polling = polling
        self.runs = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._last_event = 0.0
        self._lock = threading.Lock()
        self._observer = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- events
    def relevant(self, path: str, is_dir: bool) -> bool:
        p = Path(path)
        folder = next((f for f in self.folders if p == f or f in p.parents), None)
        if folder is None:
            return False
        parts = p.relative_to(folder).parts
        if any(x.startswith(".") for x in parts[:-1]):
            return False
        name = parts[-1] if parts else p.name
        if is_dir:
            return not name.startswith(".")
        if name in IGNORE_FILES:
            return True
        return not name.startswith(".") and selected(name, self.glob)

    def notice(self, event: object) -> None:
        kind = getattr(event, "event_type", "")
        if kind not in CHANGES:
            return
        is_dir = bool(getattr(event, "is_directory", False))
        if is_dir and kind in ("modified", "closed"):
            return  # a folder's listing changed: the files' own events say whether that matters
        paths = [getattr(event, "src_path", ""), getattr(event, "dest_path", "")]
        if not any(p and self.relevant(p.decode() if isinstance(p, bytes) else p, is_dir) for p in paths):
            return
        with self._lock:
            self._last_event = time.monotonic()
        self._dirty.set()

    # ---------------------------------------------------------------- lifecycle
    def start(self, initial_sync: bool = True) -> None:
        from watchdog.events import FileSystemEventHandler

        if self.polling:
            from watchdog.observers.polling import PollingObserver as ObserverClass
        else:
            from watchdog.observers import Observer as ObserverClass

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: D401 - watchdog's hook
                watcher.notice(event)

        self._observer = ObserverClass()
        for f in self.folders:
            self._observer.schedule(Handler(), str(f), recursive=True)
        self._observer.start()
        if initial_sync:
            self._dirty.set()
            self._last_event = 0.0
        self._thread = threading.Thread(target=self._loop, name="rerank-mcp-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._dirty.wait(0.2):
                continue
            with self._lock:
                quiet = time.monotonic() - self._last_event
            if quiet < self.debounce_s:
                self._stop.wait(min(0.2, self.debounce_s - quiet))
                continue
            self._dirty.clear()
            try:
                res = self.sync()
                self.runs += 1
                if self.on_result:
                    self.on_result(res)
            except Exception as exc:  # keep watching: the next change may fix it
                log.warning("sync failed: %s", exc)
                if self.on_error:
                    self.on_error(exc)

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from another thread or a signal handler)."""
        while not self._stop.wait(0.5):
            pass
