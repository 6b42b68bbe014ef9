"""Hostile input to every tool, through a real in-memory MCP client (property-based).

Hypothesis throws at each tool's arguments what an agent, a confused model or an attacker might
send: unicode with control characters, NUL, lone surrogates, RTL overrides and zero-width
characters; huge integers; NaN and infinities; metadata nested 100 deep and keys of 100k
characters; SQL and JSON-path fragments in filter field names and values; wrong types for
every argument; files with invalid UTF-8; paths that leave the allowed roots through symlinks
and ``..``; unknown rerankers and collections. The properties, for every call:

* the server keeps answering (a follow-up call succeeds);
* an error is a clean ``isError`` result: no traceback, no server source path, no internal
  data path, and no "internal error" (hostile input is the caller's mistake and is named as such);
* an error never stores anything (the store's change sequence number and the collection list
  are unchanged), and read-only tools never store anything even when they succeed;
* a success is well formed: its structured content validates against the tool's result model
  and is strict JSON (no NaN or infinity, which JSON transports cannot carry).

The in-memory client turns NaN and infinity into null and cannot encode some lone surrogates,
so one more test speaks raw JSON-RPC to a real ``rerank-mcp serve`` over stdio: ``1e400`` (valid
JSON, parsed as infinity), ``NaN``, ``\\ud800`` escapes, invalid UTF-8 bytes, unparseable lines.

One server (one state, one embedding model) serves the whole module. When the environment
variable ``RERANK_MCP_RELIABILITY_STATS`` names a JSON file, the number of hostile calls made is
merged into it under ``hostile_inputs_tried`` (and, per tool, how many calls succeeded, were
rejected by the tool's schema, or were refused by the tool itself, under ``hostile_outcomes``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import TypeAdapter

import rerank_mcp.server as server_pkg
from rerank_mcp.server.settings import Settings
from rerank_mcp.tools.catalog import CATALOG
from tests.fixtures.env import model_caches, offline_env
from tests.reliability.mcp_driver import Mcp as BaseMcp
from tests.reliability.mcp_driver import serve
from tests.reliability.stats import record

pytestmark = pytest.mark.slow  # hypothesis fuzzing of every tool, and a stdio subprocess

SERVER_SRC = str(Path(server_pkg.__file__).resolve().parents[1])
TRIED = {"n": 0}
OUTCOMES: dict[str, dict[str, int]] = {}  # tool -> {"ok" | "rejected by schema" | "refused by tool": count}
# The tables below come from the tool catalog: every tool, every argument, every result type.
READ_ONLY = {name for name, spec in CATALOG.items() if spec.hints.read_only}
RESULTS = {name: TypeAdapter(spec.result) for name, spec in CATALOG.items()}
WRAPPED = {name for name, spec in CATALOG.items() if not isinstance(spec.result, type)}  # sent as {"result": ...}


def validate_result(tool: str, sc: Any) -> None:
    """A tool's structured content against its declared result type."""
    RESULTS[tool].validate_python(sc["result"] if tool in WRAPPED else sc)

