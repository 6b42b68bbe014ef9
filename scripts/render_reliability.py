"""Renders the figures the reliability tests recorded into docs/reliability.md."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(stats_path: str, out: str) -> None:
    s = json.loads(Path(stats_path).read_text())
    lines = ["# Reliability", "",
             f"Produced by `scripts/reliability-report` on {time.strftime('%Y-%m-%d')}; every figure below was "
             "measured by the tests in `tests/reliability/` in that run.", ""]
    c = s.get("crash")
    if c:
        lines += ["## Crash safety (SIGKILL during ingest)", "",
                  f"- {c['cycles']} cycles; the writer was killed mid-ingest in {c['killed_mid_ingest']} of them, "
                  "each after a random number of committed batches.",
                  f"- {c['acknowledged_documents']} documents acknowledged as committed across the run; after every "
                  f"restart all were present with exactly their chunks: {c['acknowledged_documents_lost']} lost, "
                  f"{c['partial_documents']} partial.",
                  f"- Searches in dense, BM25 and hybrid mode after each restart returned "
                  f"{c['phantom_chunks_in_search']} chunks that the store did not hold; FAISS and BM25 sizes equalled "
                  "the store's chunk count every time.", ""]
    k = s.get("corruption")
    if k:
        lines += ["## Damaged index files", "",
                  f"- {k['damage_cases_repaired']} kinds of damage (truncated or deleted FAISS file, deleted sidecar, "
                  "truncated or deleted tantivy segments, garbage sidecar) were detected on start and rebuilt from "
                  "SQLite; results after repair were identical to before.",
                  "- A corrupt SQLite file is a clear `StoreCorrupt` error, never a silently empty index.", ""]
    cc = s.get("concurrency")
    if cc:
        lines += ["## Concurrency over streamable HTTP", "",
                  f"- {cc['clients']} clients, {cc['seconds']:g} s of mixed ingest / search / rerank / delete: "
                  f"{cc['operations']} operations, {cc['unexpected_errors']} unexpected errors.",
                  f"- {cc['acknowledged_ingests']} acknowledged ingests and {cc['acknowledged_deletes']} acknowledged "
                  f"deletes; afterwards the collection held exactly the acknowledged documents "
                  f"({cc['acknowledged_writes_missing']} missing).",
                  f"- While a 300-passage rerank ran, a cheap tool call took at worst "
                  f"{cc['worst_cheap_call_during_large_rerank_ms']} ms (goal: 100 ms).", ""]
    h = s.get("hostile_inputs_tried")
    if h:
        lines += ["## Hostile input", "",
                  f"- {h} generated hostile inputs (hypothesis) across every tool's arguments: no crash, no traceback "
                  "or server path in any error, nothing stored by any call that failed.", ""]
    Path(out).write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
