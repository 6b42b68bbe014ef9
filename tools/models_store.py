"""Models on this machine: pull, list and remove them, and download them in the background on
first use.

Two kinds of model:

- ``hf``: a Hugging Face repository (cross-encoders such as
  ``cross-encoder/ms-marco-MiniLM-L-6-v2``, embedding models such as ``BAAI/bge-small-en-v1.5``),
  fetched with ``huggingface_hub.snapshot_download`` into the Hugging Face cache. That honours
  ``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and the
  usual proxy variables. Each file is downloaded to a temporary name and moved into place only
  when its size checks out (huggingface_hub's own handling); a snapshot counts as present only
  when every file of its listing is there, so a pull cut short is never loaded.
- ``flashrank``: one of FlashRank's models, ``<base_url>/<name>.zip`` unzipped into
  ``<cache_dir>/<name>/`` (FlashRank's own layout). The archive is downloaded to a hidden
  ``.<name>.zip.part`` (resumed with an HTTP Range request after a dropped connection, and by
  the next pull after an interrupted one), checked (every member's CRC, and the model file
  inside), extracted into a temporary folder and renamed into place in one step.

A pull holds a file lock per model (beside the model's storage), so two pulls of one model at
once, in one process or several, download it once and never interleave. Nothing here imports a
model library; huggingface_hub and httpx are imported when a download starts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import DependencyMissing, InvalidInput, NotFound, UpstreamError
from rerank_mcp.index.contract import Progress
from rerank_mcp.index.retry import Backoff, GaveUp, Retry, with_retries
from rerank_mcp.tools.rerank.defaults import FLASHRANK_BASE_URL

log = logging.getLogger(__name__)

# FlashRank model name -> the model file its archive must hold (flashrank.Config.model_file_map).
FLASHRANK_MODELS = {
    "ms-marco-TinyBERT-L-2-v2": "flashrank-TinyBERT-L-2-v2.onnx",
    "ms-marco-MiniLM-L-12-v2": "flashrank-MiniLM-L-12-v2_Q.onnx",
    "ms-marco-MultiBERT-L-12": "flashrank-MultiBERT-L12_Q.onnx",
    "rank-T5-flan": "flashrank-rankt5_Q.onnx",
    "ce-esci-MiniLM-L12-v2": "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
    "rank_zephyr_7b_v1_full": "rank_zephyr_7b_v1_full.Q4_K_M.gguf",
    "miniReranker_arabic_v1": "miniReranker_arabic_v1.onnx",
}
# Files of a Hugging Face repository a sentence-transformers / transformers model on the CPU
# never reads: other frameworks' weights and exports.
HF_IGNORE = ["onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot", "*.tflite",
             "*.mlmodel", "*.gguf", "*.ckpt", "*.tar.gz"]
HF_TORCH_DUPES = ["*.bin", "*.pt", "*.pth"]  # left out when the repository has safetensors weights
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
              "pytorch_model.bin.index.json")
HTTP_ATTEMPTS = 5
FAILED_RETRY_S = 60.0  # a failed background download is tried again after this long



def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, now or when huggingface_hub was imported."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


@dataclass(frozen=True)
class ModelRef:
    """A model by name and kind: ``hf`` (a Hugging Face repository) or ``flashrank``."""

    name: str
    kind: Literal["hf", "flashrank"]

    @property
    def command(self) -> str:
        return f"rerank-mcp models pull {self.name}" + (" --kind hf" if self.kind == "hf" and self.name in FLASHRANK_MODELS else "")


def model_ref(name: str, kind: str | None = None) -> ModelRef:
    """``name`` as a :class:`ModelRef`: FlashRank's model names are ``flashrank``, names of the
    form ``owner/name`` are ``hf``; ``kind`` decides when given."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a model name is empty")
    name = name.strip()
    if kind not in (None, "hf", "flashrank"):
        raise InvalidInput(f"unknown model kind {kind!r}: use hf or flashrank")
    if kind is None:
        if name in FLASHRANK_MODELS:
            kind = "flashrank"
        elif re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", name):
            kind = "hf"
        else:
            raise InvalidInput(
                f"cannot tell what {name!r} is: give a Hugging Face repository as owner/name (e.g. "
                f"cross-encoder/ms-marco-MiniLM-L-6-v2) or a FlashRank model ({', '.join(FLASHRANK_MODELS)})"
            )
    if kind == "flashrank" and name not in FLASHRANK_MODELS:
        raise InvalidInput(f"unknown FlashRank model {name!r}; known: {', '.join(FLASHRANK_MODELS)}")
    if kind == "hf" and not re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", name):
        raise InvalidInput(f"{name!r} is not a Hugging Face repository name (owner/name)")
    return ModelRef(name, kind)  # type: ignore[arg-type]


