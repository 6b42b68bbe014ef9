"""Components take their configuration whole: a family receives its validated ``Options`` (no
constructor restates them, rules between options are the model's validators), its operator
settings reach it as its own ``Config`` (nothing copies them on the way), each default is written
once, and a new remote family is one module, one registry line and its settings."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from rerank_mcp.errors import InvalidInput
from rerank_mcp.server.settings import Settings
from rerank_mcp.tools.rerank import defaults
from rerank_mcp.tools.rerank import registry as registry_mod
from rerank_mcp.tools.rerank.base import FamilyConfig, Reranker
from rerank_mcp.tools.rerank.registry import FAMILIES, Family, RerankContext, RerankerRegistry
from tests.fixtures.servers import _Server

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("errors.py", "index", "tools", "server")  # the code the server runs


def _classes() -> dict[str, type[Reranker]]:
    reg = RerankerRegistry()
    return {name: registry_mod._import_class(reg.family(name)) for name in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_constructors_take_the_options_whole(family):
    """No family restates its options as keyword arguments: a constructor takes the validated
    model, the context and the registry, or has none of its own."""
    cls = _classes()[family]
    assert list(inspect.signature(cls.__init__).parameters) == ["self", "options", "context", "registry"]
    for name in ("availability", "default_model", "default_model_ref", "status_note", "known_models"):
        assert isinstance(inspect.getattr_static(cls, name), classmethod), (family, name)


@pytest.mark.parametrize("family,options,message", [
    ("rankllm", {"window_size": 5, "stride": 5}, "stride (5) must be smaller than window_size (5)"),
    ("bm25", {"variant": "plus", "idf": "okapi"}, "idf=okapi only applies to variant okapi"),
    ("bm25", {"epsilon": 0.2}, "epsilon only applies to variant okapi with idf=okapi"),
    ("bm25", {"delta": 0.5}, "delta only applies to variants l and plus"),
    ("bm25", {"analyzer": "klingon"}, "unknown analyzer 'klingon'"),
    ("cross-encoder", {"backend": "onnx", "device": "cuda"}, "backend 'onnx' runs on the CPU"),
    ("cross-encoder", {"device": "tpu"}, "must be cpu, cuda, cuda:N or auto"),
    ("cascade", {"stages": []}, "non-empty"),
    ("cascade", {"stages": [{"reranker": "bm25"}, {"reranker": "bm25"}]}, "stage 1 needs top_k"),
    ("cascade", {"stages": [{"reranker": "cascade"}]}, "cannot itself be a cascade"),
])
def test_rules_between_options_are_the_models_validators(family, options, message):
    """The Options model refuses what the family would: validating options alone (as compare,
    evaluate and list_rerankers' schema users do) needs no instance."""
    cls = _classes()[family]
    with pytest.raises(ValidationError, match=re.escape(message)):
        cls.Options.model_validate(options)
    with pytest.raises(InvalidInput, match=f"^bad options for reranker '{family}': .*{re.escape(message)}"):
        cls.parse_options(options)


def test_each_familys_settings_reach_it_whole(tmp_path):
    settings = Settings(data_dir=tmp_path, cohere_api_key="co-key", cohere_model="rerank-english-v3.0",
                        cohere_base_url="http://127.0.0.1:9", llm_base_url="http://127.0.0.1:8/v1/",
                        llm_model="zephyr", cross_encoder_model="org/ce", flashrank_model="ms-marco-MultiBERT-L-12",
                        flashrank_cache_dir=tmp_path / "fr")
    reg = RerankerRegistry(RerankContext(settings=settings))
    cohere = reg.get("cohere")
    assert (cohere.model, cohere.base_url) == ("rerank-english-v3.0", "http://127.0.0.1:9")
    assert reg.availability("cohere") is None and "co-key" not in repr(cohere)
    llm = reg.get("rankllm")
    assert (llm.model, llm.base_url) == ("zephyr", "http://127.0.0.1:8/v1")
    ce = reg.resolve_class("cross-encoder")
    assert ce.default_model(reg.context) == "org/ce"
    fr = reg.get("flashrank")
    assert (fr.model, fr.cache_dir) == ("ms-marco-MultiBERT-L-12", str(tmp_path / "fr"))
    # a context's own entry for a family lies over the settings' (the server's FlashRank folder)
    reg2 = RerankerRegistry(RerankContext(settings=settings, configs={"flashrank": {"cache_dir": tmp_path / "x"}}))
    assert reg2.get("flashrank").cache_dir == str(tmp_path / "x")
    # options still win over both
    assert reg.get("cohere", {"model": "m2"}).model == "m2"


def test_without_settings_each_family_has_its_defaults():
    reg = RerankerRegistry()
    assert reg.resolve_class("cross-encoder").default_model(reg.context) == defaults.CROSS_ENCODER_MODEL
    assert reg.resolve_class("flashrank").default_model(reg.context) == defaults.FLASHRANK_MODEL
    assert reg.resolve_class("cohere").default_model(reg.context) == defaults.COHERE_MODEL
    with pytest.raises(InvalidInput, match="bad configuration of reranker 'cohere'"):
        RerankerRegistry(RerankContext(configs={"cohere": {"modle": "x"}})).resolve_class("cohere").default_model(
            RerankContext(configs={"cohere": {"modle": "x"}}))


def test_the_context_carries_no_familys_setting():
    """A family's settings pass from the settings to its Config, not through the context."""
    prefixes = {cls.Config.settings_prefix for cls in _classes().values() if cls.Config.settings_prefix}
    assert prefixes == {"cohere_", "llm_", "cross_encoder_", "flashrank_"}
    fields = set(RerankContext.__dataclass_fields__)
    assert not {f for f in fields if any(f.startswith(p) or f.startswith("default_" + p) for p in prefixes)}
    state = (ROOT / "server" / "state.py").read_text()
    assert not any(p + "api_key" in state or p + "model" in state for p in ("cohere_", "llm_"))


def test_every_familys_setting_has_its_configs_default():
    """Each field of a family's Config is a setting ``<prefix><field>`` with the same default."""
    for name, cls in _classes().items():
        prefix = cls.Config.settings_prefix
        if prefix is None:
            continue
        for field, info in cls.Config.model_fields.items():
            setting = Settings.model_fields.get(prefix + field)
            assert setting is not None, f"{name}: no setting {prefix}{field}"
            assert setting.default == info.default, (name, field)


def _default_literals(tree: ast.AST) -> list[tuple[int, object]]:
    """Constants written as defaults: field and class attribute values, Field(...)'s default,
    parameter defaults, and the last operand of ``x or <constant>``."""
    out = []
    for node in ast.walk(tree):
        values: list[ast.AST] = []
        if isinstance(node, (ast.AnnAssign, ast.Assign)) and node.value is not None:
            values.append(node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Field":
            values.extend(node.args[:1])
            values.extend(k.value for k in node.keywords if k.arg == "default")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            values.extend(node.args.defaults)
            values.extend(d for d in node.args.kw_defaults if d is not None)
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            values.append(node.values[-1])
        out.extend((v.lineno, v.value) for v in values if isinstance(v, ast.Constant))
    return out


def test_each_default_is_written_once():
    """The defaults of tools/rerank/defaults.py are written nowhere else in the server's code."""
    wanted = {v for k, v in vars(defaults).items() if k.isupper()}
    assert len(wanted) == 4
    found = []
    for part in PRODUCT:
        paths = [ROOT / part] if part.endswith(".py") else sorted((ROOT / part).rglob("*.py"))
        for path in paths:
            if path.name == "defaults.py":
                continue
            for line, value in _default_literals(ast.parse(path.read_text())):
                if value in wanted:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert found == []


def test_chunk_defaults_are_written_once():
    """chunk_size and chunk_overlap default to index/chunking.py's constants wherever they default."""
    found = []
    for part in ("index", "tools", "server"):
        for path in sorted((ROOT / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                pairs = []
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = node.args
                    pairs += list(zip([x.arg for x in a.args][len(a.args) - len(a.defaults):], a.defaults))
                    pairs += [(x.arg, d) for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    value = node.value
                    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Field" and value.args:
                        value = value.args[0]
                    pairs.append((node.target.id, value))
                found += [f"{path.relative_to(ROOT)}:{v.lineno}" for name, v in pairs
                          if name in ("chunk_size", "chunk_overlap") and isinstance(v, ast.Constant) and v.value]
    assert found == []


# --------------------------------------------------------------------- a new remote family

REMOTE_FAMILY = textwrap.dedent('''
    """``overlap``: a network scorer answering POST {base_url}/score {query, texts} -> {scores}."""
    from typing import Any, Sequence

    import httpx
    from pydantic import Field

    from rerank_mcp.errors import UpstreamError
    from rerank_mcp.tools.rerank.base import FamilyConfig, RemoteReranker, RerankOptions, Scored

    NO_URL = "no overlap endpoint: set RERANK_MCP_OVERLAP_BASE_URL"


    class OverlapConfig(FamilyConfig):  # RERANK_MCP_OVERLAP_BASE_URL, RERANK_MCP_OVERLAP_MODEL
        settings_prefix = "overlap_"

        base_url: str | None = None
        model: str = "overlap-v1"


    class OverlapOptions(RerankOptions):
        model: str | None = Field(None, description="model name sent to the endpoint")
        timeout: float = Field(10.0, gt=0, description="seconds per request")


    class OverlapReranker(RemoteReranker):
        family = "overlap"
        Options = OverlapOptions
        Config = OverlapConfig
        options: OverlapOptions
        config: OverlapConfig

        @classmethod
        def availability(cls, context: Any) -> str | None:
            return None if cls.family_config(context).base_url else NO_URL

        @classmethod
        def default_model(cls, context: Any) -> str | None:
            return cls.family_config(context).model

        def _unavailable(self) -> str | None:
            return None if self.config.base_url else NO_URL

        def _score_remote(self, query: str, texts: Sequence[str]) -> Scored:
            body = {"model": self.model, "query": query, "texts": list(texts)}
            try:
                r = httpx.post(f"{self.config.base_url}/score", json=body, timeout=self.options.timeout)
            except httpx.HTTPError as exc:
                raise UpstreamError(f"overlap endpoint failed: {type(exc).__name__}") from None
            if r.status_code != 200:
                raise UpstreamError(f"overlap endpoint answered HTTP {r.status_code}")
            return Scored([float(s) for s in r.json()["scores"]])
''')


class _OverlapPeer(_Server):
    """The network peer: scores a text by the query words it contains."""

    def handle(self, path, headers, body, step):
        if path != "/score":
            return 404, {"error": "not found"}, None
        words = set(body["query"].split())
        return 200, {"scores": [len(words & set(t.split())) for t in body["texts"]]}, None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_a_remote_family_is_one_module_one_registry_line_and_its_settings(monkeypatch, tmp_path):
    mod = types.ModuleType("overlap_family_for_test")
    exec(REMOTE_FAMILY, mod.__dict__)
    monkeypatch.setitem(sys.modules, "overlap_family_for_test", mod)
    # the registry line
    monkeypatch.setitem(registry_mod.FAMILIES, "overlap", Family(
        "overlap", "overlap_family_for_test:OverlapReranker", ("httpx",), "httpx",
        "query-word overlap over a network endpoint; a test family.", local=False))

    # the settings: one field per variable, named <prefix><field>
    class WithOverlap(Settings):
        overlap_base_url: str | None = None
        overlap_model: str = mod.OverlapConfig.model_fields["model"].default

    assert "overlap_base_url" not in RerankContext.__dataclass_fields__
    reg = RerankerRegistry(RerankContext(settings=WithOverlap(data_dir=tmp_path)))
    info = {i.name: i for i in reg.describe()}["overlap"]
    assert info.reason == mod.NO_URL and info.needs_network and info.default_model == "overlap-v1"

    with _OverlapPeer() as peer:
        monkeypatch.setenv("RERANK_MCP_OVERLAP_BASE_URL", peer.base_url)
        monkeypatch.setenv("RERANK_MCP_OVERLAP_MODEL", "overlap-v2")
        reg = RerankerRegistry(RerankContext(settings=WithOverlap(data_dir=tmp_path)))
        assert {i.name: i for i in reg.describe()}["overlap"].available
        res = reg.get("overlap").rerank("cats purr", ["dogs bark", "cats purr softly", "cats"])
        assert [p.index for p in res.passages] == [1, 2, 0] and res.model == "overlap-v2"
        assert peer.requests[-1]["body"]["model"] == "overlap-v2"
        with pytest.raises(InvalidInput, match="timeout"):
            reg.get("overlap", {"timeout": 0})
    assert isinstance(mod.OverlapConfig(), FamilyConfig)
