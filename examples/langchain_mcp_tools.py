"""rerank-mcp's MCP tools loaded into LangChain with langchain-mcp-adapters: ``ingest``,
``search`` and ``rerank`` become LangChain tools that an agent (``create_agent``) can call.

    RERANK_MCP_HTTP_TOKEN=change-me rerank-mcp serve --http &
    pip install langchain-mcp-adapters
    python examples/langchain_mcp_tools.py

The tools are called here directly, as the agent would call them; with a chat model configured
(``OPENAI_API_KEY`` and ``pip install langchain langchain-openai``, say), ``--agent`` hands them to a
LangChain agent instead. ``RERANK_MCP_URL`` and ``RERANK_MCP_HTTP_TOKEN`` say where the server is; to
start it over stdio instead, use ``{"transport": "stdio", "command": "rerank-mcp", "args": ["serve"]}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from langchain_mcp_adapters.client import MultiServerMCPClient

DOCS = [
    {"id": "rrf", "text": "Reciprocal rank fusion combines ranked lists by summing 1/(k + rank) over the lists."},
    {"id": "ce", "text": "A cross-encoder reads the query and the passage together and outputs a relevance score."},
    {"id": "atp", "text": "Mitochondria produce ATP, the energy currency of the cell."},
]


def connection() -> dict:
    url = os.environ.get("RERANK_MCP_URL", "http://127.0.0.1:8765").rstrip("/") + "/mcp"
    token = os.environ.get("RERANK_MCP_HTTP_TOKEN", "change-me")
    return {"transport": "streamable_http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}


def _structured(result) -> dict:
    """A tool's answer as a dict: the adapters return MCP content blocks (text holding JSON)."""
    if isinstance(result, tuple):  # (content, artifact) with response_format="content_and_artifact"
        result = result[0]
    if isinstance(result, list):
        result = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in result)
    return json.loads(result) if isinstance(result, str) else result


async def main(collection: str = "langchain-example") -> dict:
    client = MultiServerMCPClient({"rerank": connection()})
    tools = {t.name: t for t in await client.get_tools()}
    print("tools:", ", ".join(sorted(tools)))
    if "--agent" in sys.argv:
        from langchain.agents import create_agent

        agent = create_agent(os.environ.get("LANGCHAIN_MODEL", "openai:gpt-4.1-mini"), list(tools.values()))
        answer = await agent.ainvoke({"messages": [{"role": "user", "content": "Search the knowledge base for "
                                                    "how rank fusion works and summarise it."}]})
        print(answer["messages"][-1].content)
        return {}
    ingested = _structured(await tools["ingest"].ainvoke({"collection": collection, "documents": DOCS}))
    print("ingest:", {k: ingested[k] for k in ("added", "updated", "unchanged")})
    found = _structured(await tools["search"].ainvoke({"collection": collection, "query": "how is rank fusion done?",
                                                        "k": 2, "mode": "bm25"}))
    for hit in found["hits"]:
        print("search:", hit["doc_id"], hit["text"])
    ranked = _structured(await tools["rerank"].ainvoke({"query": "relevance score of a passage", "reranker": "bm25",
                                                        "passages": [d["text"] for d in DOCS]}))
    print("rerank:", [p["index"] for p in ranked["passages"]])
    return {"ingest": ingested, "search": found, "rerank": ranked}


if __name__ == "__main__":
    asyncio.run(main())
