"""The BEIR loader: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Every reader of BEIR files in the project goes through this module (eval, eval-budget, bench
and the tests). :func:`load_beir` reads a whole dataset, checked: every judged query and
document must exist, and errors name the file and line. The record readers
(:func:`read_corpus`, :func:`read_queries`, :func:`read_qrels`) stream one file each, with the
same checks per line, for callers that want the raw fields or only the first records.

A document's text is its title, a blank line and its text (:func:`doc_text`); documents with
neither are kept apart (``empty_ids``) because ingest refuses empty text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_mcp.errors import InvalidInput

LAYOUT = "a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/<split>.tsv"


@dataclass(frozen=True)
class BeirDocument:
    id: str
    title: str
    text: str

    @property
    def body(self) -> str:
        """The text ingested for the document (:func:`doc_text`)."""
        return doc_text(self.title, self.text)


@dataclass
class BeirDataset:
    name: str
    path: str
    split: str
    documents: dict[str, str]  # doc id -> text to ingest (title + blank line + text), corpus order
    queries: dict[str, str]  # only the judged queries of the split, in qrels order
    qrels: dict[str, dict[str, int]]
    skipped_empty: int = 0
    empty_ids: set[str] = field(default_factory=set)

    @property
    def judgments(self) -> int:
        return sum(len(v) for v in self.qrels.values())


def doc_text(title: str | None, text: str | None) -> str:
    """The text ingested for a BEIR document: title, blank line, text (either alone if the other is empty)."""
    t = (title or "").strip()
    x = (text or "").strip()
    if t and x:
        return f"{t}\n\n{x}"
    return t or x


def _read_jsonl(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise InvalidInput(f"{path}: file not found ({LAYOUT})")
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path} line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise InvalidInput(f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
            missing = [f for f in required if f not in obj]
            if missing:
                raise InvalidInput(f"{path} line {n}: missing field(s) {', '.join(missing)}")
            for f in required:
                if f == "_id" and not isinstance(obj[f], (str, int)) or f != "_id" and not isinstance(obj[f], str):
                    raise InvalidInput(f"{path} line {n}: field {f!r} must be a string")
            yield n, obj


def read_corpus(path: str | Path) -> Iterator[BeirDocument]:
    """The documents of ``corpus.jsonl`` (the file, or the dataset folder holding it) in file
    order, empty ones included; duplicate ids are refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    seen: set[str] = set()
    for n, obj in _read_jsonl(path, ("_id",)):
        did = str(obj["_id"])
        if did in seen:
            raise InvalidInput(f"{path} line {n}: duplicate document id {did!r}")
        seen.add(did)
        if "title" not in obj and "text" not in obj:
            raise InvalidInput(f"{path} line {n}: missing field(s) title, text")
        title, text = obj.get("title"), obj.get("text")
        for f, v in (("title", title), ("text", text)):
            if v is not None and not isinstance(v, str):
                raise InvalidInput(f"{path} line {n}: field {f!r} must be a string")
        yield BeirDocument(did, title or "", text or "")