# RERANK_MCP_HOSTILE_EXAMPLES=500 RERANK_MCP_HOSTILE_RANDOM=1 hunts wider (new inputs each run).
PROPS = hsettings(
    max_examples=int(os.environ.get("RERANK_MCP_HOSTILE_EXAMPLES", "60")),
    deadline=None,
    derandomize=not os.environ.get("RERANK_MCP_HOSTILE_RANDOM"),  # by default the same inputs on every run
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------- the shared server

class Mcp(BaseMcp):
    def __init__(self, portal, client, state, root: Path) -> None:
        super().__init__(portal, client, state)
        self.root = root
        self.data_dir = str(state.settings.data_dir)

    def call(self, tool: str, args: Any, timeout: float = 60.0):
        return super().call(tool, args, timeout)

    def check(self, tool: str, args: Any) -> Any:
        """Make one hostile call and assert every property; returns the result."""
        before, seq = self.collections(), self.seq()
        try:
            r = self.call(tool, args)
        except TimeoutError:
            pytest.fail(f"{tool} did not answer within 60 s")
        except UnicodeEncodeError:
            # The client itself cannot encode the request (a lone surrogate in a dict key): it
            # never reaches the server, over any transport. Not a server input; not counted.
            self.collections()
            return None
        TRIED["n"] += 1
        kind = "ok" if not r.is_error else "rejected by schema" if "invalid arguments" in _text(r) else "refused by tool"
        OUTCOMES.setdefault(tool, {}).setdefault(kind, 0)
        OUTCOMES[tool][kind] += 1
        after = self.collections()  # also: the server still answers
        if r.is_error:
            text = _text(r)
            assert _utf8_ok(text), f"{tool} error text is not valid Unicode, so no JSON transport can carry it"
            for bad in ("Traceback", 'File "/', SERVER_SRC, self.data_dir, "site-packages", "internal error"):
                assert bad not in text, f"{tool} error leaks {bad!r}: {text[:500]}"
            assert self.seq() == seq, f"{tool} failed but wrote to the store: {text[:300]}"
            assert after == before, f"{tool} failed but changed the collections: {text[:300]}"
            return r
        sc = r.structured_content
        assert sc is not None, f"{tool} succeeded without structured content"
        validate_result(tool, sc)
        try:
            json.dumps(sc, allow_nan=False)
        except ValueError:
            pytest.fail(f"{tool} returned NaN or infinity, which JSON cannot carry: {str(sc)[:500]}")
        if _utf8_ok(args):
            assert _utf8_ok(sc), f"{tool} returned text that is not valid Unicode"
        if tool in READ_ONLY:
            assert self.seq() == seq and after == before, f"read-only {tool} wrote to the store"
        if tool == "search":
            k = args.get("k")  # null (NaN on the in-memory client) means the default, 10
            assert isinstance(sc["hits"], list) and len(sc["hits"]) <= (k if isinstance(k, int) and k > 0 else 10)
            assert [h["rank"] for h in sc["hits"]] == list(range(1, len(sc["hits"]) + 1))
        if tool == "rerank":
            ps = sc["passages"]
            assert [p["rank"] for p in ps] == list(range(1, len(ps) + 1))
            assert all(0 <= p["index"] < len(args["passages"]) for p in ps)
        if tool == "ingest":
            assert sc["failed"] == sum(d["status"] == "failed" for d in sc["documents"])
        return r


def _text(r) -> str:
    return " ".join(getattr(c, "text", "") for c in r.content)


def _utf8_ok(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        return True
    except (UnicodeEncodeError, ValueError, RecursionError):
        return False


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    files, outside = base / "files", base / "outside"
    files.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret outside the roots")
    (outside / "dir").mkdir()
    (outside / "dir" / "also-secret.md").write_text("# secret\n\nalso outside")
    (files / "good.txt").write_text("A perfectly ordinary text file about rerankers.")
    (files / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (files / "broken.md").write_bytes(b"# ok start\n\n\xff\xfe\xc3\x28 invalid \xed\xa0\x80 surrogate bytes")
    (files / "nul.txt").write_bytes(b"text\x00with\x00nuls")
    (files / "empty.txt").write_text("   \n\t ")
    (files / "fake.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf \xff\xff")
    (files / "page.html").write_bytes(b"<html><title>\xff</title><body><p>bad bytes</p></body></html>")
    (files / "link-out.txt").symlink_to(outside / "secret.txt")
    (files / "link-dir-out").symlink_to(outside / "dir", target_is_directory=True)
    (files / "loop").symlink_to(files / "loop")
    weird = files / "weird-names"
    weird.mkdir()
    (weird / "fine.txt").write_text("a file with an ordinary name")
    os.symlink(b"fine.txt", os.path.join(bytes(weird), b"link\xff.txt"))
    (weird / "\u202eevil\u200b.txt").write_text("a file with RTL and zero-width characters in its name")
    with open(os.path.join(bytes(weird), b"latin1-name-caf\xe9.txt"), "w") as fh:
        fh.write("a file whose name is not valid UTF-8")
    sub = files / "mixed"
    sub.mkdir()
    (sub / "fine.md").write_text("# fine\n\nA fine markdown file.")
    (sub / "escape.txt").symlink_to(outside / "secret.txt")
    return base


@pytest.fixture(scope="module")
def mcp(root):
    settings = Settings(data_dir=root / "data", allowed_roots=[root / "files"], log_level="WARNING")
    with serve(settings, Mcp, root=root) as m:
        for name in ("kb", "victim"):
            r = m.call("ingest", {"collection": name, "documents": SEED})
            assert not r.is_error, _text(r)
        yield m
        _write_stats()


def _write_stats() -> None:
    record("hostile_inputs_tried", TRIED["n"])
    record("hostile_outcomes", OUTCOMES)


SEED = [
    {"id": "fox", "text": "The quick brown fox jumps over the lazy dog.", "metadata": {"topic": "animals", "year": 2019}},
    {"id": "vitd", "text": "Vitamin D deficiency is associated with bone fractures.",
     "metadata": {"topic": "health", "year": 2021, "tags": ["a", "b"], "nested": {"x": 1}}},
    {"id": "faiss", "text": "FAISS performs efficient similarity search over dense vectors.",
     "metadata": {"topic": "software", "year": 2023, "weird": "'; DROP TABLE chunks; --"}},
    {"id": "rtl\u202e\u200bid", "text": "Right-to-left \u202eoverride\u202c and zero\u200bwidth characters \u0645\u0631\u062d\u0628\u0627.",
     "metadata": {"\u202ekey": "\u200b", "emoji": "\U0001f600"}},
]


# ---------------------------------------------------------------------------- strategies

NASTY_STRINGS = [
    "", " ", "\t\n\r", "\x00", "a\x00b", "\x01\x02\x1b[31mred\x1b[0m\x7f", "\ud800", "x\udfffy", "\udc80\udcff",
    "\u202eevil\u202c", "\u200b\u200c\u200d\u2060\ufeff", "\u0301\u0301\u0301", "\U0010ffff\U000e0001", "\uffff\ufffe",
    "'; DROP TABLE chunks; --", "\" OR 1=1 --", "') OR ('1'='1", "1; SELECT * FROM meta", "$where", "$.x", 'a"]',
    "a'].b[0", "$..*", "a.b.c", "..", "../../etc/passwd", "%s%n%x%d", "{{7*7}}${7*7}", "\\", "\\\\u0000", "*", "?",
    "title:foo AND bar", "+a -b ~c ^2 [x TO y] {a}", "(((((", "NOT", "null", "NaN", "Infinity", "-1", "1e309",
    "<script>alert(1)</script>", "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd", "\U0001f600" * 30,
    "a" * 5000, "word " * 2000, "vitamin", "fox", "kb", "default", "bm25",
]
UNICODE_CHAOS = st.characters(categories=["Cc", "Cf", "Cs", "Co", "Zs", "Zl", "Zp", "Mn", "Lo", "So", "Nd"])
text = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=40),
    st.text(alphabet=UNICODE_CHAOS, max_size=30),
    st.builds(lambda a, b: a + b, st.sampled_from(NASTY_STRINGS), st.text(alphabet=UNICODE_CHAOS, max_size=10)),
)
big_ints = st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**70, -(2**70), 10**100])
numbers = st.one_of(big_ints, st.integers(-5, 20), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]))
scalar = st.one_of(text, numbers, st.booleans(), st.none())
json_value = st.recursive(scalar, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(text, ch, max_size=4),
                          max_leaves=10)


