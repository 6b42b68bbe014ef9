"""Files and folders that fight back: a FIFO or a device inside a walked folder, a file that
claims a size it does not have, a folder swapped for a symlink between the check and the open,
MCP client roots escaped by a symlink or a relative path, decompression bombs (.docx, PDF),
files that vanish or cannot be read, and sync over an unreadable subfolder.

The engine is the real embedded one (SQLite, FAISS, tantivy) with the model-free hash embedder
(these tests are about what is read, not about embeddings); client roots go through a real MCP
client session. Permission cases run in a subprocess without the capabilities that let root
read a mode-000 file (tests/fixtures/unprivileged.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import pytest

from rerank_mcp.errors import InvalidInput, LimitExceeded, PathNotAllowed
from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.index.loaders import DOCX_MAX_ELEMENTS, DOCX_MAX_INFLATED_BYTES, expand_paths, load_file
from rerank_mcp.tools.ingest import IngestLimits, ingest
from tests.fixtures.fakes import HashEmbedder
from tests.fixtures.unprivileged import ROOT, permissions_apply, run_unprivileged
from tests.reliability.stats import record


@pytest.fixture
def eng(tmp_path):
    e = EmbeddedIndex(IndexConfig(data_dir=tmp_path / "data", embedder_factory=HashEmbedder))
    yield e
    e.close()


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    (root / "a.txt").write_text("an ordinary text file about rerankers")
    return root


def _texts(eng, collection: str) -> dict[str, str]:
    if collection not in {c.name for c in eng.collections()}:
        return {}
    out = {}
    for d in eng.documents(collection, limit=1000):
        out[d.id] = " ".join(c.text for c in eng.document(collection, d.id).chunks)
    return out


def _in_thread(fn, timeout: float = 20.0):
    """``fn()`` in a daemon thread: its result or exception, or TimeoutError if it hangs."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"still running after {timeout} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# ----------------------------------------------------------------------------- item: walks read regular files only


