"""Reading files into text: .txt, .md, .html/.htm, .pdf, .docx, configuration and build files,
source code (and other UTF-8 text), with checks.

Paths must resolve (symlinks and ``..`` included) inside one of the allowed roots, and what is
opened is checked again: a file is opened without following a final symlink and without
blocking (``O_NOFOLLOW | O_NONBLOCK``), must be a regular file (a FIFO, device or socket is
never read), must still lie inside the roots once open (its real path, from the open file
descriptor), and is read only up to the size limit (the bytes read count, not the size the
file claims). Binary files and invalid UTF-8 are refused with a message naming the file.

Folder walks take the supported types (:func:`file_type`: by suffix, or a well-known name such
as README or Makefile), skip hidden files and folders and honour ``.gitignore`` and
``.rerankignore`` files (gitignore syntax, via ``pathspec``): those inside the folder, and those
in the folders above it up to the allowed root it lies in; a deeper file's patterns win, as in
git. What a walk leaves out on purpose is counted in a :class:`WalkReport` (the files of other
types by name), so a caller can say so. A file that holds no text is a :class:`NoText` error;
a caller skips it when a walk found it. What a walk cannot take (an unreadable folder, a symlink
loop, a file removed after it was listed, something that is not a regular file) is a
:class:`WalkProblem`: an error naming it, or, when the caller collects problems
(``skip_invalid``), reported while the walk goes on. Symlinks that lead out of the roots are
skipped.

A ``.docx`` is read as a stream: the zip members' inflated sizes are checked before inflating
and the XML is parsed element by element, with limits on both (:data:`DOCX_MAX_INFLATED_BYTES`,
:data:`DOCX_MAX_ELEMENTS`); pypdf's own limits on PDF streams become errors naming the file.
"""

from __future__ import annotations

import errno
import fnmatch
import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_mcp.errors import InvalidInput, LimitExceeded, NoText, PathNotAllowed, RerankMCPError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text", ".adoc", ".org", ".tex", ".csv", ".tsv", ".json",
                 ".jsonl", ".log"}
# configuration and build files, read as plain text (never secrets such as .env: a walk skips
# hidden files, and .env is not a supported type)
CONFIG_SUFFIXES = {".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".properties", ".xml", ".xsd"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
DOCX_SUFFIXES = {".docx"}
# source code: chunked at blank lines and definitions (index/chunking.py), kind "code"
CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".rs": "rust", ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".lua": "lua", ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".fish": "shell", ".ps1": "powershell",
    ".sql": "sql", ".r": "r", ".pl": "perl", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".hs": "haskell",
    ".ml": "ocaml", ".clj": "clojure", ".dart": "dart", ".jl": "julia", ".vue": "vue", ".svelte": "svelte",
    ".groovy": "groovy", ".gradle": "groovy", ".tf": "hcl", ".hcl": "hcl", ".proto": "protobuf",
    ".graphql": "graphql", ".css": "css", ".scss": "scss", ".less": "less", ".mk": "make", ".cmake": "cmake",
}
CODE_SUFFIXES = set(CODE_LANGUAGES)
# well-known files without a type suffix, by name (any case): (kind, a code file's language)
NAMED_FILES: dict[str, tuple[str, str | None]] = {
    **{n: ("text", None) for n in (
        "README", "LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS", "CONTRIBUTORS", "CHANGELOG", "CHANGES",
        "HISTORY", "NEWS", "TODO", "INSTALL", "CODEOWNERS", "OWNERS", "Procfile", "MANIFEST.in")},
    **{n: ("code", "make") for n in ("Makefile", "GNUmakefile")},
    **{n: ("code", "dockerfile") for n in ("Dockerfile", "Containerfile")},
    **{n: ("code", "ruby") for n in ("Gemfile", "Rakefile", "Vagrantfile", "Brewfile", "Podfile")},
    "Jenkinsfile": ("code", "groovy"), "CMakeLists.txt": ("code", "cmake"),
}
_NAMED = {k.lower(): v for k, v in NAMED_FILES.items()}
# a template of a supported file (config.yaml.example, Makefile.in) is read as that file
TEMPLATE_SUFFIXES = {".example", ".sample", ".dist", ".template", ".tmpl", ".in"}
IGNORE_FILES = (".gitignore", ".rerankignore")
SUPPORTED = TEXT_SUFFIXES | CONFIG_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | DOCX_SUFFIXES | CODE_SUFFIXES
# what a walk reads, for messages: (what, suffixes), from the tables above
READ_TYPES: tuple[tuple[str, Sequence[str]], ...] = (
    ("plain text", sorted(TEXT_SUFFIXES)), ("configuration", sorted(CONFIG_SUFFIXES)), ("HTML", sorted(HTML_SUFFIXES)),
    ("PDF", sorted(PDF_SUFFIXES)), ("Word", sorted(DOCX_SUFFIXES)), ("source code", list(CODE_LANGUAGES)),
)
MAX_FILES_PER_FOLDER = 100_000
# A .docx's XML parts, inflated, and the XML elements parsed from them: a small zip can hold
# gigabytes of XML (a decompression bomb).
DOCX_MAX_INFLATED_BYTES = 100_000_000
DOCX_MAX_ELEMENTS = 2_000_000
MAX_IGNORE_FILE_BYTES = 1_000_000
_READ_CHUNK = 1 << 20
_FILE_TYPES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symlink"}


