"""The process environment for loading models: one place for the CLI, the server and the tests.

Set before transformers, huggingface_hub, tokenizers or onnxruntime are imported (they read
these variables at import time).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# Always: no telemetry from ONNX Runtime, no tokenizer thread pools fighting ours after a fork,
# no download progress bars or library chatter on stderr (the MCP stdio stream's neighbour).
QUIET = {
    "ORT_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}
# Offline: never reach for the Hugging Face hub (tests; machines without network).
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def apply(offline: bool = False, environ: MutableMapping[str, str] | None = None) -> None:
    """Set the quiet defaults where not set; with ``offline``, force the offline switches."""
    env = os.environ if environ is None else environ
    for k, v in QUIET.items():
        env.setdefault(k, v)
    if offline:
        env.update(OFFLINE)

