"""Renders the figures the reliability tests recorded into docs/reliability.md.

The figures are kept in docs/reliability.json (next to the page), each test's with the date it
was measured: a run merges what it measured into that record, so a run of some of the tests
(scripts/reliability-report -k ...) updates their sections and leaves the others as they were.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

THREAT_MODEL = """## Threat model

Who may call what:

- **stdio**: the program that started the server (an agent's host) calls every tool: `ingest` and
  `delete` too, unless `serve --read-only`. Whatever text the agent reads (documents, web pages, search
  hits, tool results) may steer those calls, so every argument is treated as chosen by an attacker.
- **HTTP** (`serve --http`): 127.0.0.1 by default; with RERANK_MCP_HTTP_TOKEN every request needs the
  bearer token (without it any local process may call, and a warning is logged when the server listens
  beyond loopback); Host and Origin are checked against DNS rebinding. A token holder calls every MCP
  tool and the rerank API, whose models are the operator's (RERANK_MCP_HTTP_MODELS, local families, no
  paths, no URLs): the rerank API downloads only the configured models; one a request names that is not
  on the machine is a 404 naming `rerank-mcp models pull`, and nothing is fetched.
- **CLI**: the operator, with the same checks on reranker options as a client.

What a client, or an agent steered by injected text, can and cannot reach:

- **Secrets.** The Cohere, LLM, Qdrant keys and the HTTP token come from settings only; they appear in
  no result, error or log line. A key goes only to its configured endpoint or to one listed in
  RERANK_MCP_ALLOWED_ENDPOINTS: a client's `options.base_url` elsewhere is refused before any request
  (the listed endpoints are trusted with the key). A client cannot read the environment.