@dataclass(frozen=True)
class WalkProblem:
    """Something a folder walk could not take: ``message`` names it and why. ``folder``: a
    folder that could not be read, so nothing is known about what lies under it."""

    path: Path
    message: str
    folder: bool = False


@dataclass
class WalkReport:
    """What :func:`expand_paths` took as named and what its walks left out on purpose."""

    named: set[Path] = field(default_factory=set)  # regular files named in ``paths`` (not found by a walk)
    folders: list[Path] = field(default_factory=list)  # the folders walked
    unsupported: list[Path] = field(default_factory=list)  # files left out for their type (no glob given)
    not_matched: int = 0  # files left out for not matching the glob
    hidden: int = 0  # hidden files and folders left out
    ignored: int = 0  # files and folders left out by .gitignore / .rerankignore

    def shown(self, path: Path) -> str:
        """``path`` relative to the walked folder it lies in."""
        for top in self.folders:
            if top in path.parents:
                return _show(path.relative_to(top))
        return _show(path)


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
                shown = _show(path) if Path(path).expanduser().is_absolute() else f"{_show(path)} (taken as {_show(raw)})"
                raise InvalidInput(f"no such file or folder: {shown}") from None
            except (OSError, RuntimeError, ValueError) as exc:
                raise InvalidInput(f"cannot resolve path {path!r}: {_why(exc)}") from None
        if not _inside(candidate, roots):
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


def _file_type(mode: int) -> str:
    return _FILE_TYPES.get(stat.S_IFMT(mode), "not a regular file")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "it no longer exists (removed after it was listed?)"
    if exc.errno == errno.ELOOP:
        return "symlink loop, or a symlink where a file was checked"
    return exc.strerror or type(exc).__name__


