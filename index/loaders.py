"""Reading files into text: .txt, .md, .html/.htm, .pdf, .docx, source code (and other UTF-8
text), with checks.

Paths must resolve (symlinks and ``..`` included) inside one of the allowed roots. Binary
files and invalid UTF-8 are refused with a message naming the file. Folder walks skip hidden
files and folders and honour ``.gitignore`` and ``.rerankignore`` files (gitignore syntax, via
``pathspec``): those inside the folder, and those in the folders above it up to the allowed
root it lies in; a deeper file's patterns win, as in git.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_mcp.errors import InvalidInput, LimitExceeded, PathNotAllowed

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text", ".csv", ".json", ".jsonl", ".log"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
DOCX_SUFFIXES = {".docx"}
# source code: chunked at blank lines and definitions (index/chunking.py), kind "code"
CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".rs": "rust", ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".lua": "lua", ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".sql": "sql", ".r": "r", ".pl": "perl",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".hs": "haskell", ".ml": "ocaml", ".clj": "clojure",
    ".dart": "dart", ".jl": "julia", ".vue": "vue", ".svelte": "svelte",
}
CODE_SUFFIXES = set(CODE_LANGUAGES)
IGNORE_FILES = (".gitignore", ".rerankignore")
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | DOCX_SUFFIXES | CODE_SUFFIXES
MAX_FILES_PER_FOLDER = 100_000


@dataclass(frozen=True)
class LoadedFile:
    path: Path
    text: str
    title: str | None
    kind: str
    language: str | None = None  # for kind "code"


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
            ignores = _IgnoreRules(real, roots)
            for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
                here = Path(dirpath)
                ignores.enter(here)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not ignores.ignored(here / d, True))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    if not selected(fn, glob):
                        continue
                    if ignores.ignored(here / fn, False):
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


def selected(name: str, glob: str | None = None) -> bool:
    """Whether a folder walk takes a file of this name: it matches ``glob``, or without one, is of
    a supported type."""
    if glob:
        return fnmatch.fnmatch(name, glob)
    return Path(name).suffix.lower() in SUPPORTED


class _IgnoreRules:
    """The ``.gitignore`` / ``.rerankignore`` patterns that apply inside a folder walk."""

    def __init__(self, top: Path, roots: Sequence[Path]) -> None:
        self.specs: dict[Path, Any] = {}  # folder -> compiled patterns of its ignore files
        self.top = top
        real_roots = [Path(r).expanduser().resolve() for r in roots]
        root = max((r for r in real_roots if r == top or r in top.parents), key=lambda r: len(r.parts), default=top)
        chain = [top, *[q for q in top.parents if q == root or root in q.parents]]
        self.above = [q for q in reversed(chain)]  # from the root down to the walk's folder
        for q in self.above:
            self._load(q)

    def _load(self, folder: Path) -> None:
        if folder in self.specs:
            return
        lines: list[str] = []
        for name in IGNORE_FILES:
            f = folder / name
            try:
                if f.is_file():
                    lines += f.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
        if lines:
            import pathspec

            self.specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines)
        else:
            self.specs[folder] = None

    def enter(self, folder: Path) -> None:
        self._load(folder)

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """The decision of the deepest ignore file with a pattern for ``path`` (git's precedence)."""
        folders = [q for q in self.above if q != self.top] + [
            q for q in [*reversed(path.parents)] if q == self.top or self.top in q.parents
        ]
        verdict = False
        for q in folders:
            spec = self.specs.get(q)
            if spec is None:
                continue
            rel = path.relative_to(q).as_posix() + ("/" if is_dir else "")
            res = spec.check_file(rel)
            if res.include is not None:
                verdict = bool(res.include)
        return verdict


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


def _docx_to_text(path: Path) -> tuple[str, str | None]:
    """Paragraphs (and table cells, row by row) of a Word document, in document order."""
    import zipfile

    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError:  # pragma: no cover - a dependency of the package
        raise InvalidInput(f"{path}: reading .docx needs the python-docx package") from None
    try:
        d = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidInput(f"{path} is not a readable .docx file: {exc}") from None
    blocks: list[str] = []
    for el in d.element.body.iterchildren():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "p":
            t = Paragraph(el, d).text.strip()
            if t:
                blocks.append(t)
        elif tag == "tbl":
            for row in Table(el, d).rows:
                cells = [c.text.strip() for c in row.cells]
                if any(cells):
                    blocks.append(" | ".join(dict.fromkeys(c for c in cells if c)))
    title = (d.core_properties.title or "").strip() or None
    return "\n\n".join(blocks), title


def load_file(path: Path, max_bytes: int) -> LoadedFile:
    size = path.stat().st_size
    if size > max_bytes:
        raise LimitExceeded(f"{path} is {size} bytes, over the file size limit of {max_bytes} (RERANK_MCP_MAX_FILE_BYTES)")
    suffix = path.suffix.lower()
    language = None
    if suffix in PDF_SUFFIXES:
        text, title = _pdf_to_text(path)
        kind = "pdf"
    elif suffix in DOCX_SUFFIXES:
        text, title = _docx_to_text(path)
        kind = "docx"
    else:
        raw = _decode_text(path.read_bytes(), path)
        if suffix in HTML_SUFFIXES:
            text, title = _html_to_text(raw)
            kind = "html"
        elif suffix in CODE_SUFFIXES:
            text, title, kind, language = raw, None, "code", CODE_LANGUAGES[suffix]
        else:
            text, title, kind = raw, None, "markdown" if suffix in (".md", ".markdown") else "text"
    if not text.strip():
        raise InvalidInput(f"{path} holds no text")
    return LoadedFile(path=path, text=text, title=title, kind=kind, language=language)
