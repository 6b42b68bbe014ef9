"""``models pull | list | remove`` against local peers: a Hugging Face-compatible hub and a
FlashRank archive host on 127.0.0.1 (tests/fixtures/hub.py), with real huggingface_hub and httpx.

Covered: pull, list, remove for both kinds; a connection dropped mid-file (resumed); a download
that keeps failing (nothing half-present); a corrupt archive and a file that is not one; offline
(a clear error, nothing created); two concurrent pulls of one model (one download, an intact
model); the CLI verbs in a subprocess with the environment a user would set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rerank_mcp.errors import DependencyMissing, InvalidInput, NotFound, UpstreamError
from rerank_mcp.tools.models_store import ModelStore, model_ref
from tests.fixtures.hub import FakeFileHost, FakeHub, corrupt_zip, zip_folder

ROOT = Path(__file__).resolve().parents[2]
FR = "ms-marco-TinyBERT-L-2-v2"
FR_FILE = "flashrank-TinyBERT-L-2-v2.onnx"
TINY = {  # a small repository in a cross-encoder's layout (weights are random bytes: never loaded here)
    "config.json": b'{"architectures": ["BertForSequenceClassification"], "num_labels": 1}',
    "model.safetensors": os.urandom(400_000),
    "pytorch_model.bin": os.urandom(400_000),  # a duplicate in torch's format: not downloaded
    "onnx/model.onnx": os.urandom(150_000),  # an export: not downloaded
    "tokenizer.json": b"{}",
    "README.md": b"# tiny\n",
}



@pytest.fixture
def hub(online):
    with FakeHub() as h:
        h.add_repo("org/tiny-reranker", files=TINY)
        yield h


@pytest.fixture(scope="module")
def fr_zip(tmp_path_factory) -> bytes:
    from tests.fixtures.models import build_flashrank

    return zip_folder(build_flashrank(tmp_path_factory.mktemp("fr-src")), FR)


@pytest.fixture
def host(online, fr_zip):
    with FakeFileHost() as h:
        h.files[f"/{FR}.zip"] = fr_zip
        yield h


def store(tmp_path, hub=None, host=None, **kw) -> ModelStore:
    return ModelStore(tmp_path / "flashrank", host.base_url if host else "http://127.0.0.1:9",
                      hf_cache_dir=tmp_path / "hf", hf_endpoint=hub.base_url if hub else "http://127.0.0.1:9", **kw)


def test_names_are_told_apart():
    assert model_ref(FR).kind == "flashrank"
    assert model_ref("cross-encoder/ms-marco-MiniLM-L-6-v2").kind == "hf"
    assert model_ref("BAAI/bge-small-en-v1.5").kind == "hf"
    with pytest.raises(InvalidInput, match="owner/name"):
        model_ref("just-a-word")
    with pytest.raises(InvalidInput, match="unknown FlashRank model"):
        model_ref("nope", "flashrank")


# --------------------------------------------------------------------------- Hugging Face
def test_hf_pull_list_remove(tmp_path, hub):
    st = store(tmp_path, hub=hub)
    ref = model_ref("org/tiny-reranker")
    assert not st.present(ref) and st.info(ref).state == "missing"
    seen = []
    folder = st.pull(ref, lambda done, total, _what: seen.append((done, total)))
    assert folder.is_relative_to(tmp_path / "hf" / "models--org--tiny-reranker" / "snapshots")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    assert (folder / "model.safetensors").read_bytes() == TINY["model.safetensors"]
    assert seen and seen[-1][0] == seen[-1][1] == sum(len(TINY[f]) for f in ("config.json", "model.safetensors",
                                                                             "tokenizer.json", "README.md"))
    info = st.info(ref, ["cross-encoder reranker"])
    assert info.state == "present" and info.size_bytes == seen[-1][1] and info.location == str(folder)
    listed = {i.name: i for i in st.list({ref: ["cross-encoder reranker"]})}
    assert listed["org/tiny-reranker"].used_by == ["cross-encoder reranker"]
    assert st.pull(ref) == folder  # present: nothing fetched again
    assert st.remove(ref) and not st.present(ref)
    assert not (tmp_path / "hf" / "models--org--tiny-reranker").exists()
    assert not st.remove(ref)


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_hf_connection_dropped_mid_file_is_resumed(tmp_path, hub):
    commit = hub.repos["org/tiny-reranker"]["commit"]
    path = f"/org/tiny-reranker/resolve/{commit}/model.safetensors"
    hub.drop[path] = 1
    hub.drop_after = 150_000
    folder = store(tmp_path, hub=hub).pull(model_ref("org/tiny-reranker"))
    assert (folder / "model.safetensors").read_bytes() == TINY["model.safetensors"]
    assert len(hub.gets(path)) == 2  # cut once, then fetched again


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_hf_download_that_keeps_failing_leaves_nothing_present(tmp_path, hub):
    commit = hub.repos["org/tiny-reranker"]["commit"]
    hub.drop[f"/org/tiny-reranker/resolve/{commit}/model.safetensors"] = 100
    st = store(tmp_path, hub=hub)
    ref = model_ref("org/tiny-reranker")
    with pytest.raises(UpstreamError, match="org/tiny-reranker"):
        st.pull(ref)
    assert not st.present(ref) and st.path(ref) is None and st.info(ref).state == "missing"
    assert not list((tmp_path / "hf").rglob("*.incomplete"))
    # config.json arrived, the weights did not: the snapshot is never taken for the model
    assert list((tmp_path / "hf").rglob("config.json"))
    hub.drop.clear()
    assert st.pull(ref) and st.present(ref)


def test_leftovers_of_a_killed_pull_are_cleaned_up(tmp_path, hub):
    blobs = tmp_path / "hf" / "models--org--tiny-reranker" / "blobs"
    blobs.mkdir(parents=True)
    stale, fresh = blobs / "abc.1234.incomplete", blobs / "def.5678.incomplete"
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y")
    os.utime(stale, (0, 0))  # long untouched: its writer is gone
    st = store(tmp_path, hub=hub)
    st.pull(model_ref("org/tiny-reranker"))
    assert not stale.exists() and fresh.exists()  # a recent one may belong to a live download


def test_hf_unknown_repository(tmp_path, hub):
    with pytest.raises(NotFound, match="no model 'org/absent'"):
        store(tmp_path, hub=hub).pull(model_ref("org/absent"))
    assert not (tmp_path / "hf" / "models--org--absent" / "snapshots").exists()


def test_hf_two_concurrent_pulls_download_once(tmp_path, hub):
    st1, st2 = store(tmp_path, hub=hub), store(tmp_path, hub=hub)  # two stores: as two processes would
    ref = model_ref("org/tiny-reranker")
    errors: list[BaseException] = []

    def pull(st):
        try:
            st.pull(ref)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    hub.delay_s = 0.01
    threads = [threading.Thread(target=pull, args=(s,)) for s in (st1, st2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert st1.present(ref) and st2.present(ref)
    assert len(hub.gets("model.safetensors")) == 1
    assert (st2.path(ref) / "model.safetensors").read_bytes() == TINY["model.safetensors"]


# --------------------------------------------------------------------------- FlashRank
@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_flashrank_pull_list_remove(tmp_path, host, fr_zip):
    st = store(tmp_path, host=host)
    ref = model_ref(FR)
    seen = []
    folder = st.pull(ref, lambda done, total, _what: seen.append((done, total)))
    assert folder == tmp_path / "flashrank" / FR and (folder / FR_FILE).is_file()
    assert seen[-1] == (len(fr_zip), len(fr_zip))
    assert sorted(p.name for p in (tmp_path / "flashrank").iterdir()) == [".locks", FR]  # no archive, no temp
    info = st.info(ref)
    assert info.state == "present" and info.size_bytes > 1_000_000
    import flashrank

    ranker = flashrank.Ranker(model_name=FR, cache_dir=str(tmp_path / "flashrank"))  # FlashRank reads it as is
    assert ranker.session is not None
    assert st.remove(ref) and not folder.exists() and st.info(ref).state == "missing"


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_flashrank_connection_dropped_mid_file_is_resumed_with_range(tmp_path, host, fr_zip):
    host.drop[f"/{FR}.zip"] = 2
    host.drop_after = 1_000_000
    folder = store(tmp_path, host=host).pull(model_ref(FR))
    assert (folder / FR_FILE).is_file()
    ranges = [h.get("range") for h in host.gets(".zip")]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:]) and len(ranges) == 3


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_flashrank_interrupted_pull_is_hidden_then_resumed(tmp_path, host, fr_zip, caplog):
    host.drop[f"/{FR}.zip"] = 100
    host.drop_after = 2_000_000
    st = store(tmp_path, host=host)
    ref = model_ref(FR)
    with caplog.at_level("WARNING", logger="rerank_mcp.tools.models_store"):
        with pytest.raises(UpstreamError, match="failed after 5 attempts"):
            st.pull(ref)
    said = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert [m.rsplit("(attempt ", 1)[-1] for m in said[:4]] == ["2 of 5)", "3 of 5)", "4 of 5)", "5 of 5)"]
    assert len(said) == 5 and "on the last of 5 attempts" in said[-1]  # never "attempt 6 of 5"
    part = tmp_path / "flashrank" / f".{FR}.zip.part"
    assert part.is_file() and 0 < part.stat().st_size < len(fr_zip)
    assert not st.present(ref) and not (tmp_path / "flashrank" / FR).exists()
    host.drop.clear()
    have = part.stat().st_size
    st.pull(ref)
    assert host.gets(".zip")[-1].get("range") == f"bytes={have}-"
    assert st.present(ref) and not part.exists()


def test_corrupt_archive_is_refused_and_deleted(tmp_path, host, fr_zip):
    host.files[f"/{FR}.zip"] = corrupt_zip(fr_zip)
    st = store(tmp_path, host=host)
    with pytest.raises(UpstreamError, match="corrupt"):
        st.pull(model_ref(FR))
    assert sorted(p.name for p in (tmp_path / "flashrank").iterdir()) == [".locks"]
    host.files[f"/{FR}.zip"] = b"<html>not a zip</html>"
    with pytest.raises(UpstreamError, match="corrupt"):
        st.pull(model_ref(FR))
    assert sorted(p.name for p in (tmp_path / "flashrank").iterdir()) == [".locks"]


def test_missing_archive_is_not_found(tmp_path, host):
    with pytest.raises(NotFound, match="HTTP 404"):
        store(tmp_path, host=host).pull(model_ref("ms-marco-MiniLM-L-12-v2"))


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_flashrank_two_concurrent_pulls_download_once(tmp_path, host):
    stores = [store(tmp_path, host=host) for _ in range(3)]
    errors: list[BaseException] = []
    host.delay_s = 0.002

    def pull(st):
        try:
            st.pull(model_ref(FR))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=pull, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(host.gets(".zip")) == 1
    assert all(s.present(model_ref(FR)) for s in stores)


def test_offline_is_a_clear_error_and_creates_nothing(tmp_path, hub, host, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = store(tmp_path, hub=hub, host=host)
    for name in ("org/tiny-reranker", FR):
        with pytest.raises(DependencyMissing, match="HF_HUB_OFFLINE"):
            st.pull(model_ref(name))
    assert not (tmp_path / "flashrank").exists() and not (tmp_path / "hf").exists()
    assert not hub.requests and not host.requests


# --------------------------------------------------------------------------- the CLI
def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rerank_mcp.server.main", *args], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli_env(tmp_path, hub, host):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=hub.base_url, HF_HOME=str(tmp_path / "hf-home"), RERANK_MCP_DATA_DIR=str(tmp_path / "data"),
               RERANK_MCP_FLASHRANK_BASE_URL=host.base_url, RERANK_MCP_CROSS_ENCODER_MODEL="org/tiny-reranker")
    return env


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_cli_pull_list_remove(cli_env, tmp_path, hub, host):
    r = _cli(["models", "pull", "org/tiny-reranker", FR], cli_env)
    assert r.returncode == 0, r.stderr
    assert "org/tiny-reranker: ready" in r.stdout and f"{FR}: ready" in r.stdout
    assert (tmp_path / "hf-home" / "hub" / "models--org--tiny-reranker").is_dir()  # HF_HOME honoured
    assert (tmp_path / "data" / "flashrank" / FR / FR_FILE).is_file()
    listed = {m["name"]: m for m in json.loads(_cli(["--json", "models", "list"], cli_env).stdout)}
    ce, fr = listed["org/tiny-reranker"], listed[FR]
    assert ce["state"] == fr["state"] == "present" and ce["size_bytes"] > 400_000
    assert "cross-encoder reranker" in ce["used_by"] and "auto (first choice)" in ce["used_by"]
    assert "flashrank reranker" in fr["used_by"] and "cascade stage 1" in fr["used_by"]
    emb = listed["sentence-transformers/all-MiniLM-L6-v2"]
    assert emb["kind"] == "package" and emb["state"] == "present"
    assert emb["languages"] == "en" and fr["languages"] == "en" and ce["languages"] is None  # an unknown name
    table = _cli(["models", "list"], cli_env).stdout
    assert "languages" in table and " en " in table
    r = _cli(["models", "remove", FR], cli_env)
    assert r.returncode == 0 and f"{FR}: removed" in r.stdout
    listed = {m["name"]: m for m in json.loads(_cli(["--json", "models", "list"], cli_env).stdout)}
    assert listed[FR]["state"] == "missing" and listed[FR]["command"] == f"rerank-mcp models pull {FR}"


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_cli_offline_pull_fails_clearly(cli_env, tmp_path, hub):
    r = _cli(["models", "pull", "org/tiny-reranker"], {**cli_env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and "HF_HUB_OFFLINE" in r.stderr
    assert not (tmp_path / "hf-home" / "hub" / "models--org--tiny-reranker").exists() and not hub.requests


@pytest.mark.slow  # CLI subprocesses and resumed downloads from a local hub
def test_cli_two_concurrent_pulls(cli_env, tmp_path, host):
    host.delay_s = 0.002
    cmd = [sys.executable, "-m", "rerank_mcp.server.main", "models", "pull", FR]
    procs = [subprocess.Popen(cmd, cwd=str(ROOT), env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(host.gets(".zip")) == 1
    assert (tmp_path / "data" / "flashrank" / FR / FR_FILE).is_file()
