"""export / import: a collection moves between engines (and back) without re-embedding, and
comes back with identical search results; a bad file stores nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_mcp.errors import InvalidInput, NotFound
from rerank_mcp.index.contract import IndexConfig
from rerank_mcp.index.engines import open_index
from rerank_mcp.index.qdrant import QdrantConfig
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.search import search
from rerank_mcp.tools.transfer import export_collection, import_collection

DOCS = [
    {"id": f"d{i}", "text": t, "metadata": {"n": i, "lang": "en" if i % 2 else "de"}}
    for i, t in enumerate([
        "Mitochondria are the powerhouse of the cell and produce ATP through oxidative phosphorylation.",
        "The Treaty of Westphalia ended the Thirty Years' War in 1648 and shaped European sovereignty.",
        "Gradient descent minimises a loss function by following its negative gradient step by step.",
        "Photosynthesis converts light energy into chemical energy in the chloroplasts of plant cells.",
        "TCP provides reliable, ordered delivery of a stream of bytes between applications on hosts.",
        "Reciprocal rank fusion combines ranked lists by summing one over k plus rank for each item.",
        "Telomerase extends telomeres, the protective caps at the ends of chromosomes, in stem cells.",
    ])
]
QUERIES = ["which organelle produces ATP", "fusion of ranked lists", "chromosome ends", "reliable byte stream"]


def _open(tmp_path: Path, name: str, backend: str, embedder):
    cfg = IndexConfig(data_dir=tmp_path / name, embedder_factory=lambda: embedder,
                      engine=QdrantConfig(path=str(tmp_path / name / "qdrant")) if backend == "qdrant" else None)
    return open_index(cfg, backend)


def _results(index, collection: str, mode: str) -> list[tuple[str, int, float]]:
    out = []
    for q in QUERIES:
        hits = search(index, None, q, collection, k=5, mode=mode).hits
        out.append([(h.doc_id, h.start, round(h.score, 4)) for h in hits])
    return out


@pytest.mark.slow  # round trips of a whole collection through both engines
def test_round_trip_gives_identical_results(tmp_path, embedder):
    src = _open(tmp_path, "src", "embedded", embedder)
    try:
        ingest(src, "kb", DOCS, chunk_size=16, chunk_overlap=4)
        before = {m: _results(src, "kb", m) for m in ("dense", "bm25", "hybrid")}
        res = export_collection(src, "kb", tmp_path / "kb.jsonl")
    finally:
        src.close()
    assert res.documents == len(DOCS) and res.chunks > len(DOCS)
    lines = (tmp_path / "kb.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["format"] == "rerank-mcp-export" and len(lines) == len(DOCS) + 1

    dst = _open(tmp_path, "dst", "embedded", embedder)
    try:
        r = import_collection(dst, tmp_path / "kb.jsonl", "copy")
        assert (r.documents, r.chunks) == (res.documents, res.chunks)
        after = {m: _results(dst, "copy", m) for m in ("dense", "bm25", "hybrid")}
        # an identical import changes nothing and re-ingesting the same text is "unchanged"
        assert ingest(dst, "copy", DOCS, chunk_size=16, chunk_overlap=4).unchanged == len(DOCS)
    finally:
        dst.close()
    assert after == before


@pytest.mark.slow  # round trips of a whole collection through both engines
def test_through_qdrant_and_back(tmp_path, embedder):
    pytest.importorskip("qdrant_client")
    src = _open(tmp_path, "src", "embedded", embedder)
    try:
        ingest(src, "kb", DOCS, chunk_size=16, chunk_overlap=4)
        before = {m: _results(src, "kb", m) for m in ("dense", "bm25")}
        export_collection(src, "kb", tmp_path / "a.jsonl")
    finally:
        src.close()
    q = _open(tmp_path, "q", "qdrant", embedder)
    try:
        import_collection(q, tmp_path / "a.jsonl")
        in_qdrant = _results(q, "kb", "dense")
        export_collection(q, "kb", tmp_path / "b.jsonl")
    finally:
        q.close()
    # dense scores are the same vectors under the same cosine: same order and scores
    assert [[(d, s) for d, s, _ in r] for r in in_qdrant] == [[(d, s) for d, s, _ in r] for r in before["dense"]]
    for a, b in zip(in_qdrant, before["dense"]):
        assert [x[2] for x in a] == pytest.approx([x[2] for x in b], abs=1e-3)
    back = _open(tmp_path, "back", "embedded", embedder)
    try:
        import_collection(back, tmp_path / "b.jsonl")
        assert {m: _results(back, "kb", m) for m in ("dense", "bm25")} == before
    finally:
        back.close()


def _export_file(tmp_path, embedder) -> Path:
    src = _open(tmp_path, "src", "embedded", embedder)
    try:
        ingest(src, "kb", DOCS[:3])
        export_collection(src, "kb", tmp_path / "kb.jsonl")
    finally:
        src.close()
    return tmp_path / "kb.jsonl"


@pytest.mark.parametrize("damage,message", [
    (lambda ls: ls[:1] + ["{not json"] + ls[2:], "line 2: not valid JSON"),
    (lambda ls: ls[:2] + [json.dumps({**json.loads(ls[2]), "chunks": [{"text": "x", "start": 0, "end": 1,
                                                                         "vec": "AAAAAAAAAAA="}]})] + ls[3:], "dimension 384"),
    (lambda ls: ls + [ls[1]], "appears twice"),
    (lambda ls: [json.dumps({**json.loads(ls[0]), "embedding_model": "other/model"})] + ls[1:], "other/model"),
    (lambda ls: [json.dumps({"hello": 1})] + ls[1:], "not a rerank-mcp export"),
    (lambda ls: [], "empty"),
])
def test_a_bad_file_stores_nothing(tmp_path, embedder, damage, message):
    good = _export_file(tmp_path, embedder).read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(damage(good)) + "\n")
    dst = _open(tmp_path, "dst", "embedded", embedder)
    try:
        with pytest.raises(InvalidInput, match=message):
            import_collection(dst, bad, "copy")
        assert dst.collection_info("copy") is None
    finally:
        dst.close()


def test_missing_and_binary_files(tmp_path, embedder):
    dst = _open(tmp_path, "dst", "embedded", embedder)
    try:
        with pytest.raises(NotFound, match="no export file"):
            import_collection(dst, tmp_path / "nope.jsonl")
        (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00\x01" * 100)
        with pytest.raises(InvalidInput, match="not UTF-8|not a rerank-mcp export|not valid JSON"):
            import_collection(dst, tmp_path / "bin.jsonl")
        with pytest.raises(NotFound, match="unknown collection"):
            export_collection(dst, "nope", tmp_path / "out.jsonl")
        assert not (tmp_path / "out.jsonl").exists()
    finally:
        dst.close()


@pytest.mark.slow  # CLI subprocesses
def test_cli_export_and_import(tmp_path):
    exe = str(Path(sys.executable).with_name("rerank-mcp"))
    env_a = ["--data-dir", str(tmp_path / "a")]
    run = lambda *a: subprocess.run([exe, *a], capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run(*env_a, "ingest", "--text", "alpha beta gamma", "--id", "t1", "-c", "notes")
    assert r.returncode == 0, r.stderr
    r = run(*env_a, "export", "notes", str(tmp_path / "notes.jsonl"))
    assert r.returncode == 0 and "exported 1 documents" in r.stdout, r.stderr
    r = run("--data-dir", str(tmp_path / "b"), "--json", "import", str(tmp_path / "notes.jsonl"), "-c", "restored")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["documents"] == 1
    r = run("--data-dir", str(tmp_path / "b"), "--json", "search", "beta", "-c", "restored")
    assert json.loads(r.stdout)["hits"][0]["doc_id"] == "t1"
    r = run("--data-dir", str(tmp_path / "b"), "import", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 1 and "no export file" in r.stderr
