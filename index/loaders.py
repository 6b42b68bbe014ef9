"""Reading files into text: .txt, .md, .html/.htm, .pdf (and other UTF-8 text), with checks.

Paths must resolve (symlinks and ``..`` included) inside one of the allowed roots. Binary
files and invalid UTF-8 are refused with a message naming the file.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from rerank_mcp.errors import InvalidInput, LimitExceeded, PathNotAllowed

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text", ".csv", ".json", ".jsonl", ".log"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
MAX_FILES_PER_FOLDER = 100_000


@dataclass(frozen=True)
class LoadedFile:
    path: Path
    text: str
    title: str | None
    kind: str


def resolve_allowed(path: str | os.PathLike, roots: Sequence[Path]) -> Path:
    """Resolve ``path`` (following symlinks) and check that it lies inside an allowed root."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise InvalidInput("file path is empty")
    if "\x00" in str(path):
        raise InvalidInput("file path contains a NUL character")
    # roots may be given through symlinks (client roots, /tmp on macOS): compare real paths
    roots = [Path(r).expanduser().resolve() for r in roots]
    if not roots:
        raise PathNotAllowed(
            "file ingest is off: no allowed roots are configured; set RERANK_MCP_ALLOWED_ROOTS "
            '(a JSON list of folders, e.g. ["/home/me/notes"]) or pass --allowed-root'
        )
    raw = Path(path).expanduser()
    if not raw.is_absolute():
        raw = roots[0] / raw if roots else raw
    # Containment first, existence second: a path outside the roots is refused the same way
    # whether or not it exists, and the message never says where a symlink leads, so the tool
    # cannot be used to probe the file system outside the roots.
    try:
        real = raw.resolve(strict=False)
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, name the OS cannot encode
        raise InvalidInput(f"cannot resolve path {path!r}: {_why(exc)}") from None
    for candidate in (real, None):
        if candidate is None:  # it is inside: now it must exist (resolved again, and checked again)
            try:
                candidate = real = raw.resolve(strict=True)
            except FileNotFoundError:
                raise InvalidInput(f"no such file or folder: {_show(path)}") from None
            except (OSError, RuntimeError, ValueError) as exc:
                raise InvalidInput(f"cannot resolve path {path!r}: {_why(exc)}") from None
        if not any(candidate == root or root in candidate.parents for root in roots):
            raise PathNotAllowed(
                f"path {_show(path)} is outside the allowed roots ({', '.join(map(str, roots))}; symlinks and "
                "'..' are followed); add its folder to RERANK_MCP_ALLOWED_ROOTS to allow it"
            )
    return real


def _show(path: str | os.PathLike) -> str:
    """The path for a message: as given, or escaped if it is not valid Unicode."""
    s = str(path)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return repr(s)


def _why(exc: Exception) -> str:
    if isinstance(exc, ValueError):
        return "the name is not valid for this file system"
    if isinstance(exc, RuntimeError):
        return "symlink loop"
    return getattr(exc, "strerror", None) or type(exc).__name__


def expand_paths(paths: Iterable[str], roots: Sequence[Path], glob: str | None = None) -> list[Path]:
    """Files named by ``paths``; folders are walked recursively, keeping files matching ``glob``
    (default: every supported type). Every file, symlinks included, must stay inside the roots."""
    out: list[Path] = []
    for p in paths:
        real = resolve_allowed(p, roots)
        if real.is_dir():
            for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    if glob and not fnmatch.fnmatch(fn, glob):
                        continue
                    if not glob and Path(fn).suffix.lower() not in SUPPORTED:
                        continue
                    try:
                        out.append(resolve_allowed(Path(dirpath) / fn, roots))
                    except PathNotAllowed:
                        continue  # a symlink inside the folder pointing outside: skipped
                    if len(out) > MAX_FILES_PER_FOLDER:
                        raise LimitExceeded(f"{p} holds more than {MAX_FILES_PER_FOLDER} files; narrow it with a glob")
        elif real.is_file():
            out.append(real)
        else:
            raise InvalidInput(f"{p} is neither a regular file nor a folder")
    return list(dict.fromkeys(out))


def _decode_text(data: bytes, path: Path) -> str:
    if b"\x00" in data[:8192]:
        raise InvalidInput(f"{path} looks like a binary file (it contains NUL bytes); only text, HTML and PDF are read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not valid UTF-8 (byte {exc.start}); convert it to UTF-8 first") from None


def _html_to_text(html: str) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    blocks = []
    for el in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "th", "blockquote"]):
        if el.find(["p", "li", "pre", "blockquote"]):
            continue  # keep leaf blocks only
        t = " ".join(el.get_text(" ", strip=True).split())
        if t:
            blocks.append(t)
    text = "\n\n".join(blocks) if blocks else " ".join(soup.get_text(" ", strip=True).split())
    return text, title


def _pdf_to_text(path: Path) -> tuple[str, str | None]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata and reader.metadata.title else None
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is not a readable PDF: {exc}") from None
    return "\n\n".join(p for p in pages if p), title


def load_file(path: Path, max_bytes: int) -> LoadedFile:
    size = path.stat().st_size
    if size > max_bytes:
        raise LimitExceeded(f"{path} is {size} bytes, over the file size limit of {max_bytes} (RERANK_MCP_MAX_FILE_BYTES)")
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        text, title = _pdf_to_text(path)
        kind = "pdf"
    else:
        raw = _decode_text(path.read_bytes(), path)
        if suffix in HTML_SUFFIXES:
            text, title = _html_to_text(raw)
            kind = "html"
        else:
            text, title, kind = raw, None, "markdown" if suffix in (".md", ".markdown") else "text"
    if not text.strip():
        raise InvalidInput(f"{path} holds no text")
    return LoadedFile(path=path, text=text, title=title, kind=kind)