class ModelInfo(BaseModel):
    """One model as ``models list`` reports it."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str = Field(description="'hf' (Hugging Face repository), 'flashrank', or 'package' (ships in a Python package)")
    state: str = Field(description="'present', 'missing', 'downloading' or 'failed'")
    size_bytes: int | None = None
    location: str | None = None
    used_by: list[str] = Field(default_factory=list, description="the rerankers and settings that use it")
    done_bytes: int | None = None
    total_bytes: int | None = None
    error: str | None = None
    command: str | None = Field(None, description="how to fetch it, when it is not present")
    languages: str | None = Field(None, description="the languages the model covers: 'en' (English only), "
                                  "'zh,en' (Chinese and English), 'multilingual'; null when unknown")

    def model_post_init(self, _context: Any) -> None:
        if self.languages is None:
            from rerank_mcp.index.model_names import model_languages

            object.__setattr__(self, "languages", model_languages(self.name))


class _Download:
    """The progress of one download (shared between the downloading thread and readers)."""

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.state = "downloading"
        self.done = 0
        self.total: int | None = None
        self.error: str | None = None
        self.finished_at: float | None = None
        self.thread: threading.Thread | None = None

    def progress(self, done: float, total: float | None, _message: str = "") -> None:
        self.done = max(0, int(done))
        if total:
            self.total = int(total)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name)


def _folder_size(path: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for p in path.rglob("*"):
        try:
            st = p.stat()  # follows the snapshot's symlinks to their blobs
        except OSError:
            continue
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


class _ShortRead(Exception):
    pass


def _byte_bar(on_bytes: Callable[[int], None]) -> type:
    """A stand-in for tqdm that huggingface_hub's snapshot_download drives: byte updates of its
    aggregate bar go to ``on_bytes``; everything else is a no-op. (Not a tqdm subclass, so
    HF_HUB_DISABLE_PROGRESS_BARS cannot switch the counting off.)"""

    class Bar:
        def __init__(self, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
            self.iterable = iterable
            self.total = kwargs.get("total")
            self.n = kwargs.get("initial") or 0
            self.counts = str(kwargs.get("desc", "")).startswith("Reconstruct")
            self.format_dict: dict[str, Any] = {}

        def __iter__(self):
            return iter(self.iterable or [])

        def __enter__(self):
            return self

        def __exit__(self, *exc: Any) -> bool:
            return False

        def update(self, n: Any = 1) -> None:
            n = int(n or 0)
            self.n += n
            if self.counts:
                on_bytes(n)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    return Bar


class ModelStore:
    """Where models live, and the downloads in progress.

    ``hf_cache_dir`` / ``hf_endpoint`` default to what huggingface_hub uses (the environment,
    read when the store is made); ``downloads`` False refuses background downloads (an explicit
    :meth:`pull` still runs unless the hub is offline)."""

    def __init__(
        self,
        flashrank_dir: str | Path,
        flashrank_base_url: str | None = None,
        hf_cache_dir: str | Path | None = None,
        hf_endpoint: str | None = None,
        downloads: bool = True,
        timeout_s: float = 60.0,
        off_reason: str | None = None,
    ) -> None:
        self.flashrank_dir = Path(flashrank_dir).expanduser()
        self.flashrank_base_url = (flashrank_base_url or FLASHRANK_BASE_URL).rstrip("/")
        self.hf_cache_dir = str(Path(hf_cache_dir).expanduser()) if hf_cache_dir else _env_hf_cache()
        self.hf_endpoint = (hf_endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
        self.downloads = bool(downloads)
        self.timeout_s = float(timeout_s)
        # why downloads on first use are off, in words naming the setting (for messages)
        self._off_reason = off_reason
        self._downloads: dict[ModelRef, _Download] = {}
        self._present: set[ModelRef] = set()
        self._guard = threading.Lock()
        self._ref_locks: dict[ModelRef, threading.Lock] = {}

    def off_reason(self) -> str | None:
        """Why a missing model is not downloaded on first use here (naming the setting), or None
        when it is."""
        if hub_offline():
            return "HF_HUB_OFFLINE is set"
        if not self.downloads:
            return self._off_reason or "RERANK_MCP_DOWNLOAD_MODELS is false"
        return None

    def retry_in(self, ref: ModelRef) -> float | None:
        """Seconds until a failed background download of ``ref`` is tried again (0: on the next
        call that needs it); None when none failed or downloads are off."""
        d = self._downloads.get(ref)
        if d is None or d.state != "failed" or self.off_reason() is not None:
            return None
        return max(0.0, FAILED_RETRY_S - (time.time() - (d.finished_at or 0.0)))

    # ------------------------------------------------------------------ where things are
    def hf_cache(self) -> Path:
        if self.hf_cache_dir:
            return Path(self.hf_cache_dir)
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)

    def _hf_repo_dir(self, ref: ModelRef) -> Path:
        return self.hf_cache() / ("models--" + ref.name.replace("/", "--"))

    def _lock_path(self, ref: ModelRef) -> Path:
        base = self.flashrank_dir if ref.kind == "flashrank" else self.hf_cache()
        return base / ".locks" / "rerank-mcp" / f"{_safe(ref.name)}.lock"

    def _file_lock(self, ref: ModelRef):
        from filelock import FileLock

        path = self._lock_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def _thread_lock(self, ref: ModelRef) -> threading.Lock:
        with self._guard:
            return self._ref_locks.setdefault(ref, threading.Lock())

    def path(self, ref: ModelRef) -> Path | None:
        """The folder of a complete copy of ``ref`` on this machine, or None."""
        if ref.kind == "flashrank":
            folder = self.flashrank_dir / ref.name
            return folder if (folder / FLASHRANK_MODELS[ref.name]).is_file() else None
        return self._hf_snapshot(ref)

    def _hf_snapshot(self, ref: ModelRef) -> Path | None:
        repo = self._hf_repo_dir(ref)
        if not (repo / "snapshots").is_dir():
            return None
        try:
            from huggingface_hub import snapshot_download

            # Offline: the cached snapshot, refused as incomplete when its cached file listing
            # names files that are not there (a pull that was cut short).
            folder = Path(snapshot_download(ref.name, cache_dir=str(self.hf_cache()), local_files_only=True,
                                            ignore_patterns=HF_IGNORE + HF_TORCH_DUPES))
        except Exception:
            return None
        if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
            return None
        if not any((folder / w).is_file() for w in HF_WEIGHTS) and not any(folder.glob("*.safetensors")):
            return None
        return folder

    def present(self, ref: ModelRef) -> bool:
        if ref in self._present:
            return True
        if self.path(ref) is not None:
            with self._guard:
                self._present.add(ref)
            return True
        return False

    def size(self, ref: ModelRef) -> int | None:
        p = self.path(ref)
        return _folder_size(p) if p is not None else None

    # ------------------------------------------------------------------ pull / remove
    def pull(self, ref: ModelRef, progress: Progress | None = None) -> Path:
        """Download ``ref`` unless present; returns its folder. Raises with a clear message
        (and leaves nothing that looks present) when the download fails."""
        if self.present(ref):
            return self.path(ref)  # type: ignore[return-value]
        if hub_offline():
            raise DependencyMissing(
                f"cannot download {ref.name!r}: downloads are off (HF_HUB_OFFLINE is set); unset it, or copy the "
                f"model onto this machine" + (f" ({self.flashrank_dir / ref.name})" if ref.kind == "flashrank"
                                              else f" (the Hugging Face cache, {self.hf_cache()})")
            )
        with self._thread_lock(ref), self._file_lock(ref):
            if self.path(ref) is not None:  # another pull finished while this one waited
                return self.path(ref)  # type: ignore[return-value]
            self._clean_leftovers(ref)
            if ref.kind == "flashrank":
                folder = self._pull_flashrank(ref, progress)
            else:
                folder = self._pull_hf(ref, progress)
        with self._guard:
            self._present.add(ref)
        log.info("model %s is ready in %s", ref.name, folder)
        return folder

    def _clean_leftovers(self, ref: ModelRef, stale_s: float = 600.0) -> None:
        """Remove what a pull killed part-way left behind (temporary files it never moved into place),
        once nothing has written to them for ``stale_s``; the caller holds the model's lock. The
        FlashRank ``.part`` file stays: the next download resumes it."""
        now = time.time()
        if ref.kind == "flashrank":
            cands = [*self.flashrank_dir.glob(f".{ref.name}.extract-*"), *self.flashrank_dir.glob(f".{ref.name}.old-*")]
        else:
            cands = list((self._hf_repo_dir(ref) / "blobs").glob("*.incomplete"))
        for p in cands:
            try:
                if now - p.stat().st_mtime < stale_s:
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                log.info("removed %s, left by an interrupted download", p.name)
            except OSError:
                pass

    def remove(self, ref: ModelRef) -> bool:
        """Delete ``ref`` (and any partial download of it); True if anything was there."""
        with self._thread_lock(ref), self._file_lock(ref):
            with self._guard:
                self._present.discard(ref)
                self._downloads.pop(ref, None)
            if ref.kind == "flashrank":
                targets = [self.flashrank_dir / ref.name, self.flashrank_dir / f".{ref.name}.zip.part"]
            else:
                targets = [self._hf_repo_dir(ref)]
            found = False
            for t in targets:
                if t.is_dir():
                    shutil.rmtree(t)
                    found = True
                elif t.exists():
                    t.unlink()
                    found = True
            return found

    # ------------------------------------------------------------------ Hugging Face
    def _pull_hf(self, ref: ModelRef, progress: Progress | None) -> Path:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        where = self.hf_endpoint or "the Hugging Face hub"
        common: dict[str, Any] = {"cache_dir": str(self.hf_cache()), "endpoint": self.hf_endpoint}
        try:
            try:  # the file list, sizes and what is cached already, without downloading
                plan = snapshot_download(ref.name, dry_run=True, ignore_patterns=HF_IGNORE, **common)
            except TypeError:  # a huggingface_hub without dry runs: no total known up front
                plan = None
            files = [f.filename for f in plan] if plan is not None else self._hf_files(ref)
            ignore = HF_IGNORE + (HF_TORCH_DUPES if any(f.endswith(".safetensors") for f in files) else [])
            kept = [f for f in plan or [] if not _ignored(f.filename, ignore)]
            total = sum(int(f.file_size or 0) for f in kept) or None
            done = [sum(int(f.file_size or 0) for f in kept if not f.will_download)]
            lock = threading.Lock()

            def on_bytes(n: int) -> None:
                with lock:
                    done[0] += n
                    if progress:
                        progress(done[0], total, ref.name)

            if progress:
                progress(done[0], total, ref.name)
            folder = snapshot_download(ref.name, ignore_patterns=ignore, tqdm_class=_byte_bar(on_bytes),
                                       max_workers=4, **common)
        except Exception as exc:
            # a dry run reports the listing's failure as its cause: look through the chain
            chain, e = [], exc
            while e is not None and len(chain) < 5:
                chain.append(e)
                e = e.__cause__
            for e in chain:
                if isinstance(e, OfflineModeIsEnabled):
                    raise DependencyMissing(f"cannot download {ref.name!r}: HF_HUB_OFFLINE is set") from None
                if isinstance(e, GatedRepoError):
                    raise UpstreamError(f"{ref.name!r} is a gated repository on {where}: accept its terms and set "
                                        f"HF_TOKEN") from None
                if isinstance(e, RepositoryNotFoundError):
                    raise NotFound(f"no model {ref.name!r} on {where} (or it is private: set HF_TOKEN)") from None
                if isinstance(e, RevisionNotFoundError):
                    raise NotFound(f"{ref.name!r} has no such revision on {where}") from None
            cause = chain[-1]
            what = _first_line(cause) if isinstance(cause, HfHubHTTPError) else f"{type(cause).__name__}: {_first_line(cause)}"
            raise UpstreamError(f"downloading {ref.name!r} from {where} failed: {what}") from None
        path = self._hf_snapshot(ref)
        if path is None:
            raise UpstreamError(f"downloaded {ref.name!r} into {folder}, but it is not a complete model "
                                f"(no config.json and weights): is it a model repository?")
        return path

    def _hf_files(self, ref: ModelRef) -> list[str]:
        from huggingface_hub import HfApi

        return list(HfApi(endpoint=self.hf_endpoint).list_repo_files(ref.name))

    # ------------------------------------------------------------------ FlashRank
    def _pull_flashrank(self, ref: ModelRef, progress: Progress | None) -> Path:
        import httpx

        cache = self.flashrank_dir
        cache.mkdir(parents=True, exist_ok=True)
        url = f"{self.flashrank_base_url}/{ref.name}.zip"
        part = cache / f".{ref.name}.zip.part"

        def attempt() -> None:
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with httpx.stream("GET", url, headers=headers, timeout=self.timeout_s, follow_redirects=True) as r:
                    if r.status_code == 416 and have:  # the part file is already whole
                        return
                    if r.status_code == 404:
                        raise NotFound(f"no FlashRank model archive at {url} (HTTP 404)")
                    if r.status_code >= 400:
                        raise UpstreamError(f"downloading {url} failed: HTTP {r.status_code}")
                    if r.status_code != 206:
                        have = 0  # the server sent the whole file
                    length = r.headers.get("content-length")
                    total = have + int(length) if length and length.isdigit() else None
                    with open(part, "ab" if have else "wb") as fh:
                        got = have
                        if progress:
                            progress(got, total, ref.name)
                        for chunk in r.iter_bytes(1 << 16):
                            fh.write(chunk)
                            got += len(chunk)
                            if progress:
                                progress(got, total, ref.name)
                    if total is not None and got != total:
                        raise _ShortRead(f"connection closed after {got} of {total} bytes")
            except (httpx.TransportError, _ShortRead, OSError) as exc:
                raise Retry(f"{type(exc).__name__}: {exc}") from None

        def said(failed: int, last: str, delay: float | None) -> None:
            if delay is not None:
                log.warning("download of %s interrupted (%s); resuming (attempt %d of %d)", url, last, failed + 1,
                            HTTP_ATTEMPTS)
            else:
                log.warning("download of %s interrupted (%s) on the last of %d attempts", url, last, HTTP_ATTEMPTS)

        try:
            with_retries(attempt, HTTP_ATTEMPTS, Backoff(0.2, 3.0), said)
        except GaveUp as exc:
            raise UpstreamError(
                f"downloading {url} failed after {HTTP_ATTEMPTS} attempts ({exc.reason}); the partial file is kept "
                f"hidden and the next pull resumes it"
            ) from None
        try:
            return self._install_zip(ref, part)
        finally:
            part.unlink(missing_ok=True)

    def _install_zip(self, ref: ModelRef, archive: Path) -> Path:
        cache = self.flashrank_dir
        want = FLASHRANK_MODELS[ref.name]
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise UpstreamError(f"the archive of {ref.name!r} is corrupt (bad CRC in {bad}); it was deleted: pull again")
                names = zf.namelist()
                if not any(n.rstrip("/").split("/")[-1] == want for n in names):
                    raise UpstreamError(f"the archive of {ref.name!r} does not hold {want}; it was deleted")
                tmp = cache / f".{ref.name}.extract-{uuid.uuid4().hex[:8]}"
                tmp.mkdir()
                try:
                    root = tmp.resolve()
                    for n in names:  # no member may land outside the folder
                        if not (root / n).resolve().is_relative_to(root):
                            raise UpstreamError(f"the archive of {ref.name!r} holds an unsafe path {n!r}")
                    zf.extractall(tmp)
                    src = tmp / ref.name if (tmp / ref.name / want).is_file() else tmp
                    if not (src / want).is_file():
                        found = next((p.parent for p in tmp.rglob(want)), None)
                        if found is None:
                            raise UpstreamError(f"the archive of {ref.name!r} does not hold {want}")
                        src = found
                    dest = cache / ref.name
                    if dest.exists():  # a copy without its model file (never loaded): replace it
                        aside = cache / f".{ref.name}.old-{uuid.uuid4().hex[:8]}"
                        dest.rename(aside)
                        shutil.rmtree(aside, ignore_errors=True)
                    src.rename(dest)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except zipfile.BadZipFile as exc:
            raise UpstreamError(f"the archive of {ref.name!r} is corrupt ({exc}); it was deleted: pull again") from None
        return cache / ref.name

    # ------------------------------------------------------------------ background downloads
    def ensure(self, ref: ModelRef) -> Any:
        """Start downloading ``ref`` in the background when it is missing and downloads are
        allowed; returns where it stands (a ``ModelDownload``)."""
        from rerank_mcp.tools.rerank.base import ModelDownload

        with self._guard:
            d = self._downloads.get(ref)
            allowed = self.downloads and not hub_offline()
            retry = d is not None and d.state == "failed" and time.time() - (d.finished_at or 0) > FAILED_RETRY_S
            if allowed and (d is None or retry or d.state == "done"):
                d = _Download(ref)
                self._downloads[ref] = d
                d.thread = threading.Thread(target=self._background, args=(d,), name=f"pull-{_safe(ref.name)}",
                                            daemon=True)
                d.thread.start()
        if d is None or (not allowed and d.state != "downloading"):
            return ModelDownload(model=ref.name, state="missing", command=ref.command)
        return self._view(d)

    def _view(self, d: _Download) -> Any:
        from rerank_mcp.tools.rerank.base import ModelDownload

        pct = round(100.0 * d.done / d.total, 1) if d.total else None
        return ModelDownload(model=d.ref.name, state=d.state, done_bytes=d.done, total_bytes=d.total, percent=pct,
                             error=d.error, command=d.ref.command)

    def state(self, ref: ModelRef) -> Any | None:
        """The background download of ``ref`` (a ``ModelDownload``), if one ran or runs."""
        d = self._downloads.get(ref)
        return self._view(d) if d is not None else None

    def _background(self, d: _Download) -> None:
        try:
            log.info("downloading model %s in the background", d.ref.name)
            self.pull(d.ref, d.progress)
            d.state = "done"
        except Exception as exc:  # reported by list_rerankers and in rerank results
            d.state = "failed"
            d.error = str(exc) if isinstance(exc, (DependencyMissing, UpstreamError, NotFound)) \
                else f"{type(exc).__name__}: {exc}"
            log.warning("background download of %s failed: %s", d.ref.name, d.error)
        finally:
            d.finished_at = time.time()

    def wait(self, ref: ModelRef, timeout: float | None = None) -> bool:
        """Wait for a background download of ``ref`` to end; True when the model is present."""
        d = self._downloads.get(ref)
        if d is not None and d.thread is not None:
            d.thread.join(timeout)
        return self.present(ref)

    # ------------------------------------------------------------------ listing
    def info(self, ref: ModelRef, used_by: Iterable[str] = ()) -> ModelInfo:
        path = self.path(ref)
        d = self._downloads.get(ref)
        if path is not None:
            return ModelInfo(name=ref.name, kind=ref.kind, state="present", size_bytes=_folder_size(path),
                             location=str(path), used_by=list(used_by))
        state, done, total, error = "missing", None, None, None
        if d is not None and d.state in ("downloading", "failed"):
            state, done, total, error = d.state, d.done, d.total, d.error
        location = self.flashrank_dir / ref.name if ref.kind == "flashrank" else self._hf_repo_dir(ref)
        return ModelInfo(name=ref.name, kind=ref.kind, state=state, location=str(location), used_by=list(used_by),
                         done_bytes=done, total_bytes=total, error=error, command=ref.command)

    def found(self) -> list[ModelRef]:
        """Models present in the FlashRank folder and the Hugging Face cache."""
        out: list[ModelRef] = []
        if self.flashrank_dir.is_dir():
            out += [ModelRef(p.name, "flashrank") for p in sorted(self.flashrank_dir.iterdir())
                    if p.name in FLASHRANK_MODELS and p.is_dir()]
        cache = self.hf_cache()
        if cache.is_dir():
            for p in sorted(cache.iterdir()):
                if p.name.startswith("models--") and p.is_dir():
                    owner_name = p.name[len("models--"):].split("--", 1)
                    if len(owner_name) == 2:
                        out.append(ModelRef("/".join(owner_name), "hf"))
        return out

    def list(self, uses: dict[ModelRef, list[str]]) -> list[ModelInfo]:
        """Every model in ``uses`` (what the configuration uses) and every one found here."""
        refs = list(dict.fromkeys([*uses, *self.found()]))
        return [self.info(r, uses.get(r, [])) for r in refs]


def embedding_hub_ref(name: str) -> ModelRef | None:
    """The Hugging Face repository an embedding model setting is downloaded from: None for a local
    folder, the packaged default where its package is installed, or a name that is not a repository
    (those load as they are). The default's aliases name its repository when the package is absent."""
    from rerank_mcp.index.model_names import resolve_path

    name = resolve_path(name)
    if Path(name).expanduser().is_dir():
        return None
    try:
        return model_ref(name, "hf")
    except InvalidInput:
        return None


