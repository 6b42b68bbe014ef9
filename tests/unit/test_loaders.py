"""File loading: txt/md/html/pdf, refusals, allowed roots (symlinks and '..'), folder walks and
what they leave out."""

from __future__ import annotations

import pytest

from rerank_mcp.errors import InvalidInput, LimitExceeded, NoText, PathNotAllowed
from rerank_mcp.index.loaders import (
    READ_TYPES,
    WalkReport,
    expand_paths,
    ignored_by_rules,
    kind_of,
    load_file,
    resolve_allowed,
    selected,
)

MAX = 1_000_000


def make_pdf(text: str, title: str | None = None) -> bytes:
    """A minimal one-page PDF with a Helvetica text content stream, xref offsets computed."""
    esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({esc}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title:
        objs.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    info = b" /Info 6 0 R" if title else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, info, xref)
    return bytes(out)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    (r / "a.txt").write_text("plain text file\n\nsecond paragraph")
    (r / "b.md").write_text("# Title\n\nSome *markdown* here.")
    (r / "sub" / "c.html").write_text(
        "<html><head><title>Page T</title><style>p{color:red}</style><script>var x=1;</script></head>"
        "<body><h1>Heading</h1><p>First <b>para</b>.</p><ul><li>item one</li><li>item two</li></ul></body></html>"
    )
    (r / "sub" / "d.pdf").write_bytes(make_pdf("Hello PDF world", title="Doc Title"))
    (r / "sub" / "e.bin").write_bytes(b"\x00\x01\x02binary")
    (r / ".hidden.txt").write_text("hidden")
    return r


def test_txt_and_md(root):
    f = load_file(root / "a.txt", MAX)
    assert f.kind == "text" and f.text == "plain text file\n\nsecond paragraph" and f.title is None
    m = load_file(root / "b.md", MAX)
    assert m.kind == "markdown" and "Some *markdown* here." in m.text