def _deep(depth: int, leaf: Any = 1, as_list: bool = False) -> Any:
    v = leaf
    for _ in range(depth):
        v = [v] if as_list else {"a": v}
    return v


monsters = st.sampled_from([
    _deep(100), _deep(100, as_list=True), _deep(101, "x"), {"k" * 100_000: 1}, {"k": "v" * 70_000},
    {str(i): i for i in range(2000)}, [None] * 5000, {"": ""}, {"\x00": "\x00"},
])
anything = st.one_of(json_value, monsters)

FIELDS = ["topic", "year", "tags", "nested.x", "missing", "weird", "emoji", "a\"]", "$.x", "$where", "a') OR 1=1 --",
          "x; DROP TABLE documents", "year) OR 1=1 OR (1", "__proto__", "constructor", "a..b", ".a", "a.", "0",
          "a" * 200, "\u202ekey", "topic\x00", "a[0]", "'", "*"]
OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$where", "$regex", "$expr", "$function",
       "$and", "$or", "$not", "$", "$$", "$eq\x00"]
field = st.one_of(st.sampled_from(FIELDS), text)


def _filters():
    leaf_value = st.one_of(scalar, st.lists(scalar, max_size=5), st.dictionaries(st.sampled_from(OPS), json_value,
                                                                                   max_size=3))
    base = st.dictionaries(field, leaf_value, min_size=1, max_size=3)
    return st.recursive(
        base,
        lambda ch: st.one_of(
            st.dictionaries(st.sampled_from(["$and", "$or"]), st.lists(ch, max_size=3), min_size=1, max_size=2),
            st.dictionaries(st.just("$not"), ch, min_size=1, max_size=1),
            st.dictionaries(st.sampled_from(OPS), ch, min_size=1, max_size=2),
        ),
        max_leaves=8,
    )


filters = st.one_of(_filters(), anything, st.sampled_from([
    {"$where": "1=1"}, {"topic": {"$where": "sleep(10)"}}, {"$.topic": "health"}, {'topic"]': 1},
    {"topic": {"$in": list(range(1001))}}, {"topic": {"$in": []}}, _deep(40, {"topic": "x"}),
    {"$or": [{"year": {"$gt": i}} for i in range(100)]}, {"year": 2**70}, {"year": {"$gt": math.nan}},
    {"year": {"$lt": math.inf}}, {"topic": "\ud800"}, {"topic": {"$in": ["\ud800", "\x00"]}},
]))
query = st.one_of(st.sampled_from(["vitamin D bones", "fox", "dense vectors", "software 2023", "override"]), text)
good_filters = st.sampled_from([
    {"topic": "health"}, {"year": {"$gte": 2020}}, {"tags": {"$in": ["a", "z"]}}, {"nested.x": 1},
    {"$or": [{"topic": "animals"}, {"year": {"$lt": 2022, "$gt": 2000}}]}, {"missing": {"$exists": False}},
    {"$not": {"topic": "health"}}, {"weird": "'; DROP TABLE chunks; --"}, {"emoji": "\U0001f600"},
    {"topic": {"$nin": ["health"], "$ne": None}}, {"year": {"$in": [2019, 2021.0, True, None, "2023"]}},
])
collection = st.one_of(st.sampled_from(["kb", "nope", "default", "KB", "kb ", "-kb", "a" * 65, "a/b", "..", "kb\x00"]), text)
RERANKERS = ["bm25", "embedding", "nosuch", "BM25", "bm25 ", "", "../bm25", "rerank_mcp.tools.rerank.bm25:BM25Reranker",
             "__class__", "cohere", "rankllm"]
reranker_name = st.one_of(st.sampled_from(RERANKERS), text)
bm25_options = st.one_of(
    st.none(), anything,
    st.fixed_dictionaries({}, optional={"variant": st.one_of(st.sampled_from(["okapi", "l", "plus"]), text),
                                        "k1": numbers, "b": numbers, "epsilon": numbers, "delta": numbers,
                                        "idf": st.one_of(st.sampled_from(["lucene", "okapi"]), text),
                                        "model": anything, "__init__": anything}),
)


def _maybe(strategy, hostile=anything):
    """A plausible value five times in six, a hostile value of any type otherwise (so that most
    calls get past the schema and reach the tool's own checks and the index)."""
    return st.integers(0, 5).flatmap(lambda i: hostile if i == 3 else strategy)  # not a boundary: hypothesis favours those


passage = _maybe(st.one_of(text, st.fixed_dictionaries({"text": text}, optional={"id": _maybe(text),
                                                                                  "metadata": anything})))


# ---------------------------------------------------------------------------- properties