def expand_paths(paths: Iterable[str], roots: Sequence[Path], glob: str | None = None,
                 problems: list[WalkProblem] | None = None, report: WalkReport | None = None) -> list[Path]:
    """Regular files named by ``paths``; folders are walked recursively, keeping files matching
    ``glob`` (default: every supported type, :func:`selected`). Every file, symlinks included, must
    stay inside the roots (one leading out is skipped). What cannot be taken (:class:`WalkProblem`)
    is an :class:`InvalidInput` naming it, or, given a ``problems`` list, appended to it while the
    walk goes on. A path outside the roots is always refused. Given a ``report``, it records which
    files were named and what the walks left out (types, glob, hidden, ignored)."""
    report = report if report is not None else WalkReport()
    out: list[Path] = []

    def problem(path: Path, message: str, folder: bool = False, walk: bool = True) -> None:
        if problems is None:
            raise InvalidInput(message + ("; skip_invalid takes the rest of the folder and reports this" if walk else ""))
        problems.append(WalkProblem(path, message, folder))

    for p in paths:
        try:
            real = resolve_allowed(p, roots)
            mode = os.stat(real).st_mode
        except PathNotAllowed:
            raise
        except InvalidInput as exc:
            problem(Path(str(p)), str(exc), walk=False)
            continue
        except OSError as exc:
            problem(Path(str(p)), f"{_show(p)}: {_os_reason(exc)}", walk=False)
            continue
        if stat.S_ISDIR(mode):
            ignores = _IgnoreRules(real, roots)
            report.folders.append(real)

            def unreadable(err: OSError, top: Path = real) -> None:
                where = Path(err.filename) if err.filename else top
                problem(where, f"cannot read the folder {_show(where)}: {_os_reason(err)}", folder=True)

            for dirpath, dirnames, filenames in os.walk(real, followlinks=False, onerror=unreadable):
                here = Path(dirpath)
                ignores.enter(here)
                keep = []
                for d in sorted(dirnames):
                    if d.startswith("."):
                        report.hidden += 1
                    elif ignores.ignored(here / d, True):
                        report.ignored += 1
                    else:
                        keep.append(d)
                dirnames[:] = keep
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        report.hidden += fn not in IGNORE_FILES
                        continue
                    if ignores.ignored(here / fn, False):
                        report.ignored += 1
                        continue
                    if not selected(fn, glob):
                        if glob:
                            report.not_matched += 1
                        else:
                            report.unsupported.append(here / fn)
                        continue
                    try:
                        f = resolve_allowed(here / fn, roots)
                        fmode = os.stat(f).st_mode
                    except PathNotAllowed:
                        continue  # a symlink inside the folder pointing outside: skipped
                    except InvalidInput as exc:  # a symlink loop, a file removed after the listing
                        problem(here / fn, str(exc))
                        continue
                    except OSError as exc:
                        problem(here / fn, f"{_show(here / fn)}: {_os_reason(exc)}")
                        continue
                    if not stat.S_ISREG(fmode):
                        problem(here / fn, f"{_show(here / fn)} is {_file_type(fmode)}, not a regular file: not read")
                        continue
                    out.append(f)
                    if len(out) > MAX_FILES_PER_FOLDER:
                        raise LimitExceeded(f"{p} holds more than {MAX_FILES_PER_FOLDER} files; narrow it with a glob")
        elif stat.S_ISREG(mode):
            out.append(real)
            report.named.add(real)
        else:
            problem(Path(str(p)), f"{_show(p)} is {_file_type(mode)}, neither a regular file nor a folder", walk=False)
    return list(dict.fromkeys(out))


def selected(name: str, glob: str | None = None) -> bool:
    """Whether a folder walk takes a file of this name: it matches ``glob``, or without one, is of
    a supported type (:func:`file_type`)."""
    if glob:
        return fnmatch.fnmatch(name, glob)
    return file_type(name) is not None


def file_type(name: str | os.PathLike) -> tuple[str, str | None] | None:
    """The ``(kind, language)`` a folder walk reads a file of this name as: by its suffix, or a
    well-known name (README, Makefile, ...); a template (``config.yaml.example``, ``Makefile.in``)
    as the file it is a template of. None: not a supported type."""
    lower = Path(name).name.lower()
    if lower in _NAMED:
        return _NAMED[lower]
    suffix = Path(lower).suffix
    if suffix in TEMPLATE_SUFFIXES and lower != suffix:
        inner = lower[: -len(suffix)]
        if inner in _NAMED:
            return _NAMED[inner]
        suffix = Path(inner).suffix
    if suffix in PDF_SUFFIXES:
        return "pdf", None
    if suffix in DOCX_SUFFIXES:
        return "docx", None
    if suffix in HTML_SUFFIXES:
        return "html", None
    if suffix in CODE_SUFFIXES:
        return "code", CODE_LANGUAGES[suffix]
    if suffix in (".md", ".markdown"):
        return "markdown", None
    if suffix in TEXT_SUFFIXES or suffix in CONFIG_SUFFIXES:
        return "text", None
    return None


def readable_types(max_suffixes: int = 16) -> str:
    """What folder walks read, for messages: each group of the loader tables with its suffixes
    (the first ``max_suffixes`` of a long group), and the well-known names."""
    parts = []
    for what, suffixes in READ_TYPES:
        more = f" and {len(suffixes) - max_suffixes} more" if len(suffixes) > max_suffixes else ""
        parts.append(f"{what} ({' '.join(suffixes[:max_suffixes])}{more})")
    names = [n for n in NAMED_FILES if "." not in n]
    firsts = list({NAMED_FILES[n]: n for n in reversed(names)}.values())[::-1]  # the first name of each kind
    parts.append(f"files named {', '.join(firsts)} and {len(names) - len(firsts)} more such names")
    return ", ".join(parts)


