"""A deterministic, model-free embedder for reliability tests.

Fake collaborator, on purpose: these tests are about storage and recovery, and a real model
would only make each kill cycle slower. Vectors are hashed bag-of-words (so search still
means something), L2-normalised, 64-d.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np


class HashEmbedder:
    name = "test/hash-bow-64"
    dim = 64
    max_seq_length = 512

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 8) & 1 else -1.0
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n > 0 else 1.0 / np.sqrt(self.dim)
        return out
