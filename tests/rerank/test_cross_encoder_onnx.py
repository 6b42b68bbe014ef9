"""The ``cross-encoder`` reranker's ``onnx`` backend (ONNX Runtime, int8) against its ``torch``
backend, on the MiniLM-L-6-shaped fixture (bench/shapes.py: random head, so scores are
meaningless; the comparison is between the two backends running the same weights).

int8 dynamic quantisation perturbs every logit a little (about 0.15 on a spread of ~1.5 for
this fixture's random head), so the assertion is rank agreement on 100 passages of real prose
(Spearman >= 0.95, and the top-10 sets mostly equal), which any real plumbing bug (scores
unsorted to the wrong passages, padding leaking into attention, a wrong segment id) breaks.
"""

from __future__ import annotations

import importlib
import os
import re

import numpy as np
import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

pytestmark = pytest.mark.slow  # ONNX exports of fixture cross-encoders

QUERY = "how to parse and format dates and times from strings"
FILLER = " ".join(["the river flows past green hills and quiet villages"] * 12)


def prose(n: int = 100) -> list[str]:
    """``n`` paragraphs of real English prose: docstrings of standard-library modules."""
    out: list[str] = []
    for name in ("datetime", "time", "calendar", "json", "csv", "re", "os", "pathlib", "shutil", "string",
                 "textwrap", "collections", "functools", "itertools", "heapq", "bisect", "random",
                 "statistics", "decimal", "fractions", "logging", "argparse", "subprocess", "threading",
                 "queue", "socket", "email", "http.client", "urllib.parse", "zipfile", "tarfile", "gzip",
                 "hashlib", "hmac", "secrets", "sqlite3", "pickle", "copy", "pprint", "typing", "enum",
                 "dataclasses", "abc", "contextlib", "inspect", "traceback", "warnings", "unittest", "doctest"):
        mod = importlib.import_module(name)
        objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")][:30]
        for obj in objs:
            for para in re.split(r"\n\s*\n", getattr(obj, "__doc__", None) or ""):
                para = " ".join(para.split())
                if len(para.split()) >= 8 and para not in out:
                    out.append(para)
                if len(out) >= n:
                    return out
    return out


def by_index(res) -> np.ndarray:
    return np.array([p.score for p in sorted(res.passages, key=lambda p: p.index)])


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).correlation)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ce-onnx"))


@pytest.fixture(scope="module")
def registry(ce_model):
    return RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}}))


def test_onnx_ranks_like_torch(registry, onnx_dir):
    texts = prose(100)
    assert len(texts) == 100 and len(set(texts)) == 100
    a = registry.get("cross-encoder", {"max_length": 128}).rerank(QUERY, texts)
    b = registry.get("cross-encoder", {"backend": "onnx", "onnx_cache_dir": onnx_dir, "max_length": 128}).rerank(QUERY, texts)
    sa, sb = by_index(a), by_index(b)
    rho = spearman(sa, sb)
    top = len({p.index for p in a.passages[:10]} & {p.index for p in b.passages[:10]})
    print(f"\nonnx vs torch: spearman {rho:.4f}, top-10 overlap {top}/10, max |diff| {np.abs(sa - sb).max():.3f}, "
          f"torch spread {np.ptp(sa):.3f}")
    assert np.ptp(sa) > 0.5  # the fixture's scores do spread
    assert rho >= 0.95
    assert top >= 7
    # Same raw-logit scale, not merely the same order.
    assert np.abs(sa - sb).mean() < 0.1 * np.ptp(sa)
    assert any("onnx" in n for n in b.notes) and not any("onnx" in n for n in a.notes)
    # A shuffled ONNX list is far from the torch ranking: the assertion can fail.
    rng = np.random.default_rng(0)
    assert spearman(sa, rng.permutation(sb)) < 0.5


def test_onnx_truncation_flags_and_normalize_match_torch(registry, onnx_dir):
    texts = ["short passage", FILLER, "another short one", FILLER[:150], *prose(20)]
    opts = {"max_length": 32, "normalize": True}
    a = registry.get("cross-encoder", opts).rerank(QUERY, texts)
    b = registry.get("cross-encoder", {**opts, "backend": "onnx", "onnx_cache_dir": onnx_dir}).rerank(QUERY, texts)
    assert a.truncated and 1 in a.truncated and 0 not in a.truncated
    assert b.truncated == a.truncated
    assert [p.truncated for p in sorted(b.passages, key=lambda p: p.index)] == [
        p.truncated for p in sorted(a.passages, key=lambda p: p.index)
    ]
    assert [n for n in b.notes if "truncated" in n] == [n for n in a.notes if "truncated" in n]
    sb = by_index(b)
    assert ((sb >= 0) & (sb <= 1)).all()
    assert np.abs(by_index(a) - sb).max() < 0.1