def ignored_by_rules(paths: Iterable[Path], top: Path, roots: Sequence[Path]) -> set[Path]:
    """Those of ``paths`` (files under the folder ``top``, resolved) that a walk of ``top`` leaves
    out by its ``.gitignore`` / ``.rerankignore`` rules: the file, or a folder on its way, matches."""
    rules = _IgnoreRules(top, roots)
    out: set[Path] = set()
    for p in paths:
        if top not in p.parents:
            continue
        between = [q for q in reversed(p.parents) if top in q.parents]  # the folders below top, down to p's
        for q in between:
            rules.enter(q.parent)
            if rules.ignored(q, True):
                out.add(p)
                break
        else:
            rules.enter(p.parent)
            if rules.ignored(p, False):
                out.add(p)
    return out


class _IgnoreRules:
    """The ``.gitignore`` / ``.rerankignore`` patterns that apply inside a folder walk."""

    def __init__(self, top: Path, roots: Sequence[Path]) -> None:
        self.specs: dict[Path, Any] = {}  # folder -> compiled patterns of its ignore files
        self.top = top
        real_roots = [Path(r).expanduser().resolve() for r in roots]
        self.roots = real_roots
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
            try:  # an ignore file may be a symlink, to a regular file inside the roots
                real = Path(os.path.realpath(folder / name))
                if not _inside(real, self.roots):
                    continue
                data = _read_regular(real, MAX_IGNORE_FILE_BYTES, self.roots)
            except (OSError, RerankMCPError):
                continue  # absent, not a regular file, or too large: no patterns from it
            lines += data.decode("utf-8", errors="replace").splitlines()
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
        raise InvalidInput(f"{path} looks like a binary file (it contains NUL bytes): not read; what is read is "
                           f"{readable_types()}, and any UTF-8 text file named in paths")
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


def _pdf_to_text(data: bytes, path: Path, max_chars: int | None = None) -> tuple[str, str | None]:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages: list[str] = []
        total = 0
        for page in reader.pages:  # text extracted page by page, up to max_chars in all
            pages.append((page.extract_text() or "").strip())
            total += len(pages[-1])
            if max_chars is not None and total > max_chars:
                raise LimitExceeded(f"{path}: the PDF's text is over {max_chars} characters (after page {len(pages)}), "
                                    "over the limit for one document (RERANK_MCP_MAX_REQUEST_BYTES); it is not read")
        title = reader.metadata.title if reader.metadata and reader.metadata.title else None
    except LimitReachedError as exc:
        raise LimitExceeded(
            f"{path}: the PDF is over a limit of its reader (pypdf limits each stream to "
            f"{_pdf_stream_limit()} bytes inflated, and the objects, pages and work per file; pypdf says: {exc}); "
            "it is not read") from None
    except RecursionError:
        raise InvalidInput(f"{path} is not a readable PDF: its objects nest too deeply") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError) as exc:
        raise InvalidInput(f"{path} is not a readable PDF: {type(exc).__name__}: {exc}") from None
    return "\n\n".join(p for p in pages if p), title


def _pdf_stream_limit() -> int | str:
    try:
        import pypdf

        return pypdf.get_configuration().zlib_maximum_output_length
    except Exception:  # older pypdf: the module constant
        from pypdf import filters

        return getattr(filters, "ZLIB_MAX_OUTPUT_LENGTH", "a fixed number of")


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_OFFICE_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"


class _CappedReader(io.RawIOBase):
    """A zip member's inflated bytes, up to ``limit`` in all (:class:`LimitExceeded` past it)."""

    def __init__(self, member: Any, limit: int, path: Path, name: str) -> None:
        self.member, self.limit, self.path, self.name, self.n = member, limit, path, name, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self.member.read(min(len(b), 1 << 16))
        self.n += len(chunk)
        if self.n > self.limit:
            raise LimitExceeded(f"{self.path}: {self.name} inflates to more than {self.limit} bytes, over the "
                                f"limit for .docx files; it is not read")
        b[: len(chunk)] = chunk
        return len(chunk)