def read_queries(path: str | Path) -> Iterator[tuple[str, str]]:
    """(query id, text) of ``queries.jsonl`` (the file, or the dataset folder), in file order."""
    path = Path(path)
    if path.is_dir():
        path = path / "queries.jsonl"
    for _, obj in _read_jsonl(path, ("_id", "text")):
        yield str(obj["_id"]), obj["text"]


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def read_qrels(path: str | Path, queries: Container[str] | None = None,
               documents: Container[str] | None = None) -> dict[str, dict[str, int]]:
    """{query id: {document id: grade}} from a qrels file (BEIR's three columns with a header, or
    TREC's four). With ``queries`` / ``documents``, a line naming one not in them is refused."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: file not found ({LAYOUT})")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if n == 1 and parts and not _is_int(parts[-1]):
                continue  # header: query-id corpus-id score
            if len(parts) == 4:  # TREC layout: qid iter docid grade
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise InvalidInput(f"{path} line {n}: expected 3 tab-separated columns (query-id, corpus-id, score)")
            qid, did, grade = parts
            if not _is_int(grade):
                raise InvalidInput(f"{path} line {n}: score {grade!r} is not an integer")
            if queries is not None and qid not in queries:
                raise InvalidInput(f"{path} line {n}: query {qid!r} is not in queries.jsonl")
            if documents is not None and did not in documents:
                raise InvalidInput(f"{path} line {n}: document {did!r} is not in corpus.jsonl")
            qrels.setdefault(qid, {})[did] = int(grade)
    return qrels


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder; keeps only queries judged in ``qrels/<split>.tsv``."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInput(f"{root}: not a folder (expected a BEIR dataset folder)")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", split):
        raise InvalidInput(f"invalid split name {split!r}")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise InvalidInput(
            f"{qrels_path}: file not found" + (f" (splits here: {', '.join(have)})" if have else "")
        )
    for p in (root / "corpus.jsonl", root / "queries.jsonl"):
        if not p.is_file():
            raise InvalidInput(f"{p}: file not found ({LAYOUT})")

    documents: dict[str, str] = {}
    empty: set[str] = set()
    for d in read_corpus(root / "corpus.jsonl"):
        body = d.body
        if body:
            documents[d.id] = body
        else:
            empty.add(d.id)
    all_queries = dict(read_queries(root / "queries.jsonl"))
    qrels = read_qrels(qrels_path, all_queries, _Either(documents, empty))
    if not qrels:
        raise InvalidInput(f"{qrels_path}: no judgments")
    queries = {q: all_queries[q] for q in qrels}
    return BeirDataset(root.name, str(root), split, documents, queries, qrels, len(empty), empty)


class _Either:
    def __init__(self, *parts: Container[str]) -> None:
        self.parts = parts

    def __contains__(self, item: object) -> bool:
        return any(item in p for p in self.parts)


def slice_dataset(ds: BeirDataset, max_docs: int | None = None, max_queries: int | None = None) -> BeirDataset:
    """The first ``max_queries`` judged queries, and at most ``max_docs`` documents that always
    include every judged document of those queries (then corpus order fills the rest)."""
    qids = list(ds.qrels)
    if max_queries is not None:
        if max_queries <= 0:
            raise InvalidInput(f"max_queries must be positive, got {max_queries}")
        qids = qids[:max_queries]
    qrels = {q: ds.qrels[q] for q in qids}
    docs = ds.documents
    if max_docs is not None:
        if max_docs <= 0:
            raise InvalidInput(f"max_docs must be positive, got {max_docs}")
        judged = [d for q in qids for d in qrels[q] if d in ds.documents]
        keep = dict.fromkeys(judged)
        for d in ds.documents:
            if len(keep) >= max_docs:
                break
            keep.setdefault(d, None)
        docs = {d: ds.documents[d] for d in ds.documents if d in keep}
    return BeirDataset(ds.name, ds.path, ds.split, docs, {q: ds.queries[q] for q in qids}, qrels,
                       ds.skipped_empty, ds.empty_ids)


def add_dataset_arguments(s, what: str) -> None:
    """The arguments ``eval`` and ``eval-budget`` share: the BEIR folders and how they are sliced,
    ingested and chunked. ``what``: what the verb measures, for the --collection help."""
    s.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="BEIR dataset folder(s)")
    s.add_argument("--split", default="test", help="qrels split to evaluate (qrels/<split>.tsv), default test")
    s.add_argument("--collection", help=f"collection to ingest into and keep for {what} (one per dataset: "
                   "NAME-<dataset> when several datasets are given); default: a throwaway collection dropped at the end")
    s.add_argument("--max-docs", type=int, help="keep at most N documents (always all judged documents of the kept queries)")
    s.add_argument("--max-queries", type=int, help="keep the first N judged queries")
    s.add_argument("--chunk-size", type=int, help="chunk size in tokens (default: the chunk_size setting)")
    s.add_argument("--chunk-overlap", type=int, help="chunk overlap in tokens (default: the chunk_overlap setting)")
    s.add_argument("--analyzer", help="BM25 analyzer of the collections made (default: the analyzer setting, auto)")