def embedding_fetcher(store: ModelStore) -> Callable[[str], Path | None]:
    """For the index: the folder of a Hugging Face embedding model, downloaded on first use where
    the store allows downloads (blocking: nothing can be embedded without it; progress is logged
    to stderr). None for a local folder, the packaged default, or a name that is not a Hugging Face
    repository (:func:`embedding_hub_ref`): those load as before. Downloads off and the model
    missing: a clear error naming ``rerank-mcp models pull``. A download that failed is not tried
    again for FAILED_RETRY_S: until then every load answers at once with its error and when it is
    tried again (an unreachable hub would otherwise hold up each call that needs the model)."""
    failed: dict[str, tuple[float, type[Exception], str]] = {}

    def fetch(name: str) -> Path | None:
        ref = embedding_hub_ref(name)
        if ref is None:
            return None
        name = ref.name
        folder = store.path(ref)
        if folder is not None:
            return folder
        why = store.off_reason()
        if why is not None:
            raise DependencyMissing(f"embedding model {name!r} is not on this machine and {why}: fetch it with "
                                    f"`{ref.command}` (or give a local folder)")
        log.info("downloading embedding model %s (first use; `%s` fetches it ahead of time)", name, ref.command)
        last = [0.0]

        def progress(done: float, total: float | None, _message: str) -> None:
            if total and time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                log.info("downloading %s: %.0f%% of %.1f MB", name, 100.0 * done / total, total / 1e6)

        seen = failed.get(name)
        if seen is not None and time.monotonic() - seen[0] < FAILED_RETRY_S:
            left = FAILED_RETRY_S - (time.monotonic() - seen[0])
            raise seen[1](f"{seen[2]}; it is tried again in {left:.0f} s, or fetch it with `{ref.command}`")
        try:
            return store.pull(ref, progress)
        except (UpstreamError, NotFound) as exc:
            failed[name] = (time.monotonic(), type(exc), str(exc))
            raise

    return fetch


def _ignored(filename: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(filename, p) for p in patterns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _env_hf_cache() -> str | None:
    """The Hugging Face cache huggingface_hub would use, from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None