@PROPS
@given(args=st.fixed_dictionaries({
    "query": _maybe(query),
    "collection": _maybe(st.sampled_from(["kb", "kb", "kb", "nope"]), st.one_of(collection, anything)),
}, optional={
    "k": _maybe(st.integers(1, 20), numbers), "mode": _maybe(st.sampled_from(["dense", "bm25", "hybrid"])),
    "fusion": _maybe(st.sampled_from(["rrf", "minmax", "zscore"])),
    "weights": _maybe(st.dictionaries(st.one_of(st.sampled_from(["dense", "bm25"]), text), numbers, max_size=3)),
    "filter": st.one_of(good_filters, filters), "rerank": _maybe(st.fixed_dictionaries(
        {"reranker": st.sampled_from(["bm25", "nosuch", "BM25"])},
        optional={"options": st.dictionaries(text, json_value, max_size=2), "candidates": numbers})),
    "feedback": _maybe(st.booleans()), "max_tokens": _maybe(st.integers(1, 400), numbers),
    "group_by": _maybe(st.sampled_from(["document", None])), "expand": _maybe(st.integers(0, 3), numbers),
    "dedupe": _maybe(st.sampled_from([True, False, None])),
}))
def test_search(mcp, args):
    mcp.check("search", args)


@PROPS
@given(args=st.fixed_dictionaries({
    "query": _maybe(query), "passages": _maybe(st.lists(passage, max_size=6)),
    "reranker": _maybe(st.sampled_from(["bm25", "bm25", "bm25", "nosuch", "BM25"])),
}, optional={"options": bm25_options, "top_n": _maybe(st.integers(1, 8), numbers), "return_text": _maybe(st.booleans())}))
def test_rerank(mcp, args):
    if args.get("reranker") in ("embedding",):
        args.pop("options", None)
    mcp.check("rerank", args)


@PROPS
@given(reranker=reranker_name, query=text, passages=st.lists(text, min_size=1, max_size=4))
def test_rerank_by_any_name(mcp, reranker, query, passages):
    mcp.check("rerank", {"query": query, "passages": passages, "reranker": reranker})


@PROPS
@given(args=st.fixed_dictionaries({
    "query": _maybe(query), "passages": _maybe(st.lists(passage, min_size=1, max_size=5)),
    "rerankers": _maybe(st.lists(st.one_of(
        st.sampled_from(["bm25", "bm25(variant=plus)", "bm25={\"k1\": 2}", "nosuch", "bm25(k1=nan)", "", "auto"]),
        st.fixed_dictionaries({"reranker": st.sampled_from(["bm25", "nosuch"])},
                              optional={"options": bm25_options, "label": _maybe(text)})), min_size=1, max_size=3)),
}, optional={"judgments": _maybe(st.one_of(st.lists(numbers, max_size=5),
                                           st.dictionaries(text, numbers, max_size=3))),
             "k": _maybe(st.integers(1, 10), numbers)}))
def test_compare_rerankers(mcp, args):
    mcp.check("compare_rerankers", args)


judgment = _maybe(st.fixed_dictionaries({"query": _maybe(query), "relevant": _maybe(st.one_of(
    st.lists(st.one_of(st.sampled_from(["fox", "vitd", "faiss", "nope"]), text), max_size=3),
    st.dictionaries(st.sampled_from(["fox", "vitd", "faiss"]), st.integers(-2, 3), max_size=2)))},
    optional={"query_id": _maybe(text)}))


@PROPS
@given(args=st.fixed_dictionaries({
    "collection": _maybe(st.sampled_from(["kb", "kb", "nope"]), collection),
    "judgments": _maybe(st.lists(judgment, min_size=1, max_size=3)),
}, optional={"pipelines": _maybe(st.lists(st.one_of(
    st.sampled_from(["bm25", "hybrid-rrf", "hybrid-zscore(dense=1,bm25=0.5)", "bm25+bm25", "dense(feedback)",
                     "nope", "hybrid-server-rrf", "bm25+nosuch", "hybrid(dense=nan)"]), text), min_size=1, max_size=3)),
             "allow_stand_in": _maybe(st.booleans())}))
def test_evaluate(mcp, args):
    mcp.check("evaluate", args)


document = _maybe(st.fixed_dictionaries({"text": text}, optional={"id": _maybe(text), "metadata": _maybe(
    st.dictionaries(text, json_value, max_size=4), st.one_of(anything, monsters))}))


@PROPS
@given(args=st.fixed_dictionaries({"documents": _maybe(st.lists(document, min_size=1, max_size=3))}, optional={
    "collection": _maybe(st.sampled_from(["ingested", "kb"]), st.one_of(text, st.sampled_from(["nope\x00", "a" * 65]))),
    "chunk_size": _maybe(numbers), "chunk_overlap": _maybe(numbers), "skip_invalid": _maybe(st.booleans()),
}))
def test_ingest_documents(mcp, args):
    mcp.check("ingest", args)


