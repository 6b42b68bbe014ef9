"""Entry point of the ``rerank-mcp`` command: the server's verbs plus ``eval``, ``eval-budget``
and ``bench`` from :mod:`rerank_mcp.bench`.

This module sits above every layer: it is the one place where the server's command line and the
evaluation and benchmark package meet (``server/`` never imports ``bench/``).
``python -m rerank_mcp.server.main`` runs the server's verbs alone.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from rerank_mcp.bench.cli import VERBS
    from rerank_mcp.server.cli import run

    return run(sys.argv[1:] if argv is None else argv, extra_verbs=VERBS)


if __name__ == "__main__":
    sys.exit(main())
