"""The rerankers' defaults an operator can change, each written here once.

The families (their ``Config`` models), the settings (``RERANK_MCP_*``), the registry's summaries
and the model store read them from here; this module imports nothing, so the settings can use it
without loading any family.
"""

CROSS_ENCODER_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
FLASHRANK_MODEL = "ms-marco-TinyBERT-L-2-v2"
# where FlashRank's <model>.zip archives are downloaded from
FLASHRANK_BASE_URL = "https://huggingface.co/prithivida/flashrank/resolve/main"
COHERE_MODEL = "rerank-v3.5"