def _paths(root: Path) -> list[str]:
    files, outside = root / "files", root / "outside"
    return [
        str(files / "good.txt"), str(files / "latin1.txt"), str(files / "broken.md"), str(files / "nul.txt"),
        str(files / "empty.txt"), str(files / "fake.pdf"), str(files / "page.html"), str(files / "link-out.txt"),
        str(files / "link-dir-out"), str(files / "link-dir-out" / "also-secret.md"), str(files / "loop"),
        str(files / "mixed"), str(files), str(files / "weird-names"), str(files / "weird-names") + "/caf\udce9.txt",
        str(files / "weird-names" / "latin1-name-caf\udce9.txt"), str(files / ".." / "outside" / "secret.txt"), "../outside/secret.txt",
        "good.txt", "mixed/../good.txt", str(outside / "secret.txt"), str(outside), "/etc/passwd", "/", "", " ",
        "~", "~root/.bashrc", "file:///etc/passwd", "\x00", str(files / "good.txt\x00.md"), "a/" * 3000,
        str(files / "\ud800.txt"), str(files / "missing.txt"), "*", str(files) + "/../../../../../../etc/shadow",
        "/proc/self/environ", "/dev/zero", "/dev/urandom",
    ]


@PROPS
@given(data=st.data())
def test_ingest_paths(mcp, data):
    paths = data.draw(_maybe(st.lists(st.one_of(st.sampled_from(_paths(mcp.root)), text), min_size=1, max_size=4)))
    args = {"collection": "files", "paths": paths}
    if data.draw(st.booleans()):
        args["glob"] = data.draw(_maybe(st.one_of(st.sampled_from(["*", "*.txt", "*.md", "[", "**/*", "../*", "*\x00"]),
                                                  text)))
    if data.draw(st.booleans()):
        args["skip_invalid"] = data.draw(_maybe(st.booleans()))
    mcp.check("ingest", args)


@PROPS
@given(args=st.fixed_dictionaries({"collection": _maybe(st.sampled_from(["victim", "nope"]), text)}, optional={
    "ids": _maybe(st.lists(st.one_of(st.sampled_from(["fox", "vitd", "nope"]), text), max_size=4)),
    "filter": st.one_of(good_filters, filters),
    "drop_collection": _maybe(st.just(False)),
}))
def test_delete(mcp, args):
    mcp.check("delete", args)


TOOL_PARAMS = {name: list(spec.request.model_fields) for name, spec in CATALOG.items()}


def test_every_tool_and_argument_is_fuzzed():
    """The tables follow the catalog: a tool or argument added there is thrown hostile values here."""
    assert set(TOOL_PARAMS) == set(CATALOG) and set(RESULTS) == set(CATALOG)
    assert TOOL_PARAMS["search"][:2] == ["query", "collection"] and "dedupe" in TOOL_PARAMS["search"]


@PROPS
@given(data=st.data())
def test_wrong_types_for_every_argument(mcp, data):
    tool = data.draw(st.sampled_from(sorted(TOOL_PARAMS)))
    keys = TOOL_PARAMS[tool] + ["unknown_arg", "__proto__", "ctx", "roots", "r"]
    args = data.draw(st.dictionaries(st.sampled_from(keys), anything, max_size=4))
    if tool == "delete" and args.get("drop_collection") is True:
        args["collection"] = "nope"
    mcp.check(tool, args)


# ---------------------------------------------------------------------------- named attacks

