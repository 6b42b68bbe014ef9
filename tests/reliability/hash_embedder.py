"""A deterministic, model-free embedder for reliability tests (kept here for the worker scripts
that import it; it lives in :mod:`tests.fixtures.fakes`).

Fake collaborator, on purpose: these tests are about storage and recovery, and a real model
would only make each kill cycle slower. Vectors are hashed bag-of-words (so search still
means something), L2-normalised, 64-d.
"""

from tests.fixtures.fakes import HashEmbedder

__all__ = ["HashEmbedder"]