- **Paths.** Files are read only inside RERANK_MCP_ALLOWED_ROOTS, and when the MCP client declares
  roots, only inside both (a relative path is taken from the client's first root). Symlinks and `..`
  are resolved before the check; a walk does not follow a symlink out; a file is opened without
  following a final symlink and without blocking, must be a regular file (never a FIFO, device or
  socket), and its real path is checked again once open, so a folder swapped for a symlink after the
  check is not read. Reads stop at RERANK_MCP_MAX_FILE_BYTES, counted on the bytes read. A model given
  as a local folder (`options.model`, `cache_dir`, `onnx_cache_dir`) must lie inside the model caches
  or RERANK_MCP_ALLOWED_MODEL_DIRS. What a client can do: read any supported file inside the roots and
  get its text back through `search`: the roots are the confidentiality boundary. It can also delete
  documents and collections: serve read-only where that matters.
- **Work.** Each call is bounded: request body and document text (RERANK_MCP_MAX_REQUEST_BYTES),
  passages per rerank and their length, query length, `k`, documents and files per ingest, bytes per
  file; a .docx at most 100 MB of inflated XML and 2,000,000 XML elements, parsed as a stream; a PDF
  within pypdf's limits (75 MB per inflated stream); the rerank API answers JSON nested too deeply
  with a 400; every tool call ends at RERANK_MCP_TOOL_TIMEOUT_S (work already committed stays); at
  most RERANK_MCP_HTTP_MAX_INFLIGHT rerank API requests run at once. What remains: a client can keep the CPU busy within those bounds, fill
  the disk by ingesting large allowed folders, and name any Hugging Face model id in a tool call's
  reranker options (MCP, not the rerank API), which the server downloads in the background while
  RERANK_MCP_DOWNLOAD_MODELS is on (switch it off, and pull models with `rerank-mcp models pull`, where
  clients are not trusted with network and disk).
""".splitlines() + [""]


KEEP_MARK = "<!-- Sections below this line are written by hand; scripts/render_reliability.py keeps them. -->"


def main(stats_path: str, out: str) -> None:
    kept = Path(out).with_suffix(".json")
    record = json.loads(kept.read_text()) if kept.exists() else {}
    for key, figures in json.loads(Path(stats_path).read_text()).items():
        record[key] = {"measured": time.strftime("%Y-%m-%d"), "figures": figures}
    kept.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    s = {key: entry["figures"] for key, entry in record.items()}

    def when(key: str) -> str:
        return f"(measured {record[key]['measured']})"

    lines = ["# Reliability", "",
             "Produced by `scripts/reliability-report`; every figure below was measured by the tests in "
             "`tests/reliability/`, each section on the date it gives (docs/reliability.json holds the figures).", ""]
    c = s.get("crash")
    if c:
        lines += ["## Crash safety (SIGKILL during ingest)", "", when("crash"), "",
                  f"- {c['cycles']} cycles; the writer was killed mid-ingest in {c['killed_mid_ingest']} of them, "
                  "each after a random number of committed batches.",
                  f"- {c['acknowledged_documents']} documents acknowledged as committed across the run; after every "
                  f"restart all were present with exactly their chunks: {c['acknowledged_documents_lost']} lost, "
                  f"{c['partial_documents']} partial.",
                  f"- Searches in dense, BM25 and hybrid mode after each restart returned "
                  f"{c['phantom_chunks_in_search']} chunks that the store did not hold; FAISS and BM25 sizes equalled "
                  "the store's chunk count every time.", ""]
    k = s.get("corruption")
    if k:
        lines += ["## Damaged index files", "", when("corruption"), "",
                  f"- {k['damage_cases_repaired']} kinds of damage (truncated or deleted FAISS file, deleted sidecar, "
                  "truncated or deleted tantivy segments, garbage sidecar) were detected on start and rebuilt from "
                  "SQLite; results after repair were identical to before.",
                  "- A corrupt SQLite file is a clear `StoreCorrupt` error, never a silently empty index.",
                  "  A zero-length one too.", ""]
    cc = s.get("concurrency")
    if cc:
        lines += ["## Concurrency over streamable HTTP", "", when("concurrency"), "",
                  f"- {cc['clients']} clients, {cc['seconds']:g} s of mixed ingest / search / rerank / delete: "
                  f"{cc['operations']} operations, {cc['unexpected_errors']} unexpected errors.",
                  f"- {cc['acknowledged_ingests']} acknowledged ingests and {cc['acknowledged_deletes']} acknowledged "
                  f"deletes; afterwards the collection held exactly the acknowledged documents "
                  f"({cc['acknowledged_writes_missing']} missing).",
                  f"- While a 300-passage rerank ran, a cheap tool call took at worst "
                  f"{cc['worst_cheap_call_during_large_rerank_ms']} ms (goal: 100 ms).", ""]
    h = s.get("hostile_inputs_tried")
    if h:
        lines += ["## Hostile input", "", when("hostile_inputs_tried"), "",
                  f"- {h} generated hostile inputs (hypothesis) across every tool's arguments: no crash, no traceback "
                  "or server path in any error, nothing stored by any call that failed.", ""]
    u, d = s.get("client_urls"), s.get("docx_bombs")
    stuck = [(t, s[f"stuck_read_exit_{t}"]) for t in ("asyncio", "sdk") if f"stuck_read_exit_{t}" in s]
    if u or d or stuck or "fifo_walk_s" in s:
        lines += ["## Hostile files and client options", ""]
        if u:
            lines += [f"- {when('client_urls')} {u['hostile_calls']} calls naming a listener of the test's own as "
                      "`options.base_url` (cohere and rankllm, through `rerank`, `search`'s rerank step, "
                      "`compare_rerankers` and cascade stages; URL spellings with user info, another host name, a "
                      f"trailing slash): {u['requests_to_client_urls']} requests reached that listener; each call was "
                      "refused naming RERANK_MCP_ALLOWED_ENDPOINTS. The configured endpoints received "
                      f"{u['configured_endpoint_requests']} requests, {u['configured_requests_with_key']} of them with "
                      "their configured key. The HTTP rerank API takes no URL from a request."]
        if "fifo_walk_s" in s:
            lines += [f"- {when('fifo_walk_s')} A FIFO inside a walked folder: refused and reported (`skip_invalid`) "
                      f"in {s['fifo_walk_s']:g} s for both calls, never opened for reading."]
        if d:
            lines += [f"- {when('docx_bombs')} A .docx of {d['paragraphs']:,} empty paragraphs ({d['many_zip_bytes']:,} "
                      f"bytes zipped): refused at the element limit in {d['many_refused_s']:g} s; one whose XML "
                      f"inflates to {d['big_inflated_bytes']:,} bytes ({d['big_zip_bytes']:,} zipped): refused from the "
                      f"zip directory in {d['big_refused_s']:g} s; peak memory of the process reading both "
                      f"{d['peak_rss_mb']} MB."]
        for t, took in stuck:
            lines += [f"- {when(f'stuck_read_exit_{t}')} A tool call stuck in a read that never returns (the "
                      f"{t} stdio transport): the server exited {took:g} s after stdin closed, status 0."]
        lines.append("")
    g = s.get("sigterm")
    if g:
        st = g["stops"]
        lines += ["## Stopping during ingest (SIGTERM, SIGINT, end of input)", "", when("sigterm"), "",
                  f"- {g['cycles']} cycles of the stdio server stopped during an ingest call ({st['SIGTERM']} by SIGTERM, "
                  f"{st['SIGINT']} by SIGINT, {st['EOF']} by closing stdin; {g['sdk_transport_cycles']} on the SDK's "
                  f"transport), each after one or two committed write batches plus a random delay; "
                  f"{g['stopped_mid_ingest']} stops cut the call short.",
                  f"- Exit after the stop: at most {g['max_exit_s']:g} s (median {g['median_exit_s']:g} s; goal 10 s), "
                  "status 0.",
                  f"- {g['acknowledged_documents']} acknowledged documents: {g['acknowledged_documents_lost']} lost, "
                  f"{g['partial_documents']} partial; the call in flight kept whole write batches only; FAISS, BM25 and "
                  "search agreed with the store.",
                  f"- Repairs needed when the data dir was opened again: {g['repairs_on_open']} (goal: none).", ""]
    r = s.get("restart_soak")
    if r:
        growth = r["rss_growth_mb_per_lifetime"] or [0.0]
        ends = r["rss_mb_end_of_lifetime"]
        sw, iw = r["search_latency_windows"], r["ingest_latency_windows"]
        lines += ["## Restart soak over streamable HTTP", "", when("restart_soak"), "",
                  f"- {r['clients']} clients, {r['seconds'] / 60:.1f} minutes of mixed ingest (single documents and "
                  f"80-document bulks), search, rerank, evaluate and delete against `serve --http` with the MiniLM "
                  f"embedder; SIGTERM and restart every {r['restart_every_s']:g} s ({r['sigterms']} SIGTERMs).",
                  f"- {r['operations']} operations completed; {r['interrupted_by_restart']} calls were cut off or "
                  f"answered \"cancelled: the server is shutting down\" by a restart; {r['unexpected_errors']} "
                  "unexpected errors.",
                  f"- {r['acknowledged_documents']} acknowledged documents and {r['acknowledged_deletes']} acknowledged "
                  f"deletes: {r['acknowledged_missing']} acknowledged documents missing at the end, "
                  f"{r['deleted_present']} deleted ones back; {r['unacknowledged_present']} documents of calls cut by a "
                  "restart had been committed (whole write batches) and stayed.",
                  f"- Exit after SIGTERM: at most {r['max_exit_s']:g} s (median {r['median_exit_s']:g} s). Repairs on "
                  f"open after the stops: {r['repairs_on_open']}.",
                  f"- Memory: server RSS peaked at {r['rss_mb_max']} MB; at each SIGTERM it was {min(ends)}-{max(ends)} MB "
                  f"(first lifetime {ends[0]} MB, last {ends[-1]} MB; {r['documents_at_end']} documents stored at the "
                  f"end). Within a lifetime, from a third of the way in to the SIGTERM, it grew by "
                  f"{sorted(growth)[len(growth) // 2]:+.1f} MB in the median lifetime (largest {max(growth):+.1f} MB). "
                  "With a restart every minute that growth mixes warm-up with any leak; what the run shows is that "
                  "memory does not pile up across restarts.",
                  f"- Latency: search p50 {sw[0]['p50_ms']:g} ms in the first window, {sw[-1]['p50_ms']:g} ms in the "
                  f"last; ingest p50 {iw[0]['p50_ms']:g} ms, then {iw[-1]['p50_ms']:g} ms, while the collection grew "
                  f"from nothing to {r['documents_at_end']} documents (drift and data growth are not separated).", "",
                  f"Latency of completed calls per {r['window_s']:g} s window (restart windows included):", "",
                  "| from (s) | search calls | search p50 ms | search p95 ms | ingest calls | ingest p50 ms | ingest p95 ms |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        ingest = {w["from_s"]: w for w in r["ingest_latency_windows"]}
        for w in r["search_latency_windows"]:
            i = ingest.get(w["from_s"], {})
            lines.append(f"| {w['from_s']} | {w['n']} | {w['p50_ms']:g} | {w['p95_ms']:g} | {i.get('n', 0)} | "
                         f"{i.get('p50_ms', '')} | {i.get('p95_ms', '')} |")
        lines.append("")
    lines += THREAT_MODEL
    previous = Path(out).read_text() if Path(out).exists() else ""
    if KEEP_MARK in previous:  # hand-written sections (figures measured by other tests) stay
        lines += [KEEP_MARK, "", previous.split(KEEP_MARK, 1)[1].lstrip("\n")]
    Path(out).write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
