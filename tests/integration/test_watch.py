"""``watch`` on real file system events, with bounded waits: a collection follows its folder
as files are added, changed, removed and renamed; reads and ignored files trigger nothing; the
CLI verb runs, reports each sync and stops on SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rerank_mcp.tools.sync import sync_folders
from rerank_mcp.tools.watch import FolderWatcher
from tests.fixtures.env import offline_env

pytestmark = pytest.mark.slow  # file watching waits on debounce timers

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


def wait_for(pred, what: str, timeout: float = WAIT_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "root"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.md").write_text("Vitamin D and bone fractures in older adults.\n", encoding="utf-8")
    return root


@pytest.fixture(params=["events", "polling"])
def watcher(request, engine, folder):
    results, errors = [], []
    w = FolderWatcher(
        [folder / "notes"], lambda: sync_folders(engine, "kb", [str(folder / "notes")], roots=[folder]),
        debounce_s=0.3, on_result=results.append, on_error=errors.append, polling=request.param == "polling",
    )
    w.start()
    wait_for(lambda: w.runs >= 1, "the first sync")
    yield w, results, errors
    w.stop()
    assert not errors, errors


def names(engine) -> set[str]:
    return {Path(d.id).name for d in engine.documents("kb")}


def test_watch_follows_adds_changes_deletes_and_renames(engine, folder, watcher):
    w, results, _ = watcher
    notes = folder / "notes"
    assert names(engine) == {"a.md"}

    (notes / "b.md").write_text("Okapi BM25 ranks documents.\n", encoding="utf-8")
    wait_for(lambda: "b.md" in names(engine), "b.md to be added")

    before = engine.doc_hashes("kb", [str((notes / "a.md").resolve())])
    (notes / "a.md").write_text("Vitamin D, rewritten.\n", encoding="utf-8")
    wait_for(lambda: engine.doc_hashes("kb", [str((notes / "a.md").resolve())]) != before, "a.md to be updated")

    (notes / "b.md").rename(notes / "c.md")
    wait_for(lambda: names(engine) == {"a.md", "c.md"}, "the rename to show")

    (notes / "deep").mkdir()
    (notes / "deep" / "d.txt").write_text("In a new folder.\n", encoding="utf-8")
    wait_for(lambda: "d.txt" in names(engine), "a file in a new folder")

    (notes / "a.md").unlink()
    wait_for(lambda: "a.md" not in names(engine), "a.md to be deleted")
    assert names(engine) == {"c.md", "d.txt"}
    kinds = {d.status for r in results for d in r.documents}
    assert {"added", "updated", "deleted"} <= kinds


def test_a_burst_of_changes_is_one_sync_and_reads_trigger_none(engine, folder, watcher):
    w, results, _ = watcher
    notes = folder / "notes"
    runs = w.runs
    for i in range(8):
        (notes / f"burst{i}.md").write_text(f"File number {i}.\n", encoding="utf-8")
    wait_for(lambda: len([n for n in names(engine) if n.startswith("burst")]) == 8, "the burst")
    time.sleep(1.0)
    assert w.runs - runs <= 2  # debounced: not one sync per file
    runs = w.runs
    for p in notes.iterdir():
        p.read_bytes()  # the sync itself reads every file: reads must not start another sync
    (notes / "ignored.bin").write_bytes(b"\x00\x01")  # not a type a sync takes
    (notes / ".hidden.md").write_text("hidden\n", encoding="utf-8")
    time.sleep(1.5)
    assert w.runs == runs


def test_watch_honours_gitignore_added_while_watching(engine, folder, watcher):
    notes = folder / "notes"
    (notes / "skip.log").write_text("a log line\n", encoding="utf-8")
    wait_for(lambda: "skip.log" in names(engine), "skip.log to be added")
    (notes / ".gitignore").write_text("*.log\n", encoding="utf-8")
    wait_for(lambda: "skip.log" not in names(engine), "the ignored file to be removed")


def _reader(stream, q):
    for line in iter(stream.readline, ""):
        q.put(line)
    q.put(None)


def test_events_of_files_read_by_name_count(folder):
    w = FolderWatcher([folder / "notes"], lambda: None)
    notes = folder / "notes"
    assert w.relevant(str(notes / "Makefile"), False) and w.relevant(str(notes / "config.yaml"), False)
    assert not w.relevant(str(notes / "blob.bin"), False) and not w.relevant(str(notes / ".env"), False)


def test_watch_cli_reports_syncs_and_stops_on_sigterm(tmp_path, folder):
    notes = folder / "notes"
    (notes / "__init__.py").write_bytes(b"")  # holds no text: skipped, not a failure
    (notes / "Makefile").write_text("all:\n\techo build\n", encoding="utf-8")
    env = offline_env(PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.hash_cli", "--data-dir", str(tmp_path / "data"), "--allowed-root",
         str(folder), "--json", "watch", str(notes), "-c", "kb", "--debounce", "0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, out), daemon=True).start()

    def next_report():
        line = out.get(timeout=WAIT_S)
        assert line is not None, proc.stderr.read()
        return json.loads(line)

    try:
        first = next_report()
        assert (first["added"], first["skipped"], first["failed"]) == (2, 1, 0) and first["collection"] == "kb"
        assert sorted(Path(c["id"]).name for c in first["changed"]) == ["Makefile", "a.md"]
        time.sleep(0.5)  # the observer is running once the first report is out; give it a moment
        (notes / "new.md").write_text("Written while watching.\n", encoding="utf-8")
        rep = next_report()
        while rep["added"] == 0 and not rep["changed"]:
            rep = next_report()
        assert rep["added"] == 1 and [c["status"] for c in rep["changed"]] == ["added"]
        (notes / "new.md").unlink()
        rep = next_report()
        assert rep["deleted"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0


def test_watch_cli_refuses_a_path_outside_the_roots(tmp_path, folder):
    env = offline_env(PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.hash_cli", "--data-dir", str(tmp_path / "data"), "--allowed-root",
         str(folder), "watch", str(tmp_path), "-c", "kb"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 1 and "outside the allowed roots" in r.stderr