def test_a_fifo_in_a_walked_folder_is_never_opened(eng, files):
    import time

    fifo = files / "pipe.txt"
    os.mkfifo(fifo)
    try:
        t = time.perf_counter()
        with pytest.raises(InvalidInput, match=r"pipe\.txt is a FIFO \(named pipe\), not a regular file"):
            _in_thread(lambda: ingest(eng, "c", paths=[str(files)], roots=[files]))
        assert _texts(eng, "c") == {}  # nothing stored
        res = _in_thread(lambda: ingest(eng, "c", paths=[str(files)], roots=[files], skip_invalid=True))
        out = {Path(d.source).name: d for d in res.documents}
        assert out["a.txt"].status == "added"
        assert out["pipe.txt"].status == "failed" and "FIFO" in out["pipe.txt"].reason
        record("fifo_walk_s", round(time.perf_counter() - t, 2))
        # a FIFO as an ignore file is not read either; a symlinked ignore file inside the root still counts
        os.mkfifo(files / ".rerankignore")
        (files / "shared-ignore").write_text("*.log\n")
        (files / ".gitignore").symlink_to(files / "shared-ignore")
        (files / "b.log").write_text("ignored")
        got = _in_thread(lambda: expand_paths([str(files)], [files], "*", []))
        assert sorted(p.name for p in got) == ["a.txt", "shared-ignore"]
        # swapped in after the walk (or named directly): refused at the open, which does not block
        with pytest.raises(InvalidInput, match="FIFO"):
            _in_thread(lambda: load_file(fifo, 1000, [files]))
    finally:
        for f in (fifo, files / ".rerankignore"):
            try:  # a reader stuck in open() (the bug) is released by a writer
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def test_a_character_device_in_a_walk_is_not_read():
    """/dev/zero found by a walk: refused at once (it used to be read until memory ran out; here the
    check runs in a subprocess capped at 1 GB of memory and 60 s)."""
    code = f"""
import resource, sys
sys.path.insert(0, {str(ROOT)!r})
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from rerank_mcp.index.loaders import expand_paths, load_file
from rerank_mcp.errors import RerankMCPError
problems = []
files = expand_paths(["/dev"], [Path("/dev")], "zero", problems)
out = {{"files": [str(f) for f in files], "problems": [p.message for p in problems]}}
for f in files:
    try:
        load_file(f, 1000)
    except RerankMCPError as exc:
        out["problems"].append(str(exc))
try:
    load_file(Path("/dev/zero"), 1000)
except RerankMCPError as exc:
    out["direct"] = str(exc)
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["files"] == []
    assert out["problems"] == ["/dev/zero is a character device, not a regular file: not read"]
    assert "/dev/zero is a character device, not a regular file" in out["direct"]


def test_the_size_limit_counts_bytes_read_not_the_claimed_size(tmp_path):
    """/proc files claim 0 bytes and hold more: the limit applies to what is read."""
    maps = Path("/proc/self/maps")
    assert maps.stat().st_size == 0 and len(maps.read_bytes()) > 200
    with pytest.raises(LimitExceeded, match=r"/proc/self/maps holds more than 200 bytes .*RERANK_MCP_MAX_FILE_BYTES"):
        load_file(maps, 200)
    ok = tmp_path / "small.txt"
    ok.write_text("x" * 200)
    assert load_file(ok, 200).text == "x" * 200  # exactly at the limit is fine


# ----------------------------------------------------------------------------- item: allowed roots cannot be escaped


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_read(eng, tmp_path, files):
    """The walk checks files/sub/note.txt; before it is opened, files/sub becomes a symlink to a
    folder outside the roots holding a note.txt. The open re-checks the real path: refused."""
    (files / "sub").mkdir()
    (files / "sub" / "note.txt").write_text("inside the root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "note.txt").write_text("SECRET from outside the roots")

    def swap_once():
        if not (files / "sub").is_symlink():
            (files / "sub" / "note.txt").unlink()
            (files / "sub").rmdir()
            (files / "sub").symlink_to(outside, target_is_directory=True)
        return False  # not cancelled

    with pytest.raises(PathNotAllowed, match=r"sub/note\.txt led outside the allowed roots when it was opened"):
        ingest(eng, "c", paths=[str(files)], roots=[files], cancelled=swap_once)
    assert _texts(eng, "c") == {}
    res = ingest(eng, "c", paths=[str(files / "a.txt")], roots=[files], skip_invalid=True)
    assert res.added == 1
    assert not any("SECRET" in t for t in _texts(eng, "c").values())


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_client_roots_bound_walks_and_relative_paths(tmp_path, anyio_backend):
    """The client's root is files/client, inside the server's root files. A symlink in the client's
    root to elsewhere in the server's root is not followed, and a relative path is read from the
    client's root, where it was checked (not from the server's root)."""
    from mcp import Client
    from mcp.types import ListRootsResult, Root

    from rerank_mcp.server.app import build_server
    from rerank_mcp.server.settings import Settings
    from rerank_mcp.server.state import build_state

    files = tmp_path / "files"
    client = files / "client"
    (files / "other").mkdir(parents=True)
    client.mkdir()
    (files / "note.md").write_text("the SERVER root's note, not the one the client named")
    (client / "note.md").write_text("the client root's note about rerankers")
    (files / "other" / "private.md").write_text("PRIVATE to the server root, outside the client's")
    (client / "escape.md").symlink_to(files / "other" / "private.md")

    async def roots(_ctx):
        return ListRootsResult(roots=[Root(uri=client.as_uri())])

    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[files], log_level="WARNING")
    state = build_state(settings, warm=False, embedder_factory=HashEmbedder)
    try:
        async with Client(build_server(settings, state), list_roots_callback=roots) as c:
            r = await c.call_tool("ingest", {"collection": "k", "paths": [str(client)]})
            assert not r.is_error, r.content
            assert [Path(d["id"]).name for d in r.structured_content["documents"]] == ["note.md"]
            r = await c.call_tool("ingest", {"collection": "rel", "paths": ["note.md"]})
            assert not r.is_error, r.content
            assert r.structured_content["documents"][0]["id"] == str(client / "note.md")
            r = await c.call_tool("ingest", {"collection": "k", "paths": [str(client / "escape.md")]})
            assert r.is_error and "outside the client's roots" in r.content[0].text
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "x.md").write_text("outside the server's roots")

        async def other_roots(_ctx):
            return ListRootsResult(roots=[Root(uri=elsewhere.as_uri())])

        async with Client(build_server(settings, state), list_roots_callback=other_roots) as c:
            r = await c.call_tool("ingest", {"collection": "k", "paths": ["x.md"]})
            assert r.is_error and "the client's roots lie outside the server's allowed roots" in r.content[0].text
        texts = {**_texts(state.engine, "k"), **_texts(state.engine, "rel")}
        assert texts and not any("PRIVATE" in t or "SERVER" in t for t in texts.values()), texts
    finally:
        state.close()


# ----------------------------------------------------------------------------- item: decompression bombs


def _docx(path: Path, document_xml: bytes, extra: dict[str, bytes] | None = None) -> None:
    """A .docx from python-docx with its word/document.xml replaced."""
    import docx

    base = io.BytesIO()
    docx.Document().save(base)
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = document_xml if item.filename == "word/document.xml" else src.read(item)
            dst.writestr(item.filename, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def test_docx_text_tables_and_title_are_read(tmp_path):
    import docx

    d = docx.Document()
    d.core_properties.title = "Quarterly"
    d.add_paragraph("Revenue grew.")
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text, t.cell(0, 1).text, t.cell(1, 0).text, t.cell(1, 1).text = "Region", "Total", "North", "42"
    d.add_paragraph("The end.")
    d.save(str(tmp_path / "r.docx"))
    f = load_file(tmp_path / "r.docx", 10_000_000)
    assert f.text == "Revenue grew.\n\nRegion | Total\n\nNorth | 42\n\nThe end." and f.title == "Quarterly"


@pytest.mark.slow
def test_docx_bombs_are_refused_with_bounded_memory(tmp_path):
    """3M empty paragraphs in a ~300 KB file (it used to take 4 GB and minutes to parse), and a part
    that inflates past the limit: both refused, in a subprocess capped at 1 GB of memory."""
    many = f"<w:document {W}><w:body>".encode() + b"<w:p/>" * 3_000_000 + b"</w:body></w:document>"
    _docx(tmp_path / "many.docx", many)
    big = f"<w:document {W}><w:body><w:p><w:r><w:t>".encode() + b" " * (DOCX_MAX_INFLATED_BYTES + 1) \
        + b"</w:t></w:r></w:p></w:body></w:document>"
    _docx(tmp_path / "big.docx", big)
    assert (tmp_path / "many.docx").stat().st_size < 400_000 and (tmp_path / "big.docx").stat().st_size < 400_000
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from rerank_mcp.index.loaders import load_file
from rerank_mcp.errors import RerankMCPError
out = {{}}
for name in ("many.docx", "big.docx"):
    t = time.perf_counter()
    try:
        load_file(Path({str(tmp_path)!r}) / name, 50_000_000)
        out[name] = "read"
    except RerankMCPError as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)
    out[name + " s"] = time.perf_counter() - t
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
out["peak_rss_mb"] = int(status["VmHWM"].split()[0]) / 1024  # this process's own peak (not the parent's)
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["many.docx"].startswith("LimitExceeded") and f"more than {DOCX_MAX_ELEMENTS} XML elements" in out["many.docx"]
    assert "many.docx" in out["many.docx"]
    assert out["big.docx"].startswith("LimitExceeded") and "word/document.xml inflates to" in out["big.docx"]
    assert f"limit of {DOCX_MAX_INFLATED_BYTES} inflated bytes" in out["big.docx"]
    assert out["big.docx s"] < 1.0  # refused from the zip's directory, before inflating
    record("docx_bombs", {"paragraphs": 3_000_000, "many_zip_bytes": (tmp_path / "many.docx").stat().st_size,
                          "many_refused_s": round(out["many.docx s"], 2), "big_inflated_bytes": len(big),
                          "big_zip_bytes": (tmp_path / "big.docx").stat().st_size,
                          "big_refused_s": round(out["big.docx s"], 3), "peak_rss_mb": round(out["peak_rss_mb"])})


def test_docx_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("ENTITY-SECRET")
    xml = (f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
           f"<w:document {W}><w:body><w:p><w:r><w:t>before &x; after</w:t></w:r></w:p></w:body></w:document>").encode()
    _docx(tmp_path / "x.docx", xml)
    try:
        text = load_file(tmp_path / "x.docx", 1_000_000).text
    except InvalidInput as exc:
        text = str(exc)
    assert "ENTITY-SECRET" not in text


def test_a_damaged_docx_is_named(tmp_path):
    import docx

    b = io.BytesIO()
    docx.Document().save(b)
    data = bytearray(b.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 5, start + 40):  # garble the deflate stream
        data[i] ^= 0xFF
    (tmp_path / "bad.docx").write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match=r"bad\.docx is not a readable \.docx file"):
        load_file(tmp_path / "bad.docx", 10_000_000)


def _pdf_with_stream(raw: bytes) -> bytes:
    """A one-page PDF whose content stream is ``raw``, FlateDecode-compressed."""
    stream = zlib.compress(raw, 9)
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


@pytest.mark.slow  # builds a large PDF
def test_a_pdf_past_pypdfs_limits_is_a_clear_error(eng, files):
    bomb = files / "bomb.pdf"
    bomb.write_bytes(_pdf_with_stream(b"BT /F1 12 Tf 72 720 Td (x) Tj ET" + b" " * 80_000_000))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(LimitExceeded, match=r"bomb\.pdf: the PDF is over a limit of its reader \(pypdf limits each "
                       r"stream to 75000000 bytes inflated.*pypdf says: Limit reached"):
        load_file(bomb, 50_000_000)
    res = ingest(eng, "c", paths=[str(files)], roots=[files], skip_invalid=True)
    out = {Path(d.source).name: d for d in res.documents}
    assert out["a.txt"].status == "added" and out["bomb.pdf"].status == "failed"
    assert "over a limit of its reader" in out["bomb.pdf"].reason


def test_a_pdf_text_past_the_document_limit_stops_extraction(tmp_path):
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(_pdf_with_stream(b"BT /F1 12 Tf 72 720 Td (" + b"word " * 400 + b") Tj ET"))
    assert len(load_file(pdf, 1_000_000).text) > 1000
    with pytest.raises(LimitExceeded, match=r"long\.pdf: the PDF's text is over 100 characters \(after page 1\)"):
        load_file(pdf, 1_000_000, max_chars=100)


# ----------------------------------------------------------------------------- item: errors that name the file


def test_a_file_removed_after_the_walk_is_named(eng, files):
    (files / "b.txt").write_text("a second file")

    def remove_b():
        (files / "b.txt").unlink(missing_ok=True)
        return False

    with pytest.raises(InvalidInput, match=r"b\.txt cannot be read: it no longer exists"):
        ingest(eng, "c", paths=[str(files)], roots=[files], cancelled=remove_b)
    assert _texts(eng, "c") == {}
    (files / "b.txt").write_text("a second file")
    res = ingest(eng, "c", paths=[str(files)], roots=[files], skip_invalid=True, cancelled=remove_b)
    out = {Path(d.source).name: (d.status, d.reason) for d in res.documents}
    assert out["a.txt"][0] == "added" and out["b.txt"][0] == "failed" and "no longer exists" in out["b.txt"][1]


def test_walk_errors_are_covered_by_skip_invalid(eng, files):
    (files / "loop.txt").symlink_to(files / "loop.txt")
    with pytest.raises(InvalidInput, match=r"loop\.txt.*symlink loop.*skip_invalid"):
        ingest(eng, "c", paths=[str(files)], roots=[files])
    assert _texts(eng, "c") == {}
    res = ingest(eng, "c", paths=[str(files)], roots=[files], skip_invalid=True)
    out = {Path(d.source).name: (d.status, d.reason) for d in res.documents}
    assert out["a.txt"][0] == "added"
    assert out["loop.txt"][0] == "failed" and "symlink loop" in out["loop.txt"][1]
    assert res.failed == 1


@pytest.fixture
def unprivileged(tmp_path):
    why = permissions_apply(tmp_path)
    if why:  # pragma: no cover - every Linux here can drop the capabilities
        pytest.skip(why)


_SETUP = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from rerank_mcp.errors import RerankMCPError
from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.sync import sync_folders
from tests.fixtures.fakes import HashEmbedder
"""


