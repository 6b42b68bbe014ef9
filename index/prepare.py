"""Preparing the embedding model before its first use: the one-time ONNX export.

The server starts the export when it starts, in a process of its own (``python -m
rerank_mcp.index.prepare MODEL BACKEND CACHE_DIR``, in a new session): a short client session
(an Inspector ``tools/list``) that stops the server does not stop the export, and the next start
finds it made. Processes take turns through a file lock (:func:`onnx_embed.export_int8`): a
second server, or the server's own model load, waits for the export in progress instead of
starting another; an export that was killed leaves only temporary files, removed by the next
one, which starts over. ``rerank-mcp models pull`` and ``scripts/serve`` make it ahead of time.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOG_NAME = "prepare.log"


def onnx_target(model: str, backend: str, cache_dir: Path) -> Path | None:
    """The ONNX file the ``backend`` needs for ``model``; None for torch, or where the model's
    files are not on this machine (its loading reports that)."""
    from rerank_mcp.index.onnx_embed import ONNX_BACKENDS, export_path

    if backend not in ONNX_BACKENDS:
        return None
    from rerank_mcp.index.model_names import model_folder

    try:
        folder = model_folder(model)
    except Exception:
        return None
    return export_path(folder, Path(cache_dir), "encoder", ONNX_BACKENDS[backend])


def needs_export(model: str, backend: str, cache_dir: Path) -> bool:
    target = onnx_target(model, backend, cache_dir)
    return target is not None and not target.exists()


def prepare(model: str, backend: str, cache_dir: Path) -> Path | None:
    """Make the ONNX export now, in this process (waiting for one in progress elsewhere)."""
    from rerank_mcp.index.model_names import model_folder
    from rerank_mcp.index.onnx_embed import ONNX_BACKENDS, export_int8

    if backend not in ONNX_BACKENDS:
        return None
    return export_int8(model_folder(model), Path(cache_dir), "encoder", ONNX_BACKENDS[backend])


def start_detached(model: str, backend: str, cache_dir: Path, lock_wait_s: float = 30.0) -> subprocess.Popen | None:
    """Start the export in a process that outlives this one; None when nothing is to be done.
    Returns once that process holds the export's lock (or has ended), so that a model load in this
    process waits for it rather than racing it to the lock and exporting in-process. Its log goes to
    ``CACHE_DIR/prepare.log``."""
    target = onnx_target(model, backend, cache_dir)
    if target is None or target.exists():
        return None
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / LOG_NAME, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rerank_mcp.index.prepare", model, backend, str(cache_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, close_fds=True,
            start_new_session=True,  # not stopped with the server's process group
        )
    log.info("preparing the embedding model %s for the %s backend (one-time ONNX export, in process %d, which "
             "finishes even if this server stops; log: %s)", model, backend, proc.pid, cache_dir / LOG_NAME)
    from rerank_mcp.index.onnx_embed import export_lock_path

    lock = export_lock_path(target)
    deadline = time.monotonic() + lock_wait_s
    while time.monotonic() < deadline and proc.poll() is None and not target.exists():
        try:
            if lock.read_text().strip() == str(proc.pid):
                break
        except OSError:
            pass
        time.sleep(0.05)
    return proc


def main(argv: list[str]) -> int:
    model, backend, cache_dir = argv
    from rerank_mcp.index.environment import apply

    apply()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s")
    target = onnx_target(model, backend, Path(cache_dir))
    if target is None:
        return 0
    from rerank_mcp.index.model_names import model_folder
    from rerank_mcp.index.onnx_embed import ONNX_BACKENDS, export_lock_path, export_locked
    from rerank_mcp.index.persist import exclusive_lock

    # the lock first, before the heavy imports of the export: the server that started this
    # process waits until it holds it
    with exclusive_lock(export_lock_path(target)):
        path = export_locked(model_folder(model), Path(cache_dir), "encoder", ONNX_BACKENDS[backend])
    log.info("ready: %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