def test_utf8_bom_is_dropped(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffcafé".encode("utf-8"))
    assert load_file(p, MAX).text == "café"


def test_html(root):
    h = load_file(root / "sub" / "c.html", MAX)
    assert h.kind == "html" and h.title == "Page T"
    assert h.text.split("\n\n") == ["Heading", "First para .", "item one", "item two"]
    assert "var x" not in h.text and "color" not in h.text


def test_pdf(root):
    p = load_file(root / "sub" / "d.pdf", MAX)
    assert p.kind == "pdf" and "Hello PDF world" in p.text and p.title == "Doc Title"


def test_broken_pdf_refused(tmp_path):
    p = tmp_path / "bad.pdf"
    p.write_bytes(b"%PDF-1.4\ngarbage with no objects")
    with pytest.raises(InvalidInput, match="bad.pdf"):
        load_file(p, MAX)


def test_binary_refused(root):
    with pytest.raises(InvalidInput, match="binary"):
        load_file(root / "sub" / "e.bin", MAX)


def test_binary_refusal_lists_what_is_read(root):
    """The message names every group of the loader table (Word and source code too), with suffixes."""
    with pytest.raises(InvalidInput) as ei:
        load_file(root / "sub" / "e.bin", MAX)
    msg = str(ei.value)
    for what, suffixes in READ_TYPES:
        assert f"{what} ({suffixes[0]} " in msg or f"{what} ({suffixes[0]})" in msg, (what, msg)
    for needle in (".docx", ".pdf", ".html", ".py", ".yaml", ".txt", "README", "Makefile"):
        assert needle in msg, (needle, msg)


def test_invalid_utf8_refused(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(InvalidInput, match=r"latin1.txt is not valid UTF-8 \(byte 3\)"):
        load_file(p, MAX)


def test_empty_file_refused(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("  \n ")
    with pytest.raises(NoText, match=r"empty.txt holds no text \(it is empty or only whitespace\)"):
        load_file(p, MAX)
    (tmp_path / "zero.py").write_bytes(b"")
    with pytest.raises(NoText, match="zero.py holds no text"):
        load_file(tmp_path / "zero.py", MAX)


def test_size_limit(root):
    with pytest.raises(LimitExceeded, match="over the file size limit"):
        load_file(root / "a.txt", 5)


def test_inside_root_ok(root):
    assert resolve_allowed(root / "a.txt", [root]) == root / "a.txt"
    assert resolve_allowed("sub/c.html", [root]) == root / "sub" / "c.html"  # relative to the first root


def test_outside_root_refused(root, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        resolve_allowed(outside, [root])
    with pytest.raises(PathNotAllowed):
        resolve_allowed(str(root / ".." / "secret.txt"), [root])
    with pytest.raises(PathNotAllowed):
        resolve_allowed("../secret.txt", [root])
    # a symlink inside the root pointing outside
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(PathNotAllowed):
        resolve_allowed(root / "link.txt", [root])
    # a sibling folder whose name starts with the root's name is not inside it
    sib = tmp_path / "root2"
    sib.mkdir()
    (sib / "x.txt").write_text("x")
    with pytest.raises(PathNotAllowed):
        resolve_allowed(sib / "x.txt", [root])


def test_root_given_through_a_symlink(root, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    assert resolve_allowed(alias / "a.txt", [alias]) == root / "a.txt"


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b"])
def test_bad_path_strings(root, bad):
    with pytest.raises(InvalidInput):
        resolve_allowed(bad, [root])


def test_missing_file(root):
    with pytest.raises(InvalidInput, match="no such file"):
        resolve_allowed(root / "nope.txt", [root])


def test_missing_relative_path_names_the_path_it_was_taken_as(root):
    with pytest.raises(InvalidInput) as ei:
        resolve_allowed("sub/nope.txt", [root])
    assert str(ei.value) == f"no such file or folder: sub/nope.txt (taken as {root / 'sub' / 'nope.txt'})"


def test_folder_walk(root, tmp_path):
    outside = tmp_path / "out.txt"
    outside.write_text("o")
    (root / "sub" / "escape.txt").symlink_to(outside)  # skipped: points outside
    names = [p.relative_to(root).as_posix() for p in expand_paths([str(root)], [root])]
    assert names == ["a.txt", "b.md", "sub/c.html", "sub/d.pdf"]  # no hidden, no .bin, no escape
    md = [p.name for p in expand_paths([str(root)], [root], glob="*.md")]
    assert md == ["b.md"]
    # a folder and a file inside it: each file once
    both = expand_paths([str(root / "sub"), str(root / "sub" / "c.html")], [root])
    assert [p.name for p in both] == ["c.html", "d.pdf"]
    with pytest.raises(PathNotAllowed):
        expand_paths([str(tmp_path)], [root])


@pytest.fixture
def proj(tmp_path):
    """A project folder: docs, config and build files (some without a suffix), binaries, a secret."""
    p = tmp_path / "proj"
    (p / "src").mkdir(parents=True)
    for name, text in {
        "README": "A project.", "LICENSE": "MIT License", "Makefile": "all:\n\tpython -m build\n",
        "Dockerfile": "FROM python:3.12\n", "config.yaml": "retries: 3\n", "pyproject.toml": "[project]\nname = 'p'\n",
        "setup.cfg": "[metadata]\nname = p\n", "settings.ini": "[a]\nb = 1\n", "pom.xml": "<project/>\n",
        "notes.txt": "Notes.", "config.yaml.example": "retries: 1\n", "src/schema.sql": "CREATE TABLE t (x int);\n",
        "src/run.sh": "echo hi\n", ".env": "TOKEN=secret\n",
    }.items():
        (p / name).write_text(text, encoding="utf-8")
    (p / "blob.bin").write_bytes(b"\x00\x01")
    (p / "src" / "logo.png").write_bytes(b"\x89PNG\x00")
    return p


def test_walk_reads_config_build_and_well_known_files(proj):
    names = [f.relative_to(proj).as_posix() for f in expand_paths([str(proj)], [proj])]
    assert names == ["Dockerfile", "LICENSE", "Makefile", "README", "config.yaml", "config.yaml.example",
                     "notes.txt", "pom.xml", "pyproject.toml", "settings.ini", "setup.cfg", "src/run.sh",
                     "src/schema.sql"]  # not .env (hidden: never a secret), not the binaries
    assert kind_of("Makefile") == ("code", "make") and kind_of("Dockerfile") == ("code", "dockerfile")
    assert kind_of("README") == ("text", None) and kind_of("config.yaml") == ("text", None)
    assert kind_of("Makefile.in") == ("code", "make") and kind_of("blob.bin") == ("text", None)  # named: text
    assert load_file(proj / "README", MAX).text == "A project."
    assert selected("readme") and selected("CHANGELOG") and selected("x.toml")
    assert not selected("blob.bin") and not selected(".env") and not selected("x.in") and not selected("data")


def test_walk_reports_what_it_leaves_out(proj):
    (proj / ".gitignore").write_text("*.ini\nbuild/\n", encoding="utf-8")
    (proj / "build").mkdir()
    (proj / "build" / "out.txt").write_text("built", encoding="utf-8")
    (proj / ".cache").mkdir()
    report = WalkReport()
    files = expand_paths([str(proj), str(proj / "blob.bin")], [proj], report=report)
    assert [report.shown(p) for p in report.unsupported] == ["blob.bin", "src/logo.png"]
    assert report.named == {proj / "blob.bin"} and proj / "blob.bin" in files  # named: taken, whatever its type
    assert report.folders == [proj]
    assert (report.hidden, report.ignored, report.not_matched) == (2, 2, 0)  # .env, .cache; settings.ini, build/
    report = WalkReport()
    assert [f.name for f in expand_paths([str(proj)], [proj], glob="*.sql", report=report)] == ["schema.sql"]
    assert report.unsupported == [] and report.not_matched == 13


def test_ignored_by_rules(proj):
    (proj / "src" / "deep").mkdir()
    (proj / ".gitignore").write_text("*.sql\nsrc/deep/\n", encoding="utf-8")
    (proj / "src" / ".rerankignore").write_text("run.sh\n", encoding="utf-8")
    paths = [proj / "src" / "schema.sql", proj / "src" / "run.sh", proj / "src" / "deep" / "x.md",
             proj / "notes.txt", proj / "src" / "logo.png"]
    assert ignored_by_rules(paths, proj, [proj]) == set(paths[:3])
    assert ignored_by_rules(paths, proj / "src", [proj]) == set(paths[:3])  # rules above the folder count