def test_onnx_windowing_matches_torch(registry, onnx_dir):
    long_text = FILLER + " dates are parsed with strptime and formatted with strftime " + FILLER
    texts = ["dates", long_text]
    opts = {"max_length": 48, "window": True, "window_stride": 12}
    a = registry.get("cross-encoder", opts).rerank(QUERY, texts)
    b = registry.get("cross-encoder", {**opts, "backend": "onnx", "onnx_cache_dir": onnx_dir}).rerank(QUERY, texts)
    assert a.truncated == b.truncated == []
    assert any("best window" in n for n in b.notes)
    assert np.abs(by_index(a) - by_index(b)).max() < 0.3


def test_unpadded_onnx_ranks_like_torch_too(registry, onnx_dir):
    # batch_size 1: no padding at all, so a padding / attention-mask bug in the batched path
    # would show up as disagreement between this test and test_onnx_ranks_like_torch.
    texts = prose(40) + [FILLER[: 40 * k] for k in range(1, 9)]
    ref = by_index(registry.get("cross-encoder", {"max_length": 128}).rerank(QUERY, texts))
    for bs in (1, 64):
        got = by_index(registry.get("cross-encoder", {"backend": "onnx", "onnx_cache_dir": onnx_dir, "batch_size": bs,
                                                      "max_length": 128}).rerank(QUERY, texts))
        assert spearman(ref, got) >= 0.9, bs


def test_onnx_second_call_loads_nothing_and_export_is_cached(ce_model, onnx_dir, monkeypatch):
    import sentence_transformers
    import torch

    from rerank_mcp.index import onnx_embed

    calls = {"export": 0, "session": 0}
    real_export, real_session = onnx_embed.export_int8, onnx_embed.ort_session

    def export(*a, **k):
        calls["export"] += 1
        return real_export(*a, **k)

    def session(*a, **k):
        calls["session"] += 1
        return real_session(*a, **k)

    def no_torch_model(*a, **k):
        raise AssertionError("the onnx backend must not load the torch CrossEncoder")

    monkeypatch.setattr(onnx_embed, "export_int8", export)
    monkeypatch.setattr(onnx_embed, "ort_session", session)
    monkeypatch.setattr(sentence_transformers, "CrossEncoder", no_torch_model)
    reg = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}}))
    opts = {"backend": "onnx", "onnx_cache_dir": onnx_dir}
    rr = reg.get("cross-encoder", opts)
    rr.rerank(QUERY, prose(5))
    files = {p: os.stat(os.path.join(onnx_dir, p)).st_mtime_ns for p in os.listdir(onnx_dir)}
    assert len([p for p in files if p.endswith(".onnx")]) == 1
    assert calls == {"export": 1, "session": 1}
    # Second call on the same instance: nothing loaded.
    assert reg.get("cross-encoder", opts) is rr
    rr.rerank(QUERY, prose(7))
    assert calls == {"export": 1, "session": 1}
    # A fresh reranker (e.g. a restarted server) reuses the exported file: no re-export.
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-exported")))
    RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}})).get("cross-encoder", opts).rerank(QUERY, prose(3))
    assert {p: os.stat(os.path.join(onnx_dir, p)).st_mtime_ns for p in os.listdir(onnx_dir)} == files


def test_onnx_default_cache_dir_is_per_model_and_writable(ce_model, tmp_path, monkeypatch):
    from rerank_mcp.tools.rerank import cross_encoder

    monkeypatch.setattr(cross_encoder, "default_onnx_cache_dir", lambda: str(tmp_path / "cache"))
    rr = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}})).get("cross-encoder", {"backend": "onnx"})
    rr.rerank(QUERY, ["a", "b"])
    (sub,) = list((tmp_path / "cache").iterdir())
    assert sub.name.startswith("ms-marco-MiniLM-L-6-v2-")
    (path,) = list(sub.glob("classifier-*-int8-fused.onnx"))
    # attention fused and quantised (ONNX Runtime's transformer optimizer, then int8)
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QAttention", "MatMulInteger", "SkipLayerNormalization"} <= ops, ops


def test_bad_backend_options(registry):
    with pytest.raises(InvalidInput, match="backend must be one of torch, onnx"):
        registry.get("cross-encoder", {"backend": "tensorrt"})
    with pytest.raises(InvalidInput, match="onnx.*CPU"):
        registry.get("cross-encoder", {"backend": "onnx", "device": "cuda"})
    with pytest.raises(InvalidInput, match="onnx_cache_dir"):
        registry.get("cross-encoder", {"backend": "onnx", "onnx_cache_dir": ""})