def test_an_unreadable_file_is_named(unprivileged, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("readable")
    (files / "locked.txt").write_text("mode 000")
    (files / "locked.txt").chmod(0)
    out = run_unprivileged(_SETUP + f"""
files = Path({str(files)!r})
eng = EmbeddedIndex(IndexConfig(data_dir=Path({str(tmp_path / 'data')!r}), embedder_factory=HashEmbedder))
result = {{}}
for name, kw in (("direct", dict(paths=[str(files / "locked.txt")])), ("walk", dict(paths=[str(files)]))):
    try:
        ingest(eng, "c", roots=[files], **kw)
        result[name] = "ingested"
    except RerankMCPError as exc:
        result[name] = type(exc).__name__ + ": " + str(exc)
res = ingest(eng, "c", paths=[str(files)], roots=[files], skip_invalid=True)
result["skip"] = {{Path(d.source).name: [d.status, d.reason] for d in res.documents}}
eng.close()
""")
    locked = str(files / "locked.txt")
    assert out["direct"] == f"InvalidInput: {locked} cannot be read: permission denied"
    assert out["walk"] == f"InvalidInput: {locked} cannot be read: permission denied"
    assert out["skip"]["a.txt"][0] == "added"
    assert out["skip"]["locked.txt"] == ["failed", f"{locked} cannot be read: permission denied"]


def test_sync_deletes_nothing_under_an_unreadable_subfolder(unprivileged, tmp_path):
    """A subfolder that cannot be read for a while is not a deleted subfolder: sync fails naming it
    (or, with skip_invalid, reports it) and its documents stay."""
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("top level file about rerankers")
    (docs / "sub" / "b.md").write_text("a file in the subfolder")
    (docs / "sub" / "c.md").write_text("another file in the subfolder")
    out = run_unprivileged(_SETUP + f"""
docs = Path({str(docs)!r})
eng = EmbeddedIndex(IndexConfig(data_dir=Path({str(tmp_path / 'data')!r}), embedder_factory=HashEmbedder))
result = {{"first": sync_folders(eng, "kb", [str(docs)], roots=[docs]).added}}
(docs / "sub").chmod(0)
try:
    try:
        sync_folders(eng, "kb", [str(docs)], roots=[docs])
        result["strict"] = "synced"
    except RerankMCPError as exc:
        result["strict"] = type(exc).__name__ + ": " + str(exc)
    result["after strict"] = sorted(Path(d).name for d in eng.sources("kb"))
    res = sync_folders(eng, "kb", [str(docs)], roots=[docs], skip_invalid=True)
    result["skip"] = [[d.id, d.source, d.status, d.reason] for d in res.documents]
    result["deleted"] = res.deleted
    result["after skip"] = sorted(Path(d).name for d in eng.sources("kb"))
finally:
    (docs / "sub").chmod(0o755)
res = sync_folders(eng, "kb", [str(docs)], roots=[docs])
result["readable again"] = [res.unchanged, res.deleted]
eng.close()
""")
    sub = str(docs / "sub")
    assert out["first"] == 3
    assert out["strict"].startswith(f"InvalidInput: cannot read the folder {sub}: permission denied")
    assert out["after strict"] == ["a.md", "b.md", "c.md"]
    assert out["deleted"] == 0 and out["after skip"] == ["a.md", "b.md", "c.md"]
    failed = [d for d in out["skip"] if d[2] == "failed"]
    assert failed == [[None, sub, "failed", f"cannot read the folder {sub}: permission denied"]]
    assert out["readable again"] == [3, 0]


def test_ingest_limits_unchanged_for_ordinary_files(eng, files):
    """The regular path still works: a folder of ordinary files, the size limit at its edge."""
    (files / "b.md").write_text("# B\n\nmarkdown")
    res = ingest(eng, "c", paths=[str(files)], roots=[files], limits=IngestLimits(max_file_bytes=100))
    assert res.added == 2
    (files / "c.txt").write_text("y" * 101)
    with pytest.raises(LimitExceeded, match=r"c\.txt is 101 bytes, over the file size limit of 100"):
        ingest(eng, "c", paths=[str(files)], roots=[files], limits=IngestLimits(max_file_bytes=100))


# ----------------------------------------------------------------------------- item: a stuck read does not keep the process alive


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["asyncio", "sdk"])
def test_a_stuck_read_does_not_keep_the_process_alive_after_stdin_eof(tmp_path, files, transport):
    """A tool call stuck in a file read that never returns (a hung mount): once the client closes
    stdin the server still exits, within seconds, with status 0."""
    import time

    from tests.fixtures.env import offline_env
    from tests.fixtures.stdio_process import StdioServer

    marker = tmp_path / "reading"
    env = offline_env(PYTHONPATH=str(ROOT), RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_LOG_LEVEL="INFO",
                      RERANK_MCP_ALLOWED_ROOTS=json.dumps([str(files)]), RERANK_MCP_STDIO_TRANSPORT=transport,
                      RERANK_MCP_TEST_STUCK_MARKER=str(marker))
    with open(tmp_path / "server.log", "wb") as log:
        srv = StdioServer([sys.executable, "-m", "tests.reliability.stuck_read_server", "serve"], env, stderr=log)
    try:
        assert srv.initialize()["result"]["serverInfo"]["name"] == "rerank-mcp"
        srv.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                  "params": {"name": "ingest", "arguments": {"collection": "c", "paths": [str(files / "a.txt")]}}})
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline and srv.proc.poll() is None, "the read never started"
            time.sleep(0.05)
        t = time.monotonic()
        srv.proc.stdin.close()
        rc = srv.proc.wait(timeout=30)
        took = time.monotonic() - t
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    assert rc == 0, (tmp_path / "server.log").read_text(errors="replace")[-2000:]
    assert took < 15, f"exited {took:.1f} s after stdin closed"
    record(f"stuck_read_exit_{transport}", round(took, 2))
