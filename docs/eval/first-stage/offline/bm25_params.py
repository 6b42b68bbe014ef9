"""BM25's k1 and b, measured offline: every document chunked as ingest chunks it (the embedding model's
tokenizer, 200 tokens, 40 overlap), every chunk analyzed with the analyzer ``auto`` resolves to for the
collection (from its first 200 documents, as ingest), and every query scored against every chunk with BM25
as the embedded engine's tantivy scores it (Lucene's IDF over chunks, lengths quantised to one byte as
tantivy stores them, index/bm25.py), for a grid of (k1, b). A document takes its best chunk's rank among
the top 100 chunks (as eval); nDCG@10 by tools/metrics.py; p: Fisher's paired randomization test
(10,000 permutations, tools.metrics) against (1.2, 0.75), which reproduces the engine's bm25 arm.

Usage:
  python bm25_params.py grid [--k1 K1,...] [--b B,...] [--within N] [--pad SHARE] DATASET_DIR [DATASET_DIR ...]
      bm25 nDCG@10 per (k1, b) and per collection (default grid: K1S x BS below); --within N: each
      setting only reorders the top N chunks of (1.2, 0.75), as rescoring the engine's candidates would;
      --pad SHARE: every chunk lengthened by SHARE x the average length (a filler term; see Corpus.scores)
  python bm25_params.py hybrid DATA_DIR COLLECTION DATASET_DIR K1,B[,PAD] [K1,B[,PAD] ...]
      the default hybrid (z-score fusion of the index's dense arm and a bm25 arm, 100 chunks each)
      with the index's own bm25 arm, with this script's (1.2, 0.75) arm (must agree) and with the
      settings given, each once ranking every chunk and once rescoring the (1.2, 0.75) top 100 (what
      the engine could do over tantivy's candidates); DATA_DIR holds COLLECTION ingested by eval
      from DATASET_DIR
The analyzed chunks are cached per dataset in the temporary folder (``BM25_PARAMS_CACHE`` to move it).
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.index import analyzers
from rerank_mcp.index.bm25 import fieldnorm
from rerank_mcp.index.chunking import CHUNK_OVERLAP, CHUNK_SIZE, chunk_document
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

DEPTH = 100  # chunks per query, as eval's k and search's arm depth
K1S = (0.6, 0.9, 1.2, 1.5, 2.0, 2.5, 3.0)
BS = (0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)
BASE = (1.2, 0.75)
CACHE = Path(os.environ.get("BM25_PARAMS_CACHE", tempfile.gettempdir()))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def token_counter():
    """The default embedding model's tokenizer, as ingest counts chunk tokens (no special tokens)."""
    from rerank_mcp.index.embedding import model_folder
    from rerank_mcp.index.onnx_embed import WordPieces
    from rerank_mcp.server.settings import Settings

    tok = WordPieces(model_folder(Settings().embedding_model), 256)
    return lambda texts: [len(ids) for ids in tok.ids(list(texts), special=False)]


