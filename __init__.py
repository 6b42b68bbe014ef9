"""rerank-mcp: a retrieve-then-rerank MCP server.

Layers, imports flowing one way: ``server`` (MCP wiring, CLI) -> ``tools`` (capabilities as
plain Python) -> ``index`` (storage and first-stage retrieval) -> ``errors``.
"""