ATTACKS = [
    ("metadata-depth-100", "ingest", {"collection": "deep", "documents": [
        {"id": "deep", "text": "deeply nested metadata", "metadata": {"m": _deep(100)}}]}),
    ("metadata-depth-100-list", "ingest", {"collection": "deep", "documents": [
        {"id": "deepl", "text": "deeply nested list metadata", "metadata": {"m": _deep(100, as_list=True)}}]}),
    ("metadata-huge-key", "ingest", {"collection": "deep", "documents": [
        {"id": "hk", "text": "huge key", "metadata": {"k" * 100_000: 1}}]}),
    ("metadata-nan", "ingest", {"collection": "deep", "documents": [{"text": "nan", "metadata": {"x": math.nan}}]}),
    ("metadata-inf", "ingest", {"collection": "deep", "documents": [{"text": "inf", "metadata": {"x": math.inf}}]}),
    ("metadata-big-int", "ingest", {"collection": "deep", "documents": [{"id": "bigint", "text": "a big integer",
                                                                        "metadata": {"n": 2**70, "m": -(2**70)}}]}),
    ("metadata-surrogate-key", "ingest", {"collection": "deep", "documents": [{"text": "s", "metadata": {"\ud800": 1}}]}),
    ("id-surrogate", "ingest", {"collection": "deep", "documents": [{"id": "\udfff", "text": "lone surrogate id"}]}),
    ("id-control", "ingest", {"collection": "deep", "documents": [{"id": "\x1b[2J\r\n", "text": "control id"}]}),
    ("text-surrogate", "ingest", {"collection": "deep", "documents": [{"text": "bad \ud800 text"}]}),
    ("text-nul", "ingest", {"collection": "deep", "documents": [{"text": "bad \x00 text"}]}),
    ("chunk-size-huge", "ingest", {"collection": "deep", "documents": [{"text": "x"}], "chunk_size": 2**70}),
    ("chunk-overlap-negative", "ingest", {"collection": "deep", "documents": [{"text": "x"}], "chunk_overlap": -(2**70)}),
    ("filter-sql-field", "search", {"query": "fox", "collection": "kb", "filter": {"topic') OR 1=1 --": "x"}}),
    ("filter-sql-value", "search", {"query": "fox", "collection": "kb", "filter": {"topic": "x' OR '1'='1"}}),
    ("filter-where", "search", {"query": "fox", "collection": "kb", "filter": {"$where": "this.year > 0"}}),
    ("filter-jsonpath-quote", "search", {"query": "fox", "collection": "kb", "filter": {'a"]': 1}}),
    ("filter-jsonpath-dollar", "search", {"query": "fox", "collection": "kb", "filter": {"$.topic": "animals"}}),
    ("filter-jsonpath-wildcard", "search", {"query": "fox", "collection": "kb", "filter": {"$..*": 1}}),
    ("filter-surrogate-value", "search", {"query": "fox", "collection": "kb", "filter": {"topic": "\ud800"}}),
    ("filter-nan", "search", {"query": "fox", "collection": "kb", "filter": {"year": {"$gt": math.nan}}}),
    ("filter-huge-int", "search", {"query": "fox", "collection": "kb", "filter": {"year": {"$lt": 2**70}}}),
    ("filter-deep", "search", {"query": "fox", "collection": "kb", "filter": _deep(100, {"topic": "x"})}),
    ("delete-filter-sql", "delete", {"collection": "victim", "filter": {"topic": {"$ne": "'; DELETE FROM documents; --"},
                                                                        "year": {"$gt": 3000}}}),
    ("delete-filter-where", "delete", {"collection": "victim", "filter": {"$where": "1"}}),
    ("delete-ids-surrogate", "delete", {"collection": "victim", "ids": ["\ud800"]}),
    ("delete-ids-many", "delete", {"collection": "victim", "ids": ["x"] * 10_001}),
    ("weights-nan", "search", {"query": "fox", "collection": "kb", "weights": {"dense": math.nan}}),
    ("weights-inf", "search", {"query": "fox", "collection": "kb", "weights": {"dense": math.inf, "bm25": 1.0}}),
    ("weights-inf-minmax", "search", {"query": "fox", "collection": "kb", "fusion": "minmax",
                                      "weights": {"dense": math.inf, "bm25": 0.0}}),
    ("weights-zero", "search", {"query": "fox", "collection": "kb", "fusion": "zscore",
                                "weights": {"dense": 0.0, "bm25": 0.0}}),
    ("k-huge", "search", {"query": "fox", "collection": "kb", "k": 2**70}),
    ("k-negative-huge", "search", {"query": "fox", "collection": "kb", "k": -(2**70)}),
    ("k-float", "search", {"query": "fox", "collection": "kb", "k": 2.5}),
    ("k-nan", "search", {"query": "fox", "collection": "kb", "k": math.nan}),
    ("query-surrogate", "search", {"query": "\ud800 fox", "collection": "kb", "mode": "dense"}),
    ("query-surrogate-bm25", "search", {"query": "fox \udfff", "collection": "kb", "mode": "bm25"}),
    ("query-control", "search", {"query": "\x1b\x07\x08 fox \u202e", "collection": "kb"}),
    ("query-only-zero-width", "search", {"query": "\u200b\u200c\u200d", "collection": "kb"}),
    ("rerank-surrogate-query", "rerank", {"query": "\ud800", "passages": ["a", "b"], "reranker": "bm25"}),
    ("rerank-surrogate-passage", "rerank", {"query": "fox", "passages": ["\udfff fox"], "reranker": "embedding"}),
    ("rerank-nul-passage", "rerank", {"query": "fox", "passages": ["a\x00b"], "reranker": "bm25"}),
    ("rerank-top-n-huge", "rerank", {"query": "fox", "passages": ["a", "fox"], "reranker": "bm25", "top_n": 2**70}),
    ("rerank-top-n-negative", "rerank", {"query": "fox", "passages": ["a"], "reranker": "bm25", "top_n": -(2**70)}),
    ("rerank-bm25-k1-nan", "rerank", {"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25",
                                      "options": {"k1": math.nan}}),
    ("rerank-bm25-k1-inf", "rerank", {"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25",
                                      "options": {"k1": math.inf}}),
    ("rerank-bm25-delta-nan", "rerank", {"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25",
                                         "options": {"variant": "plus", "delta": math.nan}}),
    ("rerank-options-class", "rerank", {"query": "fox", "passages": ["fox"], "reranker": "bm25",
                                        "options": {"__class__": "x", "context": 1, "registry": 2}}),
    ("rerank-empty-passages", "rerank", {"query": "fox", "passages": [], "reranker": "bm25"}),
    ("rerank-metadata-deep", "rerank", {"query": "fox", "reranker": "bm25",
                                        "passages": [{"text": "fox", "metadata": _deep(100)}]}),
    ("rerank-unknown", "rerank", {"query": "fox", "passages": ["fox"], "reranker": "'; DROP TABLE x; --"}),
    ("rerank-cohere-unconfigured", "rerank", {"query": "fox", "passages": ["fox"], "reranker": "cohere"}),
    ("rerank-rankllm-unconfigured", "rerank", {"query": "fox", "passages": ["fox"], "reranker": "rankllm"}),
    ("search-rerank-unknown", "search", {"query": "fox", "collection": "kb", "rerank": {"reranker": "../../x"}}),
    ("search-unknown-collection", "search", {"query": "fox", "collection": "../../../etc"}),
    ("delete-unknown-collection", "delete", {"collection": "nope", "drop_collection": True}),
]