class Corpus:
    """A dataset's chunks as a term-frequency matrix, plus what BM25 needs of them."""

    def __init__(self, dspath: str) -> None:
        self.ds = load_beir(dspath)
        cache = CACHE / f"bm25-params-{self.ds.name}-{CHUNK_SIZE}-{CHUNK_OVERLAP}.pkl"
        if cache.exists():
            with cache.open("rb") as fh:
                self.analyzer_name, self.keys, tokens = pickle.load(fh)
        else:
            t = time.perf_counter()
            docs = list(self.ds.documents.items())
            # ingest resolves `auto` from the first batch's first 200 texts
            self.analyzer_name = analyzers.resolve("auto", [x for _, x in docs[:200]])
            an = analyzers.get_analyzer(self.analyzer_name)
            count = token_counter()
            self.keys, tokens = [], []
            for did, text in docs:
                for o, c in enumerate(chunk_document(text, CHUNK_SIZE, CHUNK_OVERLAP, count)):
                    self.keys.append((did, o))
                    tokens.append(an.tokenize(c.text))
            with cache.open("wb") as fh:
                pickle.dump((self.analyzer_name, self.keys, tokens), fh)
            log(f"{self.ds.name}: {len(self.keys)} chunks analyzed in {time.perf_counter() - t:.0f} s")
        self.analyzer = analyzers.get_analyzer(self.analyzer_name)
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for i, toks in enumerate(tokens):
            tf: dict[int, int] = {}
            for w in toks:
                j = vocab.setdefault(w, len(vocab))
                tf[j] = tf.get(j, 0) + 1
            rows.extend([i] * len(tf))
            cols.extend(tf)
            vals.extend(tf.values())
        self.vocab = vocab
        self.n = len(tokens)
        self.tf = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(self.n, len(vocab)))
        self.tf.sort_indices()
        self.length = np.asarray([len(t) for t in tokens], dtype=np.int64)
        self.avgdl = float(self.length.mean())  # tantivy: total tokens / documents, exact lengths
        self.norm_len = np.asarray([fieldnorm(int(x)) for x in self.length], dtype=np.float64)
        df = np.bincount(self.tf.indices, minlength=len(vocab)).astype(np.float64)
        self.idf = np.log(1.0 + (self.n - df + 0.5) / (df + 0.5))  # Lucene's, as tantivy
        self.doc_of = [d for d, _ in self.keys]
        self.qids = list(self.ds.queries)
        self.qterms = []
        for q in self.qids:
            terms = dict.fromkeys(self.analyzer.tokenize_query(self.ds.queries[q]))
            self.qterms.append([vocab[t] for t in terms if t in vocab])
        qr, qc, qv = [], [], []
        for i, ts in enumerate(self.qterms):
            qr.extend([i] * len(ts))
            qc.extend(ts)
            qv.extend(self.idf[ts])
        # query-term matrix: each distinct analyzed term once, weighted by its IDF
        self.qmat = sp.csr_matrix((np.asarray(qv, np.float64), (qr, qc)), shape=(len(self.qids), len(vocab)))

    def stats(self) -> dict[str, float]:
        return {"chunks": self.n, "docs": len(self.ds.documents), "avgdl": self.avgdl,
                "median_len": float(np.median(self.length)), "queries": len(self.qids),
                "query_terms": float(np.mean([len(t) for t in self.qterms]))}

    def scores(self, k1: float, b: float, pad: float = 0.0):
        """BM25 scores, queries x chunks (sparse: only chunks holding a query term), in f32 as tantivy's.
        ``pad``: every chunk indexed with ``round(pad * avgdl)`` more tokens (of a term no query has), which
        with b = 0.75 acts as b = 0.75 * avgdl / (avgdl + P), up to the one-byte lengths."""
        tf = self.tf.copy()
        n_pad = round(pad * self.avgdl)
        if n_pad:
            lens = np.asarray([fieldnorm(int(x) + n_pad) for x in self.length], dtype=np.float64)
            norm = k1 * (1.0 - b + b * lens / (self.avgdl + n_pad))
        else:
            norm = k1 * (1.0 - b + b * self.norm_len / self.avgdl)
        row_norm = np.repeat(norm, np.diff(tf.indptr))
        tf.data = (tf.data * (k1 + 1.0) / (tf.data + row_norm)).astype(np.float64)
        out = (tf @ self.qmat.T).T.tocsr()
        out.data = out.data.astype(np.float32)
        return out

    def arms(self, k1: float, b: float, within: int | None = None, pad: float = 0.0) -> list[list[tuple[int, float]]]:
        """Every query's top ``DEPTH`` chunks (row, score), best first; ties: the earlier chunk first.
        ``within``: only among the top ``within`` chunks at (1.2, 0.75), as rescoring the engine's
        candidates would rank them."""
        scores = self.scores(k1, b, pad)
        first = self.scores(*BASE) if within else None
        out = []
        for i in range(len(self.qids)):
            s, e = scores.indptr[i], scores.indptr[i + 1]
            rows, vals = scores.indices[s:e], scores.data[s:e]
            if first is not None:
                assert np.array_equal(first.indices[s:e], rows)  # the same chunks: those holding a query term
                keep = np.lexsort((rows, -first.data[s:e]))[:within]
                rows, vals = rows[keep], vals[keep]
            order = np.lexsort((rows, -vals))[:DEPTH]
            out.append([(int(rows[j]), float(vals[j])) for j in order])
        return out

    def doc_runs(self, arms) -> dict[str, list[str]]:
        runs = {}
        for q, arm in zip(self.qids, arms):
            seen: dict[str, None] = {}
            for r, _ in arm:
                seen.setdefault(self.doc_of[r], None)
            runs[q] = list(seen)
        return runs

    def per_query(self, runs) -> list[float]:
        per = ranking_metrics(self.ds.qrels, runs, ("ndcg@10",))["ndcg@10"]
        return [per.get(q, 0.0) for q in sorted(self.ds.qrels)]