def _docx_part(zf: Any, name: str, path: Path, budget: list[int]) -> Any:
    """A member of the .docx zip as a capped stream; its declared size counts against ``budget``."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise InvalidInput(f"{path} is not a readable .docx file: it has no {name}") from None
    if info.file_size > budget[0]:
        raise LimitExceeded(f"{path}: {name} inflates to {info.file_size} bytes, over the limit of "
                            f"{DOCX_MAX_INFLATED_BYTES} inflated bytes for .docx files; it is not read")
    budget[0] -= info.file_size
    return io.BufferedReader(_CappedReader(zf.open(info), info.file_size, path, name))


def _iterparse(stream: Any, path: Path, counter: list[int] | None) -> Any:
    """Each element of an XML stream once it is complete, no entities resolved, no network; with a
    ``counter``, at most :data:`DOCX_MAX_ELEMENTS` elements over the whole file."""
    from lxml import etree

    try:
        for _, el in etree.iterparse(stream, events=("end",), resolve_entities=False, no_network=True,
                                     load_dtd=False, huge_tree=False, remove_comments=True):
            if counter is not None:
                counter[0] += 1
                if counter[0] > DOCX_MAX_ELEMENTS:
                    raise LimitExceeded(f"{path} holds more than {DOCX_MAX_ELEMENTS} XML elements, over the limit "
                                        "for .docx files; it is not read")
            yield el
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"{path} is not a readable .docx file: {exc}") from None


def _run_text(el: Any) -> str:
    """The text of a paragraph's runs (text, tabs, breaks), as python-docx's ``Paragraph.text``."""
    out = []
    for node in el.iter(f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr"):
        tag = node.tag
        if tag == f"{_W}t":
            out.append(node.text or "")
        elif tag == f"{_W}tab":
            out.append("\t")
        else:
            out.append("\n")
    return "".join(out)


def _docx_to_text(data: bytes, path: Path) -> tuple[str, str | None]:
    """Paragraphs (and table cells, row by row) of a Word document, in document order, read as a
    stream with limits on inflated bytes and XML elements."""
    import zipfile
    import zlib

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidInput(f"{path} is not a readable .docx file: {exc}") from None
    budget = [DOCX_MAX_INFLATED_BYTES]
    counter = [0]
    try:
        with zf:
            main = "word/document.xml"
            if "_rels/.rels" in zf.namelist():
                for el in _iterparse(_docx_part(zf, "_rels/.rels", path, budget), path, counter):
                    if el.tag == f"{_REL}Relationship" and el.get("Type") == _OFFICE_DOC and el.get("Target"):
                        main = el.get("Target").lstrip("/")
            blocks: list[str] = []
            body, para, table = f"{_W}body", f"{_W}p", f"{_W}tbl"
            n = counter[0]
            for el in _iterparse(_docx_part(zf, main, path, budget), path, None):
                n += 1  # counted here, in the tight loop: a bomb is millions of elements
                if n > DOCX_MAX_ELEMENTS:
                    raise LimitExceeded(f"{path} holds more than {DOCX_MAX_ELEMENTS} XML elements, over the limit "
                                        "for .docx files; it is not read")
                tag = el.tag
                if tag != para and tag != table:
                    continue
                parent = el.getparent()
                if parent is None or parent.tag != body:
                    continue  # only the body's own children are taken, each once it is complete
                if len(el):
                    if tag == para:
                        t = _run_text(el).strip()
                        if t:
                            blocks.append(t)
                    else:
                        for row in el.iter(f"{_W}tr"):
                            cells = ["\n".join(_run_text(p) for p in tc.iter(para)).strip() for tc in row.iter(f"{_W}tc")]
                            if any(cells):
                                blocks.append(" | ".join(dict.fromkeys(c for c in cells if c)))
                    el.clear()  # keep memory flat: drop what was read so far
                while el.getprevious() is not None:
                    del parent[0]
            counter[0] = n
            title = None
            if "docProps/core.xml" in zf.namelist():
                for el in _iterparse(_docx_part(zf, "docProps/core.xml", path, budget), path, counter):
                    if el.tag == "{http://purl.org/dc/elements/1.1/}title":
                        title = (el.text or "").strip() or None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, RuntimeError,
            zlib.error) as exc:  # RuntimeError: an encrypted member; zlib.error: damaged deflate data
        raise InvalidInput(f"{path} is not a readable .docx file: {exc}") from None
    return "\n\n".join(blocks), title


def _inside(real: Path, roots: Sequence[Path]) -> bool:
    """``real`` is one of ``roots`` or lies below one (both resolved)."""
    return any(real == r or r in real.parents for r in roots)


def _opened_path(fd: int, path: Path, st: os.stat_result) -> Path | None:
    """The real path of the file open on ``fd``: from /proc, else the path's real path when it
    still leads to the same file; None when it does not."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
        return Path(link[: -len(" (deleted)")] if link.endswith(" (deleted)") else link)
    except OSError:
        real = Path(os.path.realpath(path))
        try:
            now = os.stat(real)
        except OSError:
            return None
        return real if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) else None


