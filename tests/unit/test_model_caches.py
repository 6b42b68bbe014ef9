"""The test session never writes to the user's model caches: every cache folder the code would
use resolves inside the test cache folder that tests/conftest.py sets up."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from tests.conftest import TEST_CACHE

# The real home, from the password database: HOME and the XDG variables are what a test could move.
HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)
USER_CACHES = [HOME / ".cache", HOME / ".local" / "share"]


def _inside(path: Path | str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def test_every_model_cache_is_in_the_test_cache_folder():
    import platformdirs
    from huggingface_hub import constants

    from rerank_mcp.index.model_names import cache_dir, onnx_cache_dir
    from rerank_mcp.server.settings import Settings
    from rerank_mcp.server.state import flashrank_dir, model_dirs
    from rerank_mcp.tools.rerank.cross_encoder import default_onnx_cache_dir

    settings = Settings()
    caches = {
        "platformdirs cache": platformdirs.user_cache_dir("rerank-mcp", appauthor=False),
        "platformdirs data": platformdirs.user_data_dir("rerank-mcp", appauthor=False),
        "ONNX exports": onnx_cache_dir(settings.onnx_cache_dir),
        "cache_dir()": cache_dir(),
        "cross-encoder ONNX exports": default_onnx_cache_dir(),
        "Hugging Face hub cache": constants.HF_HUB_CACHE,
        "default data folder": settings.data_dir,
        "FlashRank cache": flashrank_dir(settings),
    }
    caches.update({f"model dir {d}": d for d in model_dirs(settings)})
    for what, path in caches.items():
        assert _inside(path, TEST_CACHE), f"{what} is {path}, outside the test cache {TEST_CACHE}"
        for real in USER_CACHES:
            assert not _inside(path, real), f"{what} is {path}, in the user's {real}"


def test_the_test_cache_is_not_the_users():
    for real in USER_CACHES:
        assert not _inside(TEST_CACHE, real)
    assert os.environ["XDG_CACHE_HOME"].startswith(str(TEST_CACHE))
