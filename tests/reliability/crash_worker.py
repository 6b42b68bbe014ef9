"""Subprocess for the crash tests: ingests documents and appends each committed batch's ids
to a journal (fsynced), so the parent knows exactly what `ingest` acknowledged before it was
killed with SIGKILL."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    data_dir, docs_file, journal = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
    from rerank_mcp.tools.ingest import ingest
    from tests.reliability.hash_embedder import HashEmbedder

    engine = EmbeddedIndex(IndexConfig(data_dir=data_dir, embedder_factory=HashEmbedder))
    docs = [json.loads(line) for line in docs_file.read_text().splitlines()]
    fh = open(journal, "a")

    def committed(ids: list[str]) -> None:
        fh.write(json.dumps(ids) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

    # many small calls, as an agent in a loop would make, plus re-ingests and deletes
    for i in range(0, len(docs), 16):
        ingest(engine, "crash", docs[i : i + 16], chunk_size=32, chunk_overlap=8, on_commit=committed)
    engine.close()
    fh.write("DONE\n")
    fh.flush()


if __name__ == "__main__":
    main()
