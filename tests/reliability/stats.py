"""Figures for docs/reliability.md: tests merge what they measured into a JSON file named by
RERANK_MCP_RELIABILITY_STATS (scripts/reliability-report sets it); without it, nothing is written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def record(key: str, value: Any) -> None:
    path = os.environ.get("RERANK_MCP_RELIABILITY_STATS")
    if not path:
        return
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() else {}
    data[key] = value
    p.write_text(json.dumps(data, indent=1, sort_keys=True))
