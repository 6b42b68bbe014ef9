"""Fusion: RRF arithmetic, min-max and z-score normalisation, weights, one-arm documents."""

from __future__ import annotations

import math

import pytest

from rerank_mcp.index.fusion import ARM_DEPTH, fuse, rrf, score_fusion

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


def _old_score_fusion(arms, weights, how):
    """The score fusion as it was before statistics were fixed to the first ARM_DEPTH entries."""
    out: dict[int, float] = {}
    norms = {}
    for name, ranked in arms.items():
        scores = [s for _, s in ranked]
        if not scores:
            norms[name] = {}
        elif how == "minmax":
            lo, hi = min(scores), max(scores)
            norms[name] = {d: ((s - lo) / (hi - lo) if hi > lo else 1.0) for d, s in ranked}
        else:
            mean = sum(scores) / len(scores)
            sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
            norms[name] = {d: ((s - mean) / sd if sd > 0 else 0.0) for d, s in ranked}
    ids = {d for n in norms.values() for d in n}
    for name, norm in norms.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        floor = 0.0 if how == "minmax" or not norm else min(norm.values())
        for d in ids:
            out[d] = out.get(d, 0.0) + w * norm.get(d, floor)
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def _deep_arms(seed: int, n_docs: int = 1500, depth: int = 1000):
    """Two arms of ``depth`` entries over ``n_docs`` documents, partly agreeing, scores best first:
    a dense arm of similarities with a long flat tail and a BM25 arm with a few high scores."""
    import random

    rnd = random.Random(seed)
    rel = {d: rnd.random() for d in range(1, n_docs + 1)}
    dense = sorted(((d, 0.3 + 0.5 * r + 0.2 * rnd.random()) for d, r in rel.items()), key=lambda x: (-x[1], x[0]))
    bm25 = sorted(((d, 25 * (r ** 4) + 3 * rnd.random()) for d, r in rel.items()), key=lambda x: (-x[1], x[0]))
    return {"dense": dense[:depth], "bm25": bm25[:depth]}


@pytest.mark.parametrize("how", ["zscore", "minmax"])
@pytest.mark.parametrize("weights", [None, {"dense": 0.7, "bm25": 0.3}, {"dense": 1.0, "bm25": 0.0}])
def test_fusion_at_the_default_arm_depth_is_unchanged(how, weights):
    """At the default depth (each arm's first 100 entries) the fused scores and order are what they were."""
    for seed in range(3):
        arms = {a: r[:ARM_DEPTH] for a, r in _deep_arms(seed).items()}
        new = fuse(arms, how, weights)
        old = _old_score_fusion(arms, weights, how)
        assert [d for d, _ in new] == [d for d, _ in old]
        assert [s for _, s in new] == pytest.approx([s for _, s in old])


@pytest.mark.parametrize("how", ["zscore", "minmax"])
def test_asking_for_more_hits_never_reorders_the_first(how):
    """search searches each arm max(k, 100) deep: the top k at any k is a prefix of the top k' for k < k'
    (the statistics no longer move with the depth)."""
    ks = (1, 3, 10, 100, 101, 150, 400, 1000)
    for seed in range(3):
        arms = _deep_arms(seed)
        tops = {k: fuse({a: r[:max(k, ARM_DEPTH)] for a, r in arms.items()}, how)[:k] for k in ks}
        for k, k2 in zip(ks, ks[1:]):
            assert [d for d, _ in tops[k]] == [d for d, _ in tops[k2][:k]], (seed, k, k2)
            assert [s for _, s in tops[k]] == pytest.approx([s for _, s in tops[k2][:k]])


def test_an_entry_beyond_the_statistics_depth_counts_as_the_floor():
    dense = [(d, 1.0 - d / 10) for d in range(1, 6)]  # 1..5
    bm25 = [(9, 5.0), (8, 4.0), (1, 3.0), (7, 1.0)]
    out = dict(fuse({"dense": dense, "bm25": bm25}, "zscore", depth=2))
    z = {d: (s - 0.85) / 0.05 for d, s in dense[:2]}  # dense statistics from docs 1 and 2 only
    zb = {9: 1.0, 8: -1.0}
    assert out[1] == pytest.approx(z[1] + zb[8])  # bm25 rank 3, beyond depth 2: bm25's floor (-1), not lower
    assert out[2] == pytest.approx(z[2] + zb[8])
    assert out[9] == pytest.approx(z[2] + zb[9])  # missing from dense: dense's floor
    assert out[3] == out[7] == pytest.approx(z[2] + zb[8])  # beyond depth in both arms: both floors
    order = [d for d, _ in fuse({"dense": dense, "bm25": bm25}, "zscore", depth=2)]
    # 1 and 9 tie at 0; the floor documents tie at -2: those within depth first (by id), then the deeper
    # ones by their best rank in either arm (3: dense 3; 4: dense 4 and 7: bm25 4, by id; 5: dense 5)
    assert order == [1, 9, 2, 8, 3, 4, 7, 5]


def test_rrf_ignores_the_depth():
    arms = _deep_arms(0)
    assert fuse(arms, "rrf") == fuse(arms, "rrf", depth=None)