def _read_regular(path: Path, max_bytes: int, roots: Sequence[Path] | None = None) -> bytes:
    """The bytes of the regular file at ``path``: opened without following a final symlink and
    without blocking, checked to be a regular file (and, given ``roots``, to lie inside them once
    open), read to at most ``max_bytes`` (:class:`LimitExceeded` past it, whatever size the file
    claims). :class:`InvalidInput` names the file and the reason when it cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InvalidInput(f"{_show(path)} cannot be read: {_os_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{_show(path)} is {_file_type(st.st_mode)}, not a regular file: only regular files are read")
        if roots is not None:
            real_roots = [Path(r).expanduser().resolve() for r in roots]
            opened = _opened_path(fd, path, st)
            if opened is None or not _inside(opened, real_roots):
                raise PathNotAllowed(f"{_show(path)} led outside the allowed roots when it was opened (a folder on its "
                                     "path was replaced by a symlink after the check?); it is not read")
        if st.st_size > max_bytes:
            raise LimitExceeded(f"{_show(path)} is {st.st_size} bytes, over the file size limit of {max_bytes} "
                                "(RERANK_MCP_MAX_FILE_BYTES)")
        os.set_blocking(fd, True)  # a regular file: reads never wait on a writer
        parts: list[bytes] = []
        n = 0
        while True:
            try:
                chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - n))
            except OSError as exc:
                raise InvalidInput(f"{_show(path)} cannot be read: {_os_reason(exc)}") from None
            if not chunk:
                break
            parts.append(chunk)
            n += len(chunk)
            if n > max_bytes:
                raise LimitExceeded(f"{_show(path)} holds more than {max_bytes} bytes (read so far; its size said "
                                    f"{st.st_size}), over the file size limit (RERANK_MCP_MAX_FILE_BYTES)")
        return b"".join(parts)
    finally:
        os.close(fd)


def kind_of(name: str | os.PathLike) -> tuple[str, str | None]:
    """The ``type`` (and a code file's ``language``) a file's metadata gets, from its name
    (:func:`file_type`); a file of another type, named in paths, is read as plain text."""
    return file_type(name) or ("text", None)


def load_file(path: Path, max_bytes: int, roots: Sequence[Path] | None = None,
              max_chars: int | None = None) -> LoadedFile:
    """The text of the file at ``path`` (see the module docstring for what is checked); a PDF's
    extraction stops once its text passes ``max_chars``."""
    data = _read_regular(path, max_bytes, roots)
    kind, language = kind_of(path)
    title = None
    if kind == "pdf":
        text, title = _pdf_to_text(data, path, max_chars)
    elif kind == "docx":
        text, title = _docx_to_text(data, path)
    else:
        text = _decode_text(data, path)
        if kind == "html":
            text, title = _html_to_text(text)
    if not text.strip():
        what = {"pdf": "no text could be extracted from its pages (scanned images?)",
                "docx": "its body has no paragraph or table text", "html": "its body has no text"}
        raise NoText(f"{path} holds no text ({what.get(kind, 'it is empty or only whitespace')})")
    return LoadedFile(path=path, text=text, title=title, kind=kind, language=language)
