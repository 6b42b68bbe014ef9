"""Line numbers from offsets (LF, CRLF and CR alike), chunk gaps that give back the text, the
source-code chunker, and passage merging."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.chunking import approx_token_counter, chunk_code, chunk_document, code_blocks
from rerank_mcp.index.contract import StoredChunk
from rerank_mcp.index.lines import LineIndex, end_line, lines_of_chunks, parse_line_range
from rerank_mcp.tools.documents import rebuild_text
from rerank_mcp.tools.shaping import _Piece, passages_of


def file_lines(text: str) -> list[str]:
    """Lines as an editor shows them (universal newlines), without their breaks."""
    import io

    return io.StringIO(text, newline=None).read().split("\n") if text else [""]


@pytest.mark.parametrize("nl", ["\n", "\r\n", "\r"])
def test_line_numbers_are_the_same_for_lf_crlf_and_cr(nl):
    text = nl.join(["alpha beta", "", "gamma", "delta epsilon", ""]) + "zeta"
    idx = LineIndex(text)
    assert idx.lines == 5
    assert idx.line_at(0) == 1
    assert idx.line_at(text.index("gamma")) == 3
    assert idx.line_at(text.index("zeta")) == 5
    s, e = idx.offsets(3, 4)
    assert text[s:e].splitlines() == ["gamma", "delta epsilon"]
    assert end_line(3, text[text.index("gamma"): text.index("epsilon")]) == 4


def test_a_final_line_break_opens_no_line():
    assert LineIndex("a\nb\n").lines == 2
    assert LineIndex("a\r\nb\r\n").lines == 2
    assert end_line(1, "a\n") == 1
    assert LineIndex("").lines == 1


def test_offsets_on_the_break_belong_to_the_line_it_ends():
    text = "ab\r\ncd"
    idx = LineIndex(text)
    assert [idx.line_at(i) for i in range(len(text))] == [1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("spec,want", [("10-20", (10, 20)), ("7", (7, 7)), ("L3-L5", (3, 5)), (" 2 - 4 ", (2, 4))])
def test_line_range_specs(spec, want):
    assert parse_line_range(spec) == want


def test_open_ended_range_runs_to_the_last_line():
    assert parse_line_range("4-", 9) == (4, 9)


@pytest.mark.parametrize("spec", ["", "0-3", "5-2", "a-b", "-3", "1-2-3"])
def test_bad_line_ranges_are_refused(spec):
    with pytest.raises(InvalidInput, match="lines"):
        parse_line_range(spec)


def _check_chunks(text: str, chunks) -> None:
    where = lines_of_chunks([(c.start, c.end, c.text) for c in chunks], text)
    lines = file_lines(text)
    for c, (line, _gap) in zip(chunks, where):
        assert c.text == text[c.start:c.end]
        last = end_line(line, c.text)
        # the chunk's lines, cut at its offsets, are exactly its text
        cited = "\n".join(lines[line - 1 : last])
        norm = c.text.replace("\r\n", "\n").replace("\r", "\n")
        assert norm in cited
        assert cited.startswith(norm.split("\n")[0]) or lines[line - 1].endswith(norm.split("\n")[0])
    rows = [StoredChunk(i, i, c.text, c.start, c.end, None, g) for i, (c, (_l, g)) in enumerate(zip(chunks, where))]
    assert rebuild_text(rows) == text[: chunks[-1].end]


@pytest.mark.parametrize("nl", ["\n", "\r\n"])
def test_prose_chunks_cite_exact_lines_and_rebuild_the_text(nl):
    paras = [f"Paragraph {i} says something. \"Quoted.\" Then more words here {i}." for i in range(30)]
    text = ("  " + nl) + (nl + nl).join(p + nl + "second line of " + str(i) for i, p in enumerate(paras)) + nl
    chunks = chunk_document(text, 24, 0, approx_token_counter)
    assert len(chunks) > 5
    _check_chunks(text, chunks)
    chunks = chunk_document(text, 24, 8, approx_token_counter)
    _check_chunks(text, chunks)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["word", "Sentence.", "x!", "\n", "\r\n", "\n\n", "\r\n\r\n", " ", "\t", "\"q.\"",
                                 "(a)", "é", "def f():", "    return 1"]), min_size=1, max_size=200),
       st.integers(8, 40), st.integers(0, 7), st.booleans())
def test_chunks_and_gaps_always_rebuild_the_text(parts, size, overlap, code):
    text = "".join(parts)
    if not text.strip():
        return
    chunks = chunk_document(text, size, min(overlap, size - 1), approx_token_counter, "code" if code else None)
    where = lines_of_chunks([(c.start, c.end, c.text) for c in chunks], text)
    rows = [StoredChunk(i, i, c.text, c.start, c.end, None, g) for i, (c, (_l, g)) in enumerate(zip(chunks, where))]
    assert rebuild_text(rows) == text[: chunks[-1].end]
    idx = LineIndex(text)
    for c, (line, _g) in zip(chunks, where):
        assert line == idx.line_at(c.start)
        assert end_line(line, c.text) == idx.line_at(c.end - 1)


SOURCE = '''import os
import sys


# a helper
@cache
def helper(x):
    """Add one."""
    return x + 1


class Thing:
    def first(self):
        return 1

    def second(self):
        return 2
'''


def test_code_blocks_start_at_definitions_with_their_decorators_and_comments():
    blocks = [SOURCE[s:e] for s, e in code_blocks(SOURCE)]
    assert blocks[0] == "import os\nimport sys"
    assert blocks[1].startswith("# a helper\n@cache\ndef helper(x):")
    assert any(b.startswith("    def second(self):") for b in blocks)


def test_code_chunks_are_exact_spans_and_split_at_definitions():
    for size in (12, 20, 32):
        chunks = chunk_code(SOURCE, size, 0, approx_token_counter)
        for c in chunks:
            assert SOURCE[c.start:c.end] == c.text
            assert c.start == 0 or SOURCE[c.start - 1] == "\n"  # chunks start at a line start ...
            assert c.end == len(SOURCE) or SOURCE[c.end] == "\n"  # ... and end at a line end
    starts = [c.text.split("\n")[0] for c in chunk_code(SOURCE, 32, 0, approx_token_counter)]
    assert starts[:2] == ["import os", "# a helper"]  # the helper (31 tokens) is not split, nor glued to imports


def test_other_kinds_use_the_prose_chunker():
    text = "One sentence. Two sentence.\n\nNext paragraph."
    assert chunk_document(text, 50, 0, approx_token_counter, "markdown") == \
        chunk_document(text, 50, 0, approx_token_counter, None)


def test_passages_join_overlapping_and_adjacent_chunks_without_repeating_text():
    text = "aaa bbb ccc ddd eee fff ggg hhh"
    pieces = [
        _Piece(1, 0, text[0:11], 0, 11, 1, ""),  # aaa bbb ccc
        _Piece(2, 1, text[8:19], 8, 19, 1, ""),  # ccc ddd eee (overlaps)
        _Piece(3, 2, text[20:23], 20, 23, 1, " "),  # fff (adjacent, across a one-space gap)
        _Piece(5, 4, text[28:31], 28, 31, 1, " "),  # hhh (not adjacent to ord 2)
    ]
    ps = passages_of(pieces)
    assert [(p.start, p.end) for p in ps] == [(0, 23), (28, 31)]
    for p in ps:
        assert p.text == text[p.start:p.end]
    assert ps[0].chunk_ids == [1, 2, 3]


def test_adjacent_chunks_without_a_recorded_gap_stay_apart():
    text = "aaa bbb"
    ps = passages_of([_Piece(1, 0, "aaa", 0, 3, None, None), _Piece(2, 1, "bbb", 4, 7, None, None)])
    assert [(p.text, p.start_line) for p in ps] == [("aaa", None), ("bbb", None)]
    assert all(p.text == text[p.start:p.end] for p in ps)
