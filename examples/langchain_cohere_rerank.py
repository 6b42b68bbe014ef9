"""LangChain's ContextualCompressionRetriever with CohereRerank, as in the article, with the
Cohere client pointed at rerank-mcp's Cohere-compatible API (``POST /v2/rerank``) instead of
Cohere's servers: the reranking runs on this machine.

    RERANK_MCP_HTTP_TOKEN=change-me \\
    RERANK_MCP_HTTP_MODELS='{"rerank-v3.5": {"reranker": "cross-encoder", "options": {"backend": "onnx"}}}' \\
    rerank-mcp serve --http &
    pip install langchain-cohere langchain-classic
    python examples/langchain_cohere_rerank.py

``RERANK_MCP_URL`` (default http://127.0.0.1:8765), ``RERANK_MCP_HTTP_TOKEN`` and
``RERANK_MODEL`` (default rerank-v3.5, the alias configured above; or bm25, flashrank,
cross-encoder, ...) say where and what. Only the client's ``base_url`` and key differ from the
article's code.
"""

from __future__ import annotations

import os

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_cohere import CohereRerank
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

DOCS = [
    "Reciprocal rank fusion combines ranked lists by summing 1/(k + rank) over the lists.",
    "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
    "A cross-encoder reads the query and the passage together and outputs a relevance score.",
    "Mitochondria produce ATP, the energy currency of the cell.",
    "BM25 ranks documents by term frequency, inverse document frequency and document length.",
]


class FirstStage(BaseRetriever):
    """A stand-in first stage (the article's vector store retriever): every document, in order."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.docs


def build(url: str, token: str, model: str, top_n: int = 3) -> ContextualCompressionRetriever:
    reranker = CohereRerank(base_url=url, cohere_api_key=token, model=model, top_n=top_n)
    base = FirstStage(docs=[Document(page_content=t, metadata={"n": i}) for i, t in enumerate(DOCS)])
    return ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)


def main() -> list[Document]:
    retriever = build(os.environ.get("RERANK_MCP_URL", "http://127.0.0.1:8765"),
                      os.environ.get("RERANK_MCP_HTTP_TOKEN", "change-me"), os.environ.get("RERANK_MODEL", "rerank-v3.5"))
    docs = retriever.invoke("how does a cross-encoder score relevance?")
    for d in docs:
        print(f"{d.metadata['relevance_score']:.3f}  {d.page_content}")
    return docs


if __name__ == "__main__":
    main()
