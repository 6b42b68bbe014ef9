"""The capabilities of rerank-mcp as plain Python (no MCP import): ingest, search, rerank."""
