"""The server's own command line: every verb but the evaluation and benchmark ones (``eval``,
``eval-budget``, ``bench``, from ``bench/``), which the ``rerank-mcp`` command (``main.py``) adds.
``python -m rerank_mcp.server.main serve`` starts the server like ``rerank-mcp serve``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from rerank_mcp.server.cli import run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
