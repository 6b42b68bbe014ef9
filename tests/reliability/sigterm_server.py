"""``rerank-mcp serve`` through the real entry point, with the hash embedder instead of MiniLM
(fake collaborator: the SIGTERM tests are about shutdown, and a real model would only make each
start slower). Arguments after the module name go to ``rerank-mcp``."""

from __future__ import annotations

import sys


def main() -> int:
    from rerank_mcp.server import state
    from rerank_mcp.server.main import main as rerank_mcp
    from tests.reliability.hash_embedder import HashEmbedder

    index_config = state.index_config
    state.index_config = lambda settings, **extra: index_config(settings, **{"embedder_factory": HashEmbedder, **extra})
    return rerank_mcp(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
