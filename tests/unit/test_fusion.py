"""Fusion: RRF arithmetic, min-max and z-score normalisation, weights, one-arm documents."""

from __future__ import annotations

import math

import pytest

from rerank_mcp.index.fusion import fuse, rrf, score_fusion

DENSE = [(1, 0.9), (2, 0.8), (3, 0.5)]
BM25 = [(3, 12.0), (4, 6.0), (1, 3.0)]


def test_rrf_math():
    out = rrf({"dense": DENSE, "bm25": BM25}, k=60)
    assert out[1] == pytest.approx(1 / 61 + 1 / 63)
    assert out[2] == pytest.approx(1 / 62)  # dense only
    assert out[3] == pytest.approx(1 / 63 + 1 / 61)
    assert out[4] == pytest.approx(1 / 62)  # bm25 only
    assert set(out) == {1, 2, 3, 4}


def test_rrf_weights_and_order():
    fused = fuse({"dense": DENSE, "bm25": BM25}, "rrf", {"dense": 2.0, "bm25": 0.5}, rrf_k=10)
    expect = {
        1: 2 / 11 + 0.5 / 13,
        2: 2 / 12,
        3: 2 / 13 + 0.5 / 11,
        4: 0.5 / 12,
    }
    assert [d for d, _ in fused] == sorted(expect, key=lambda d: -expect[d])
    for d, s in fused:
        assert s == pytest.approx(expect[d])


def test_rrf_ties_broken_by_id():
    fused = fuse({"a": [(7, 1.0)], "b": [(3, 1.0)]}, "rrf")
    assert fused == [(3, pytest.approx(1 / 61)), (7, pytest.approx(1 / 61))]


def test_minmax():
    out = score_fusion({"dense": DENSE, "bm25": BM25}, how="minmax")
    # dense: 1 -> 1, 2 -> 0.75, 3 -> 0 ; bm25: 3 -> 1, 4 -> 1/3, 1 -> 0
    assert out[1] == pytest.approx(1.0 + 0.0)
    assert out[2] == pytest.approx(0.75 + 0.0)  # missing from bm25: that arm's floor (0)
    assert out[3] == pytest.approx(0.0 + 1.0)
    assert out[4] == pytest.approx(0.0 + 1 / 3)  # missing from dense: floor 0


def test_minmax_weights():
    out = score_fusion({"dense": DENSE, "bm25": BM25}, {"dense": 1.0, "bm25": 3.0}, how="minmax")
    assert out[3] == pytest.approx(3.0)
    assert out[4] == pytest.approx(1.0)
    assert out[2] == pytest.approx(0.75)
    only_dense = fuse({"dense": DENSE, "bm25": BM25}, "minmax", {"dense": 1.0, "bm25": 0.0})
    assert [d for d, _ in only_dense][:3] == [1, 2, 3]


def test_zscore():
    out = score_fusion({"dense": DENSE}, how="zscore")
    scores = [s for _, s in DENSE]
    mean = sum(scores) / 3
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / 3)
    for d, s in DENSE:
        assert out[d] == pytest.approx((s - mean) / sd)
    both = score_fusion({"dense": DENSE, "bm25": BM25}, how="zscore")
    zb = {d: (s - 7.0) / math.sqrt(((12 - 7) ** 2 + (6 - 7) ** 2 + (3 - 7) ** 2) / 3) for d, s in BM25}
    assert both[2] == pytest.approx(out[2] + min(zb.values()))  # missing from bm25: lowest z of that arm
    assert both[4] == pytest.approx(zb[4] + min(out.values()))


def test_single_hit_arm_does_not_reward_absent_docs():
    # bm25 found one document only; a document bm25 did not find must not get full bm25 credit
    fused = dict(fuse({"dense": DENSE, "bm25": [(3, 5.0)]}, "minmax"))
    assert fused[1] == pytest.approx(1.0)  # dense top, bm25 floor 0
    assert fused[3] == pytest.approx(0.0 + 1.0)
    assert fused[2] == pytest.approx(0.75)


def test_empty_arms():
    assert fuse({"dense": [], "bm25": []}, "rrf") == []
    assert fuse({"dense": DENSE, "bm25": []}, "minmax")[0][0] == 1
    assert [d for d, _ in fuse({"dense": DENSE, "bm25": []}, "zscore")] == [1, 2, 3]


def test_unknown_method():
    with pytest.raises(ValueError):
        fuse({"dense": DENSE}, "borda")  # type: ignore[arg-type]
