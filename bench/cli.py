"""The command-line verbs of this package, for ``server.cli.run(argv, extra_verbs=VERBS)``."""

from __future__ import annotations

from rerank_mcp.bench import bench_command, budget_command, eval_command

# each adds one sub-command (with its handler) to the ``rerank-mcp`` parser
VERBS = (eval_command.add_parser, bench_command.add_parser, budget_command.add_parser)
