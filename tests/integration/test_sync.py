"""Folders kept in sync, on real files in a temporary folder, on every engine: add, modify,
delete, rename, .gitignore / .rerankignore, a symlink out of the root, .docx and source code,
empty files, files ingested by naming them; and hits that cite the exact lines of their files
(CRLF included)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.search import search
from rerank_mcp.tools.sync import sync_folders

PROSE = [
    "Vitamin D deficiency is associated with bone fractures in older adults.",
    "Okapi BM25 ranks documents by term frequency and inverse document frequency.",
    "FAISS performs efficient similarity search over dense vectors.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
]

CODE = '''import math


def circle_area(radius):
    """The area of a circle."""
    return math.pi * radius ** 2


class Stack:
    def push(self, item):
        self.items.append(item)
'''


def editor_lines(text: str) -> list[str]:
    return io.StringIO(text, newline=None).read().split("\n")


def make_docx(path: Path, paragraphs: list[str]) -> None:
    import docx

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    d.save(str(path))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "secret").mkdir()
    (docs / "drafts").mkdir()
    (docs / "a.md").write_text("# Notes\n\n" + PROSE[0] + "\n\n" + PROSE[1] + "\n", encoding="utf-8")
    (docs / "b.txt").write_bytes(("Line one about foxes.\r\n\r\n" + PROSE[3] + "\r\nA second line.\r\n").encode())
    (docs / "sub" / "c.md").write_text(PROSE[2] + "\n", encoding="utf-8")
    (docs / "geometry.py").write_text(CODE, encoding="utf-8")
    (docs / "debug.log").write_text("ignored by .gitignore\n", encoding="utf-8")
    (docs / "secret" / "s.md").write_text("ignored folder\n", encoding="utf-8")
    (docs / "drafts" / "d.md").write_text("ignored by .rerankignore\n", encoding="utf-8")
    (docs / ".gitignore").write_text("*.log\nsecret/\n", encoding="utf-8")
    (docs / ".rerankignore").write_text("drafts/\n", encoding="utf-8")
    outside = tmp_path / "outside.md"
    outside.write_text("outside the allowed root\n", encoding="utf-8")
    os.symlink(outside, docs / "link.md")
    return root, docs


def ids(res, status):
    """The documents with ``status``, as paths relative to the synced folder."""
    top = Path(res.synced[0])
    return sorted(Path(d.id).relative_to(top).as_posix() for d in res.documents if d.status == status)


@pytest.mark.slow  # several full syncs of a folder on each engine
def test_sync_adds_updates_skips_and_deletes(any_engine, tree):
    root, docs = tree
    progress = []
    kw = dict(roots=[root], chunk_size=64, chunk_overlap=8, progress=lambda d, t, m: progress.append(m))

    res = sync_folders(any_engine, "kb", [str(docs)], **kw)
    assert ids(res, "added") == ["a.md", "b.txt", "geometry.py", "sub/c.md"]  # ignored, hidden and outside: not
    assert res.deleted == 0 and res.synced == [str(docs.resolve())]
    assert progress

    res = sync_folders(any_engine, "kb", [str(docs)], **kw)
    assert res.unchanged == 4 and res.added == res.updated == res.deleted == 0 and res.chunks_written == 0

    # a document that did not come from this folder is never touched by its sync
    ingest(any_engine, "kb", [{"id": "note", "text": "A note typed in, not read from a file."}])

    (docs / "a.md").write_text("# Notes\n\nRewritten: " + PROSE[1] + "\n", encoding="utf-8")
    (docs / "b.txt").unlink()
    (docs / "sub" / "c.md").rename(docs / "sub" / "renamed.md")
    make_docx(docs / "report.docx", ["Quarterly report", PROSE[2], "Revenue grew in the third quarter."])
    progress.clear()
    res = sync_folders(any_engine, "kb", [str(docs)], **kw)
    assert ids(res, "updated") == ["a.md"]
    assert ids(res, "added") == ["report.docx", "sub/renamed.md"]
    assert ids(res, "deleted") == ["b.txt", "sub/c.md"]
    assert ids(res, "unchanged") == ["geometry.py"]
    assert (res.added, res.updated, res.unchanged, res.deleted) == (2, 1, 1, 2)
    assert any("deleted" in m for m in progress)

    # ignoring a file that was ingested removes it on the next sync
    (docs / ".gitignore").write_text("*.log\nsecret/\n*.py\n", encoding="utf-8")
    res = sync_folders(any_engine, "kb", [str(docs)], **kw)
    assert ids(res, "deleted") == ["geometry.py"]
    left = {d.id for d in any_engine.documents("kb")}
    assert "note" in left and not any(i.endswith(".py") or i.endswith("b.txt") for i in left)
    assert {Path(i).name for i in left} == {"note", "a.md", "renamed.md", "report.docx"}

    docx_doc = next(d for d in any_engine.documents("kb") if d.id.endswith(".docx"))
    assert docx_doc.metadata["type"] == "docx"


def test_sync_of_an_emptied_folder_deletes_everything_from_it(any_engine, tree):
    root, docs = tree
    sync_folders(any_engine, "kb", [str(docs / "sub")], roots=[root])
    (docs / "sub" / "c.md").unlink()
    res = sync_folders(any_engine, "kb", [str(docs / "sub")], roots=[root])
    assert res.deleted == 1 and any_engine.documents("kb") == []


def test_sync_with_a_glob_only_deletes_what_the_glob_selects(any_engine, tree):
    root, docs = tree
    sync_folders(any_engine, "kb", [str(docs)], roots=[root])
    (docs / "b.txt").unlink()
    res = sync_folders(any_engine, "kb", [str(docs)], roots=[root], glob="*.md")
    assert res.deleted == 0  # b.txt is not a *.md: this sync does not own it
    assert sorted(Path(d.id).name for d in res.documents) == ["a.md", "c.md"]


def test_sync_keeps_documents_of_existing_files_the_walk_does_not_select(any_engine, tree):
    """A file ingested by naming it (a type or a hidden name a walk leaves out) stays while it
    exists; it goes once it is removed, or once an ignore file matches it."""
    root, docs = tree
    (docs / "app.log.1").write_text("Rotated log: the cache warmed up in 3 seconds.\n", encoding="utf-8")
    (docs / ".todo.md").write_text("Hidden to-do list: renew the certificate.\n", encoding="utf-8")
    sync_folders(any_engine, "kb", [str(docs)], roots=[root])
    r = ingest(any_engine, "kb", paths=[str(docs / "app.log.1"), str(docs / ".todo.md")], roots=[root])
    assert r.added == 2
    named = {str((docs / "app.log.1").resolve()), str((docs / ".todo.md").resolve())}

    res = sync_folders(any_engine, "kb", [str(docs)], roots=[root])
    assert res.deleted == 0 and res.unchanged == 4, res.documents
    assert named <= {d.id for d in any_engine.documents("kb")}

    (docs / "app.log.1").unlink()
    res = sync_folders(any_engine, "kb", [str(docs)], roots=[root])
    assert ids(res, "deleted") == ["app.log.1"]
    (docs / ".gitignore").write_text("*.log\nsecret/\n.todo.md\n", encoding="utf-8")
    res = sync_folders(any_engine, "kb", [str(docs)], roots=[root])
    assert ids(res, "deleted") == [".todo.md"]
    assert not named & {d.id for d in any_engine.documents("kb")}


def test_sync_skips_empty_files_and_deletes_documents_of_emptied_ones(any_engine, tree):
    root, docs = tree
    (docs / "__init__.py").write_bytes(b"")
    res = sync_folders(any_engine, "kb", [str(docs)], roots=[root])  # without skip_invalid: no error
    assert (res.added, res.skipped, res.failed) == (4, 1, 0)
    assert ids(res, "skipped") == ["__init__.py"]

    (docs / "a.md").write_text("  \n", encoding="utf-8")
    res = sync_folders(any_engine, "kb", [str(docs)], roots=[root])
    assert ids(res, "deleted") == ["a.md"] and ids(res, "skipped") == ["__init__.py"]
    gone = next(d for d in res.documents if d.status == "deleted")
    assert gone.reason == "the file holds no text now"
    assert (res.deleted, res.skipped, res.unchanged) == (1, 1, 3)
    assert "a.md" not in {Path(d.id).name for d in any_engine.documents("kb")}


def test_sync_refuses_files_and_paths_outside_the_roots(any_engine, tree, tmp_path):
    root, docs = tree
    with pytest.raises(InvalidInput, match="not a folder"):
        sync_folders(any_engine, "kb", [str(docs / "a.md")], roots=[root])
    from rerank_mcp.errors import PathNotAllowed

    with pytest.raises(PathNotAllowed):
        sync_folders(any_engine, "kb", [str(tmp_path)], roots=[root])


def test_hits_from_files_cite_their_exact_lines_crlf_included(any_engine, tree):
    root, docs = tree
    sync_folders(any_engine, "kb", [str(docs)], roots=[root], chunk_size=16, chunk_overlap=4)
    texts = {str(p.resolve()): p.read_bytes().decode("utf-8") for p in docs.rglob("*") if p.suffix in (".md", ".txt", ".py")}
    seen = 0
    for q in ("fox river bank", "circle area radius", "bone fractures vitamin", "BM25 term frequency", "Stack push"):
        for h in search(any_engine, None, q, "kb", k=20, mode="bm25").hits:
            assert h.source == h.doc_id and h.start_line is not None
            text = texts[h.source]
            assert text[h.start:h.end] == h.text
            lines = editor_lines(text)
            cited = "\n".join(lines[h.start_line - 1 : h.end_line])
            assert h.text.replace("\r\n", "\n") in cited
            # first and last cited lines hold the hit's first and last characters
            assert h.text.replace("\r\n", "\n").split("\n")[0] in lines[h.start_line - 1]
            assert h.text.replace("\r\n", "\n").split("\n")[-1] in lines[h.end_line - 1]
            seen += 1
    assert seen >= 5
    crlf = [h for h in search(any_engine, None, "second line", "kb", k=10, mode="bm25").hits if h.doc_id.endswith("b.txt")]
    assert crlf and crlf[0].end_line == 4


def test_code_files_are_chunked_at_definitions(any_engine, tree):
    root, docs = tree
    sync_folders(any_engine, "kb", [str(docs)], roots=[root], chunk_size=30, chunk_overlap=0)
    doc = any_engine.document("kb", str((docs / "geometry.py").resolve()))
    assert doc.metadata["type"] == "code" and doc.metadata["language"] == "python"
    firsts = [c.text.split("\n")[0] for c in doc.chunks]
    assert firsts == ["import math", "def circle_area(radius):", "class Stack:"]  # blocks of 2, 29, 3+17 tokens


def test_cli_ingest_sync_and_shaped_search(tree, tmp_path, capsys, monkeypatch):
    from rerank_mcp.server.cli import run

    root, docs = tree
    base = ["--data-dir", str(tmp_path / "data"), "--allowed-root", str(root), "--json"]
    assert run([*base, "ingest", "--sync", str(docs), "-c", "kb"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["added"] == 4 and out["deleted"] == 0
    (docs / "b.txt").unlink()
    assert run([*base, "ingest", "--sync", str(docs), "-c", "kb"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deleted"] == 1 and out["unchanged"] == 3
    assert run([*base, "search", "vitamin bone fractures", "-c", "kb", "--max-tokens", "60", "--group-by", "document",
                "--expand", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] <= 60 and out["group_by"] == "document" and out["hits"]
    assert len({h["doc_id"] for h in out["hits"]}) == len(out["hits"])
    assert run([*base, "search", "x", "-c", "kb", "--max-tokens", "-3"]) == 1
    assert "max_tokens" in capsys.readouterr().err


def test_cli_folder_ingest_skips_empty_files_notes_other_types_and_sync_keeps_named_files(tmp_path, capsys):
    from rerank_mcp.server.cli import run

    root = tmp_path / "root"
    pkg = root / "pyproj" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_bytes(b"")
    (pkg / "math_utils.py").write_text("def add(a,b):\n    return a+b\n", encoding="utf-8")
    base = ["--data-dir", str(tmp_path / "data"), "--allowed-root", str(root)]
    assert run([*base, "ingest", str(root / "pyproj"), "-c", "pyproj"]) == 0
    out = capsys.readouterr().out
    assert "added 1, updated 0, unchanged 0, skipped 1, failed 0" in out
    assert run([*base, "--json", "ingest", str(root / "pyproj"), "-c", "pyproj-json"]) == 0  # the reason, whole
    skipped = [d for d in json.loads(capsys.readouterr().out)["documents"] if d["status"] == "skipped"]
    assert [Path(d["id"]).name for d in skipped] == ["__init__.py"] and "holds no text" in skipped[0]["reason"]
    assert run([*base, "ingest", str(pkg / "__init__.py"), "-c", "pyproj"]) == 1  # named: an error
    assert "__init__.py holds no text" in capsys.readouterr().err

    proj = root / "proj"
    proj.mkdir()
    for name in ("README", "Makefile", "config.yaml", "pyproject.toml", "notes.txt", "CHANGES.rtf"):
        (proj / name).write_text(f"The {name} of the project.\n", encoding="utf-8")
    (proj / "blob.bin").write_bytes(b"\x00\x01")
    assert run([*base, "--json", "ingest", str(proj), "-c", "proj"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(Path(d["id"]).name for d in res["documents"]) == [
        "Makefile", "README", "config.yaml", "notes.txt", "pyproject.toml"]
    assert res["notes"] == ["skipped 2 files of unsupported types: CHANGES.rtf, blob.bin; to read one as text, "
                            "name it in paths or give a glob that matches it"]
    assert run([*base, "ingest", str(proj / "CHANGES.rtf"), "-c", "proj"]) == 0
    assert "note: " not in capsys.readouterr().out
    assert run([*base, "--json", "ingest", "--sync", str(proj), "-c", "proj"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["deleted"] == 0 and res["unchanged"] == 5
    assert run([*base, "ingest", "--sync", str(proj), "-c", "proj"]) == 0
    assert "note: skipped 2 files of unsupported types: CHANGES.rtf, blob.bin" in capsys.readouterr().out
