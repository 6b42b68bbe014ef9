"""``rerank-mcp serve`` (hash embedder) whose file reads never return: each one writes a marker
file and then waits forever, as a read from a hung network file system does. Fake on purpose: a
hung mount cannot be made here, and the test is about the process exiting anyway. Arguments
after the module name go to ``rerank-mcp``; RERANK_MCP_TEST_STUCK_MARKER names the marker."""

from __future__ import annotations

import os
import sys
import threading


def main() -> int:
    from rerank_mcp.tools import ingest
    from tests.fixtures.hash_cli import main as serve

    def stuck(*_args, **_kwargs):
        with open(os.environ["RERANK_MCP_TEST_STUCK_MARKER"], "w") as fh:
            fh.write("reading")
        threading.Event().wait()  # never set: nothing interrupts it

    ingest.load_file = stuck
    return serve()


if __name__ == "__main__":
    sys.exit(main())
