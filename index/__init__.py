"""Storage and first-stage retrieval: SQLite store of record, FAISS, BM25 (tantivy), fusion."""