def grid(paths: list[str], k1s=K1S, bs=BS, within: int | None = None, pad: float = 0.0) -> None:
    table: dict[tuple[float, float], dict[str, tuple[float, float]]] = {}
    names = []
    bases: dict[str, list[float]] = {}
    for path in paths:
        t = time.perf_counter()
        c = Corpus(path)
        names.append(c.ds.name)
        st = c.stats()
        log(f"{c.ds.name}: analyzer {c.analyzer_name}, " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
        base = bases[c.ds.name] = c.per_query(c.doc_runs(c.arms(*BASE)))
        for k1 in k1s:
            for b in bs:
                same = (k1, b) == BASE and not pad
                x = base if same else c.per_query(c.doc_runs(c.arms(k1, b, within, pad)))
                p = paired_randomization_p(x, base)
                table.setdefault((k1, b), {})[c.ds.name] = (mean(x), p)
                print(f"{c.ds.name}\tk1={k1}\tb={b}\tndcg@10={mean(x):.4f}\tdelta={mean(x) - mean(base):+.4f}\tp={p:.3f}",
                      flush=True)
        log(f"{c.ds.name}: {time.perf_counter() - t:.0f} s")
    print("\n| k1 | b | " + " | ".join(f"{n} | p" for n in names) + " | mean | worst delta |")
    print("|---|---|" + "---|---|" * len(names) + "---|---|")
    for (k1, b), row in sorted(table.items()):
        base_row = {n: (mean(bases[n]), 1.0) for n in names}
        deltas = [row[n][0] - base_row[n][0] for n in names]
        cells = " | ".join(f"{row[n][0]:.4f} | {row[n][1]:.3f}" for n in names)
        print(f"| {k1} | {b} | {cells} | {mean([row[n][0] for n in names]):.4f} | {min(deltas):+.4f} |")


def hybrid(data_dir: str, coll: str, path: str, settings: list[tuple[float, ...]]) -> None:
    from rerank_mcp.index.fusion import fuse
    from rerank_mcp.server.settings import Settings
    from rerank_mcp.server.state import build_state

    c = Corpus(path)
    state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
    eng = state.engine
    info = eng.open_collection(coll)
    if info.analyzer_name != c.analyzer_name:
        raise SystemExit(f"{coll} was analyzed with {info.analyzer_name}, this script with {c.analyzer_name}")
    row_of = {k: i for i, k in enumerate(c.keys)}
    cid_of = np.full(c.n, -1, dtype=np.int64)
    doc_of_cid: dict[int, str] = {}
    for cid, doc, ordinal in eng.store._q("SELECT chunk_id, doc_id, ord FROM chunks WHERE collection=?", (coll,)):
        doc_of_cid[cid] = doc
        r = row_of.get((doc, ordinal))
        if r is not None:
            cid_of[r] = cid
    missing = int((cid_of < 0).sum())
    log(f"{coll}: {len(doc_of_cid)} chunks in the index, {c.n} here, {missing} not mapped")
    if missing or len(doc_of_cid) != c.n:
        raise SystemExit(f"{coll}: the index's chunks are not this script's chunks")
    dense, index_bm25 = [], []
    for q in c.qids:
        text = c.ds.queries[q]
        qv = eng.embedding.query(text, info)
        a = eng.search_arms(coll, text, qv, DEPTH, None, ("dense", "bm25"))
        dense.append(a["dense"])
        index_bm25.append(a["bm25"])

    def run(bm25_arms) -> list[float]:
        runs = {}
        for q, d, bm in zip(c.qids, dense, bm25_arms):
            seen: dict[str, None] = {}
            for cid, _ in fuse({"dense": d, "bm25": bm}, "zscore")[:DEPTH]:
                seen.setdefault(doc_of_cid[cid], None)
            runs[q] = list(seen)
        return c.per_query(runs)

    def mine(k1: float, b: float, within: int | None = None, pad: float = 0.0):
        return [[(int(cid_of[r]), s) for r, s in arm] for arm in c.arms(k1, b, within, pad)]

    default = run(index_bm25)
    base = mine(*BASE)
    same = sum(1 for x, y in zip(base, index_bm25) if [i for i, _ in x] == [i for i, _ in y])
    close = max((abs(s - t) for x, y in zip(base, index_bm25) for (_, s), (_, t) in zip(x, y)), default=0.0)

    def same_but_ties(x, y) -> bool:
        """``x`` ranks the chunks ``y`` ranks, in ``y``'s order but for chunks of equal score (to 1e-5;
        the last places may hold different chunks of the same score)."""
        if not y:
            return not x
        sy, cut = dict(y), y[-1][1] + 1e-5
        core_x, core_y = [i for i, s in x if s > cut], [i for i, s in y if s > cut]
        return set(core_x) == set(core_y) and all(sy[b] <= sy[a] + 1e-5 for a, b in zip(core_x, core_x[1:]))

    tie_only = sum(1 for x, y in zip(base, index_bm25)
                   if [i for i, _ in x] != [i for i, _ in y] and same_but_ties(x, y))
    print(f"{c.ds.name}: default hybrid (index's bm25 arm) {mean(default):.4f}; this script's (1.2, 0.75) arm equals "
          f"the index's on {same}/{len(c.qids)} queries, on {tie_only} more but for the order of equal scores "
          f"(largest score difference {close:.2e})", flush=True)
    x = run(base)
    print(f"{c.ds.name}\tk1=1.2\tb=0.75\thybrid={mean(x):.4f}\tdelta={mean(x) - mean(default):+.4f}\t"
          f"p={paired_randomization_p(x, default):.3f}\tqueries differing={sum(a != b for a, b in zip(x, default))}",
          flush=True)
    for k1, b, *pad in settings:
        for within in (None,) if pad else (None, DEPTH):  # every chunk ranked; the (1.2, 0.75) top 100 rescored
            x = run(mine(k1, b, within, pad[0] if pad else 0.0))
            how = f"pad={pad[0]}" if pad else "rescored" if within else "ranked"
            print(f"{c.ds.name}\tk1={k1}\tb={b}\t{how}\thybrid={mean(x):.4f}\t"
                  f"delta={mean(x) - mean(default):+.4f}\tp={paired_randomization_p(x, default):.3f}", flush=True)
    state.close()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "grid":
        args, opts = sys.argv[2:], {"--k1": K1S, "--b": BS, "--within": None, "--pad": 0.0}
        while args and args[0] in opts:
            v = args[1]
            opts[args[0]] = int(v) if args[0] == "--within" else float(v) if args[0] == "--pad" else \
                tuple(float(x) for x in v.split(","))
            args = args[2:]
        grid(args, opts["--k1"], opts["--b"], opts["--within"], opts["--pad"])
    elif len(sys.argv) >= 5 and sys.argv[1] == "hybrid":
        hybrid(sys.argv[2], sys.argv[3], sys.argv[4],
               [tuple(float(v) for v in s.split(",")) for s in sys.argv[5:]])  # type: ignore[misc]
    else:
        raise SystemExit(__doc__)
