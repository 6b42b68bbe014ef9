"""Dense pseudo-relevance feedback (Rocchio): the query vector moved toward the first stage's best chunks.

``q' = normalise(q + beta * mean(v_1 .. v_m))`` over the vectors of the first stage's top ``m``
chunks (the fused ranking for hybrid, the dense arm for dense); then every candidate either arm
found is scored again against ``q'`` (inner products with their stored vectors: no second index
search), and those scores are the dense arm. m=5 and beta=0.5 were chosen on SciFact, Cranfield
and NPL (docs/eval/first-stage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FEEDBACK_CHUNKS = 5  # m: first-stage chunks the query vector moves toward
FEEDBACK_BETA = 0.5  # beta: how far


def feedback_vector(query_vec: np.ndarray, first: Sequence[tuple[int, float]], vectors: Mapping[int, np.ndarray],
                    m: int = FEEDBACK_CHUNKS, beta: float = FEEDBACK_BETA) -> np.ndarray | None:
    """The moved query vector, or None when none of the top ``m`` chunks has a vector any more."""
    top = [vectors[cid] for cid, _ in first[:m] if cid in vectors]
    if not top:
        return None
    q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
    v = q + beta * np.mean(np.stack(top).astype(np.float32), axis=0)
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else None


def rescore(vector: np.ndarray, vectors: Mapping[int, np.ndarray], depth: int) -> list[tuple[int, float]]:
    """The chunks of ``vectors`` scored by inner product with ``vector``: the best ``depth``, best first
    (ties by id)."""
    if not vectors:
        return []
    ids = list(vectors)
    scores = np.stack([vectors[i] for i in ids]).astype(np.float32) @ np.asarray(vector, dtype=np.float32)
    ranked = sorted(zip(ids, scores.tolist()), key=lambda kv: (-kv[1], kv[0]))
    return [(int(c), float(v)) for c, v in ranked[:depth]]
