"""Bad inputs to ingest, search and delete raise the right error class and store nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_mcp.errors import InvalidInput, LimitExceeded, NotFound, PathNotAllowed
from rerank_mcp.tools.collections import delete
from rerank_mcp.tools.ingest import IngestLimits, ingest
from rerank_mcp.tools.search import search
from tests.conftest import ENGINES, open_engine

DOCS = [
    {"id": "a", "text": "The mitochondria is the powerhouse of the cell.", "metadata": {"k": 1}},
    {"id": "b", "text": "Ribosomes translate messenger RNA into proteins.", "metadata": {"k": 2}},
    {"id": "c", "text": "The Krebs cycle runs inside mitochondria.", "metadata": {"k": 3}},
]


@pytest.fixture(scope="module", params=ENGINES)
def eng(request, tmp_path_factory, embedder):
    """One engine per module and engine kind: every test here checks that its call left the
    stored state as it was (``unchanged``), so they can share it."""
    e = open_engine(request.param, tmp_path_factory.mktemp(f"bad-inputs-{request.param}") / "data", embedder)
    r = ingest(e, "bio", DOCS)
    assert r.added == 3
    yield e
    e.close()


@pytest.fixture
def fresh_eng(any_engine):
    """A fresh engine for a test that stores something."""
    r = ingest(any_engine, "bio", DOCS)
    assert r.added == 3
    return any_engine


def snapshot(eng) -> tuple:
    """Everything stored, through the index contract: collections, documents, chunk ids and texts."""
    cols = [(c.name, c.documents, c.chunks) for c in eng.collections()]
    docs = []
    for c in eng.collections():
        for d in eng.documents(c.name, limit=10_000):
            full = eng.document(c.name, d.id)
            docs.append((c.name, d.id, d.content_hash, json.dumps(d.metadata, sort_keys=True),
                         tuple((x.chunk_id, x.text) for x in full.chunks)))
    return cols, sorted(docs)


def unchanged(eng, fn, exc, needle):
    before = snapshot(eng)
    with pytest.raises(exc) as ei:
        fn()
    assert needle in str(ei.value), str(ei.value)
    assert snapshot(eng) == before
    assert [c.name for c in eng.collections()] == ["bio"]
    return ei.value


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        ({"query": ""}, InvalidInput, "query is empty"),
        ({"query": "   \n"}, InvalidInput, "query is empty"),
        ({"query": "a\x00b"}, InvalidInput, "NUL"),
        ({"query": 42}, InvalidInput, "query must be a string"),
        ({"query": "x" * 20_000}, LimitExceeded, "over the limit"),
        ({"k": 0}, InvalidInput, "k must be a positive integer"),
        ({"k": -3}, InvalidInput, "k must be a positive integer"),
        ({"k": True}, InvalidInput, "k must be a positive integer"),
        ({"k": 10**9}, LimitExceeded, "over the limit"),
        ({"collection": "nope"}, NotFound, "unknown collection 'nope'"),
        ({"collection": "bad name!"}, InvalidInput, "invalid collection name"),
        ({"mode": "semantic"}, InvalidInput, "unknown mode 'semantic'"),
        ({"fusion": "borda"}, InvalidInput, "unknown fusion"),
        ({"weights": {"dense": -1}}, InvalidInput, "weights"),
        ({"weights": {"sparse": 1}}, InvalidInput, "weights"),
        ({"weights": {"dense": 0, "bm25": 0}}, InvalidInput, "weights: at least one arm must have a positive weight"),
        ({"weights": {"dense": 0.0, "bm25": -0.0}}, InvalidInput, "at least one arm must have a positive weight"),
        ({"weights": {"bm25": -2, "dense": 1}}, InvalidInput, "weights must map"),
        ({"filter": {"k": {"$regex": "x"}}}, InvalidInput, "unknown operator '$regex'"),
        ({"filter": {"a') OR 1=1 --": 1}}, InvalidInput, "field name"),
        ({"filter": "{oops"}, InvalidInput, "not valid JSON"),
        ({"filter": [1]}, InvalidInput, "expected a JSON object"),
        ({"rerank": {"reranker": "bm25"}}, InvalidInput, "not available"),
    ],
)
def test_search_bad_inputs(eng, kwargs, exc, needle):
    args = {"query": "mitochondria", "collection": "bio", "k": 5, "mode": "hybrid", **kwargs}
    q = args.pop("query")
    c = args.pop("collection")
    unchanged(eng, lambda: search(eng, None, q, c, **args), exc, needle)


def test_search_k_above_corpus_size_and_no_match(eng):
    assert len(search(eng, None, "mitochondria", "bio", k=1000, mode="dense").hits) == 3
    assert search(eng, None, "zzzyzx qqqq", "bio", k=5, mode="bm25").hits == []  # no hits is not an error
    assert search(eng, None, "the of and", "bio", k=5, mode="bm25").hits == []  # stopwords only


@pytest.mark.parametrize(
    "docs,kwargs,exc,needle",
    [
        ([], {}, InvalidInput, "nothing to ingest"),
        ([{"id": "x", "text": ""}], {}, InvalidInput, "text is empty"),
        ([{"id": "x", "text": "  \n\t "}], {}, InvalidInput, "text is empty"),
        ([{"id": "x", "text": "ok\x00bin"}], {}, InvalidInput, "NUL"),
        ([{"id": "x", "text": "bad \ud800 surrogate"}], {}, InvalidInput, "surrogate"),
        ([{"id": "x", "text": 5}], {}, InvalidInput, "documents[0]"),
        ([{"id": "x", "txt": "typo"}], {}, InvalidInput, "documents[0]"),
        ([{"id": "", "text": "t"}], {}, InvalidInput, "id must be"),
        ([{"id": "x", "text": "t", "metadata": {"v": float("nan")}}], {}, InvalidInput, "metadata"),
        ([{"id": "x", "text": "t", "metadata": "notadict"}], {}, InvalidInput, "documents[0]"),
        ([{"id": "d", "text": "one"}, {"id": "d", "text": "two"}], {}, InvalidInput, "duplicate"),
        ([{"id": "ok", "text": "fine"}, {"id": "x", "text": ""}], {}, InvalidInput, "documents[1]"),
        ([{"id": "x", "text": "t"}], {"chunk_size": 4}, InvalidInput, "chunk_size"),
        ([{"id": "x", "text": "t"}], {"chunk_overlap": 500}, InvalidInput, "chunk_overlap"),
        ([{"id": "x", "text": "t"}], {"collection": "no/slash"}, InvalidInput, "invalid collection name"),
        ([{"id": "x", "text": "t" * 50}], {"limits": IngestLimits(max_chars=10)}, LimitExceeded, "over the limit"),
        ([{"id": str(i), "text": "t"} for i in range(3)], {"limits": IngestLimits(max_documents=2)}, LimitExceeded, "over the limit"),
    ],
)
def test_ingest_bad_inputs(eng, docs, kwargs, exc, needle):
    kwargs = dict(kwargs)  # parametrised values are shared between the engines
    coll = kwargs.pop("collection", "bio")
    unchanged(eng, lambda: ingest(eng, coll, docs, **kwargs), exc, needle)


def test_ingest_new_collection_bad_input_creates_nothing(eng):
    unchanged(eng, lambda: ingest(eng, "fresh", [{"id": "x", "text": ""}]), InvalidInput, "text is empty")


def test_ingest_paths_outside_roots(eng, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    for p in ("../secret.txt", str(tmp_path / "secret.txt"), str(root / "link.txt")):
        unchanged(eng, lambda p=p: ingest(eng, "bio", paths=[p], roots=[root]), PathNotAllowed, "outside the allowed roots")
    (root / "bin.dat").write_bytes(b"\x00\x01")
    unchanged(eng, lambda: ingest(eng, "bio", paths=[str(root / "bin.dat")], roots=[root]), InvalidInput, "binary")


def test_ingest_files_and_skip_invalid(fresh_eng, tmp_path):
    eng = fresh_eng
    root = tmp_path / "root"
    root.mkdir()
    (root / "good.md").write_text("# Enzymes\n\nEnzymes catalyse reactions in the cell.")
    (root / "bad.txt").write_bytes("caf\xe9".encode("latin-1"))
    r = ingest(eng, "bio", paths=[str(root)], roots=[root], skip_invalid=True)
    assert (r.added, r.failed) == (1, 1)
    failed = [o for o in r.documents if o.status == "failed"][0]
    assert "bad.txt" in failed.id and "UTF-8" in failed.reason
    hit = search(eng, None, "enzymes catalyse", "bio", k=1, mode="bm25").hits[0]
    assert hit.doc_id == str(root / "good.md") and hit.metadata["type"] == "markdown"


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        ({}, InvalidInput, "nothing to delete"),
        ({"ids": []}, InvalidInput, "nothing to delete"),
        ({"ids": "a"}, InvalidInput, "ids must be a list"),
        ({"ids": [1, 2]}, InvalidInput, "ids must be a list"),
        ({"filter": {"k": {"$bogus": 1}}}, InvalidInput, "unknown operator"),
        ({"filter": {"a') OR 1=1 --": 1}}, InvalidInput, "field name"),
        ({"ids": ["a"], "drop_collection": True}, InvalidInput, "not both"),
        ({"collection": "nope", "ids": ["a"]}, NotFound, "unknown collection"),
    ],
)
def test_delete_bad_inputs(eng, kwargs, exc, needle):
    kwargs = dict(kwargs)  # parametrised values are shared between the engines
    coll = kwargs.pop("collection", "bio")
    unchanged(eng, lambda: delete(eng, coll, **kwargs), exc, needle)
    assert len(search(eng, None, "mitochondria", "bio", k=10, mode="dense").hits) == 3


def pyproj(tmp_path):
    """A Python package whose ``__init__.py`` is empty, and a file of only whitespace."""
    root = tmp_path / "root"
    (root / "pyproj" / "pkg").mkdir(parents=True)
    (root / "pyproj" / "pkg" / "__init__.py").write_bytes(b"")
    (root / "pyproj" / "pkg" / "math_utils.py").write_text("def add(a,b):\n    return a+b\n")
    (root / "pyproj" / "blank.md").write_text(" \n\t\n")
    return root, root / "pyproj"


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_folder_ingest_skips_files_that_hold_no_text(fresh_eng, tmp_path, skip_invalid):
    eng = fresh_eng
    root, proj = pyproj(tmp_path)
    r = ingest(eng, "code", paths=[str(proj)], roots=[root], skip_invalid=skip_invalid)
    assert (r.added, r.skipped, r.failed) == (1, 2, 0)
    out = {o.id: o for o in r.documents}
    assert out[str(proj / "pkg" / "math_utils.py")].status == "added"
    for name in ("pkg/__init__.py", "blank.md"):
        o = out[str(proj / name)]
        assert o.status == "skipped" and o.chunks == 0 and "holds no text" in o.reason, o
    assert {d.id for d in eng.documents("code")} == {str(proj / "pkg" / "math_utils.py")}


def test_an_empty_file_named_in_paths_is_still_an_error(eng, tmp_path):
    root, proj = pyproj(tmp_path)
    empty = str(proj / "pkg" / "__init__.py")
    for paths in ([empty], [str(proj), empty]):  # named, even beside a folder that holds it
        unchanged(eng, lambda paths=paths: ingest(eng, "bio", paths=paths, roots=[root]), InvalidInput,
                  f"{empty} holds no text")


def test_folder_ingest_notes_what_it_leaves_out(fresh_eng, tmp_path):
    eng = fresh_eng
    root = tmp_path / "root"
    proj = root / "proj"
    (proj / "img").mkdir(parents=True)
    for name, text in {"README": "Project readme.", "Makefile": "all:\n\techo build\n",
                       "config.yaml": "retries: 3\n", "pyproject.toml": "[project]\nname = 'p'\n",
                       "notes.txt": "Some notes."}.items():
        (proj / name).write_text(text)
    (proj / "blob.bin").write_bytes(b"\x00\x01")
    for i in range(11):
        (proj / "img" / f"p{i:02d}.png").write_bytes(b"\x89PNG")
    r = ingest(eng, "proj", paths=[str(proj)], roots=[root])
    assert sorted(Path(o.id).name for o in r.documents if o.status == "added") == [
        "Makefile", "README", "config.yaml", "notes.txt", "pyproject.toml"]
    assert r.failed == 0 and len(r.notes) == 1
    assert r.notes[0].startswith("skipped 12 files of unsupported types: blob.bin, img/p00.png, ")
    assert "img/p08.png (first 10)" in r.notes[0] and "p09" not in r.notes[0]

    only = root / "only"
    only.mkdir()
    (only / "blob.bin").write_bytes(b"\x00\x01")
    (only / ".hidden.md").write_text("hidden")
    r = ingest(eng, "proj", paths=[str(only)], roots=[root])
    assert r.documents == [] and r.notes == [
        "skipped 1 file of unsupported types: blob.bin; to read one as text, name it in paths or give a glob "
        "that matches it",
        f"no file to read was found in {only}: 1 file is of unsupported types; 1 hidden file(s) or folder(s) are "
        "left out"]
    r = ingest(eng, "proj", paths=[str(proj)], roots=[root], glob="*.rst")
    assert r.documents == [] and r.notes == [f"no file to read was found in {proj}: 17 file(s) do not match the "
                                             "glob '*.rst'"]
