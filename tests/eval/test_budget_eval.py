"""``rerank-mcp eval-budget``: every strategy stays inside every budget, and the report says so."""

from __future__ import annotations

import json

import pytest

from tests.eval.test_eval_command import run_cli, tiny_beir


def test_eval_budget_writes_a_report_within_budgets(tmp_path, capsys):
    ds = tiny_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    rc = run_cli(["--data-dir", str(tmp_path / "data"), "--json", "eval-budget", str(ds), "--budgets", "40,200",
                  "--pool", "20", "--out", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["budgets"] == [40, 200] and "tokenizer" in report["tokenizer"]
    rows = report["datasets"][0]["rows"]
    assert {r["strategy"] for r in rows} == {"top-k", "packed", "packed+document", "packed+document+expand1"}
    for r in rows:
        assert r["tokens"] <= r["budget"]
        assert 0.0 <= r["recall"] <= 1.0
    by = {(r["strategy"], r["budget"]): r for r in rows}
    assert by[("packed", 200)]["recall"] >= by[("top-k", 40)]["recall"]
    md = (out / "report.md").read_text()
    assert "Recall inside a token budget" in md and "| 40 | top-k |" in md
    assert json.loads((out / "results.json").read_text())["budgets"] == [40, 200]
    assert not any(c["name"].startswith("budget-") for c in _collections(tmp_path, capsys))  # throwaway dropped


def _collections(tmp_path, capsys):
    assert run_cli(["--data-dir", str(tmp_path / "data"), "--json", "collections"]) == 0
    return json.loads(capsys.readouterr().out)["collections"]


@pytest.mark.parametrize("budgets", ["", "0,100", "a,b", "-5"])
def test_eval_budget_refuses_bad_budgets(tmp_path, capsys, budgets):
    ds = tiny_beir(tmp_path / "tiny")
    assert run_cli(["--data-dir", str(tmp_path / "data"), "eval-budget", str(ds), "--budgets", budgets]) == 1
    assert "--budgets" in capsys.readouterr().err
