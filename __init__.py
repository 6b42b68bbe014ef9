"""rerank-mcp: a retrieve-then-rerank MCP server.

Layers, imports flowing one way: ``server`` (MCP wiring, CLI) -> ``tools`` (capabilities as
plain Python) -> ``index`` (storage and first-stage retrieval) -> ``errors``. ``bench``
(evaluation and benchmarks) sits on top and nothing imports it; ``main`` (the ``rerank-mcp``
command) adds its verbs to the server's command line.
"""
