"""MCP wiring, settings, transports and the command line."""