@pytest.mark.parametrize("case,tool,args", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_named_attack(mcp, case, tool, args):
    mcp.check(tool, args)


def test_paths_outside_the_roots_are_refused(mcp):
    root = mcp.root
    files = root / "files"
    for p in [str(files / "link-out.txt"), str(files / "link-dir-out"), str(files / ".." / "outside" / "secret.txt"),
              "../outside/secret.txt", str(root / "outside"), "/etc/passwd", str(files / "loop")]:
        r = mcp.check("ingest", {"collection": "files", "paths": [p]})
        assert r.is_error, f"{p} was ingested"
        assert "secret" not in json.dumps(r.structured_content or {}), p
    # a folder holding a symlink that escapes: the escaping file is skipped, never read
    r = mcp.check("ingest", {"collection": "files", "paths": [str(files / "mixed")]})
    assert not r.is_error, _text(r)
    assert [Path(d["id"]).name for d in r.structured_content["documents"]] == ["fine.md"]
    # invalid UTF-8 is a clear error naming the file; skip_invalid reports it
    r = mcp.check("ingest", {"collection": "files", "paths": [str(files / "broken.md")]})
    assert r.is_error and "UTF-8" in _text(r)
    r = mcp.check("ingest", {"collection": "files", "paths": [str(files / "broken.md"), str(files / "good.txt")],
                             "skip_invalid": True})
    assert not r.is_error
    out = {Path(d["id"]).name: d["status"] for d in r.structured_content["documents"]}
    assert out["broken.md"] == "failed" and out["good.txt"] in ("added", "unchanged")


def test_file_names_that_are_not_utf8(mcp):
    """A folder holding a file whose name is in another encoding (bytes that are not UTF-8)."""
    weird = mcp.root / "files" / "weird-names"
    r = mcp.check("ingest", {"collection": "names", "paths": [str(weird)]})
    assert r.is_error and "not valid UTF-8" in _text(r), _text(r)
    r = mcp.check("ingest", {"collection": "names", "paths": [str(weird)], "skip_invalid": True})
    assert not r.is_error, _text(r)
    out = {d["id"]: d for d in r.structured_content["documents"]}
    assert out[str(weird / "fine.txt")]["status"] == "added"
    assert out[str(weird / "\u202eevil\u200b.txt")]["status"] == "added"
    failed = [d for d in out.values() if d["status"] == "failed"]
    assert len(failed) == 1 and "rename" in failed[0]["reason"], failed  # the non-UTF-8 symlink is fine.txt


def test_hostile_content_round_trips_through_search(mcp):
    """Documents full of hostile (but valid) unicode come back byte for byte."""
    text_ = "Zero\u200bwidth, RTL \u202eevil\u202c, emoji \U0001f600, controls \x07\x1b, quotes '\" and \\ end"
    meta = {"k'\"]": "v\u202e", "deep": _deep(50), "n": 2**62, "f": 1e308}
    r = mcp.check("ingest", {"collection": "roundtrip", "documents": [{"id": "h\u200b", "text": text_, "metadata": meta}]})
    assert not r.is_error, _text(r)
    r = mcp.check("search", {"query": "emoji quotes", "collection": "roundtrip", "mode": "bm25"})
    hit = r.structured_content["hits"][0]
    assert hit["text"] == text_ and hit["doc_id"] == "h\u200b" and hit["metadata"] == meta


def test_the_server_is_still_healthy(mcp):
    """Runs last in this module: after everything above, normal work still works."""
    t0 = time.perf_counter()
    r = mcp.check("ingest", {"collection": "health", "documents": SEED})
    assert not r.is_error and r.structured_content["added"] == len(SEED), _text(r)
    r = mcp.check("search", {"query": "vitamin D bones", "collection": "health", "k": 2, "mode": "hybrid"})
    assert not r.is_error and r.structured_content["hits"][0]["doc_id"] == "vitd"
    r = mcp.check("rerank", {"query": "fox", "passages": ["dog", "the fox"], "reranker": "bm25"})
    assert r.structured_content["passages"][0]["index"] == 1
    assert time.perf_counter() - t0 < 20
    assert TRIED["n"] > 300, TRIED["n"]


# ---------------------------------------------------------------------------- raw stdio

RAW_CALLS = [
    # Valid JSON that parses to infinity (1e400) and the NaN/Infinity tokens Python's json emits.
    ("search", '{"query": "fox", "collection": "kb", "weights": {"dense": 1e400, "bm25": 1}}'),
    ("search", '{"query": "fox", "collection": "kb", "fusion": "minmax", "weights": {"dense": 1e300, "bm25": 1e300}}'),
    ("search", '{"query": "fox", "collection": "kb", "weights": {"dense": NaN}}'),
    ("search", '{"query": "fox", "collection": "kb", "filter": {"year": {"$lt": 1e400}}}'),
    ("search", '{"query": "fox", "collection": "kb", "filter": {"year": {"$gt": NaN}}}'),
    ("search", '{"query": "fox", "collection": "kb", "k": 1e400}'),
    ("search", '{"query": "fox", "collection": "kb", "rerank": {"reranker": "bm25", "options": {"k1": 1e400}}}'),
    ("rerank", '{"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25", "options": {"k1": 1e400}}'),
    ("rerank", '{"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25", "options": {"k1": NaN}}'),
    ("rerank", '{"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25", "options": {"k1": 1e308}}'),
    ("rerank", '{"query": "fox", "passages": ["fox", "dog"], "reranker": "bm25", "options": {"variant": "plus", "delta": -Infinity}}'),
    ("rerank", '{"query": "fox", "passages": [{"text": "fox", "metadata": {"x": NaN}}], "reranker": "bm25"}'),
    ("rerank", '{"query": "fox", "passages": ["fox"], "reranker": "bm25", "top_n": 1e400}'),
    ("ingest", '{"collection": "raw", "documents": [{"text": "inf meta", "metadata": {"x": 1e400}}]}'),
    ("ingest", '{"collection": "raw", "documents": [{"text": "nan meta", "metadata": {"x": NaN}}]}'),
    ("ingest", '{"collection": "raw", "documents": [{"text": "big int", "metadata": {"x": 123456789012345678901234567890}}]}'),
    ("search", '{"query": "\\u202e\\u200b fox \\u0000", "collection": "kb"}'),
    ("search", '{"query": "fox", "collection": "kb", "filter": {"$where": "1", "a\\"]": 1}}'),
]
# Lines answered with nothing (the SDK's stdio reader drops what it cannot parse, including
# legal JSON whose \\ud800 escapes are not Unicode); the server must simply go on answering.
RAW_LINES = [
    b'{"jsonrpc": "2.0", "id": 905, "method": "tools/call", "params": {"name": "search", "arguments": '
    b'{"query": "fox \\ud800", "collection": "kb"}}}\n',
    b'{"jsonrpc": "2.0", "id": 906, "method": "tools/call", "params": {"name": "ingest", "arguments": '
    b'{"collection": "raw", "documents": [{"id": "\\udfff", "text": "lone surrogate id"}]}}}\n',
    b"this is not json\n",
    b'{"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {"name": "search", "arguments": {"query": "\xff\xfe"}}}\n',
    b'{"jsonrpc": "2.0", "id": 901, "method": "tools/call", "params": {"name": "search", "arguments": ' + b'[' * 5000 + b"\n",
    b'{"jsonrpc": "2.0", "id": 902, "method": "tools/call", "params": {"name": "nosuch", "arguments": {}}}\n',
    b'{"jsonrpc": "2.0", "id": 903, "method": "tools/call", "params": {"name": "search", "arguments": "x"}}\n',
    b'{"jsonrpc": "2.0", "id": 904, "method": "no/such/method", "params": {}}\n',
    b"\n",
]


def test_raw_stdio_numbers_and_escapes_only_json_can_carry(tmp_path):
    """Through the real stdio transport, with hand-written JSON: what an in-memory client cannot
    send (its arguments are Python objects: it turns NaN and infinity into null and refuses lone
    surrogates). Every request gets an answer, no result carries NaN/infinity, errors leak nothing,
    and the server is still answering at the end."""
    import queue
    import subprocess
    import sys
    import threading

    exe = str(Path(sys.executable).with_name("rerank-mcp"))
    files = tmp_path / "files"
    files.mkdir()
    # a bare environment: of this process's, only HOME and PATH (and the test run's model caches)
    env = offline_env({"HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", ""), **model_caches()},
                      RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_ALLOWED_ROOTS=json.dumps([str(files)]),
                      RERANK_MCP_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([exe, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env)
    answers: dict[int, dict] = {}
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, b"")] + [lines.put(b"")],
                     daemon=True).start()

    def send(raw: bytes) -> None:
        proc.stdin.write(raw)
        proc.stdin.flush()

    def request(i: int, method: str, params: str) -> None:
        send(f'{{"jsonrpc": "2.0", "id": {i}, "method": "{method}", "params": {params}}}\n'.encode())

    def wait_for(i: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while i not in answers:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no answer to request {i} within {timeout:g} s")
            assert line, f"the server closed stdout (exit code {proc.poll()}) before answering {i}"
            msg = json.loads(line)  # strict enough: NaN would parse, so it is checked below
            if "id" in msg:
                answers[msg["id"]] = msg
        return answers[i]

    try:
        request(0, "initialize", json.dumps({"protocolVersion": "2025-11-25", "capabilities": {},
                                             "clientInfo": {"name": "raw", "version": "0"}}))
        wait_for(0)
        send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        request(1, "tools/call", json.dumps({"name": "ingest", "arguments": {"collection": "kb", "documents": SEED}}))
        assert not wait_for(1)["result"].get("isError"), answers[1]
        for n, (tool, args) in enumerate(RAW_CALLS, start=100):
            TRIED["n"] += 1
            seq_probe = n + 1000
            request(n, "tools/call", f'{{"name": "{tool}", "arguments": {args}}}')
            msg = wait_for(n)
            raw = json.dumps(msg)
            assert "NaN" not in raw and "Infinity" not in raw, f"{tool} {args}: {raw[:300]}"
            if "result" in msg and not msg["result"].get("isError"):
                sc = msg["result"].get("structuredContent")
                validate_result(tool, sc)  # a NaN score arrives as null and fails here
            text = raw if "error" in msg else " ".join(c.get("text", "") for c in msg["result"].get("content", []))
            for bad in ("Traceback", 'File "/', "site-packages", "internal error"):
                assert bad not in text, f"{tool} {args}: {text[:300]}"
            request(seq_probe, "tools/call", '{"name": "list_collections", "arguments": {}}')
            assert "result" in wait_for(seq_probe), "the server stopped answering"
        for raw_line in RAW_LINES:
            TRIED["n"] += 1
            send(raw_line)
        request(2, "tools/call", '{"name": "search", "arguments": {"query": "vitamin D", "collection": "kb", "k": 1}}')
        final = wait_for(2)
        assert final["result"]["structuredContent"]["hits"][0]["doc_id"] == "vitd", final
        assert proc.poll() is None, "the server exited"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
