"""Evaluation and benchmarks: the top of the stack, above ``server``; nothing imports it.

``rerank-mcp eval``, ``eval-budget`` and ``bench`` live here (``cli.py`` hands their parsers to
``server.cli.run``; the console entry point, ``rerank_mcp.main``, wires them in), with what they
need and the product does not: the BEIR loader, paired significance tests, report rendering,
and the untrained fixture models with published reranker shapes (``shapes.py``).
"""
