"""One error hierarchy for the whole project.

Tools raise these; the MCP layer turns them into ``isError`` results carrying the message,
and the CLI prints the message and exits non-zero. Messages name the problem and, where
there is one, the way out.
"""


class RerankMCPError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidInput(RerankMCPError):
    """The caller sent something malformed, out of range or of the wrong type."""


class NoText(InvalidInput):
    """A file holds no text: empty, only whitespace, or nothing to extract (a PDF of scanned pages)."""


class NotFound(RerankMCPError):
    """A named collection, document or reranker does not exist."""


class LimitExceeded(InvalidInput):
    """A request is over one of the configured limits."""


class PathNotAllowed(InvalidInput):
    """A file path lies outside the allowed roots."""


class ModelMismatch(RerankMCPError):
    """A collection was built with a different embedding model than the one in use."""


class DependencyMissing(RerankMCPError):
    """An optional package, model file or API key that a feature needs is not available."""


class DataDirError(RerankMCPError):
    """The data dir cannot be written or read: read-only, full, or missing what it should hold."""


class UpstreamError(RerankMCPError):
    """A remote service (Cohere, an LLM endpoint) failed, timed out or answered garbage."""


class StoreCorrupt(RerankMCPError):
    """The store of record cannot be read."""
