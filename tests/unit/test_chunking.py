"""Chunking: token bounds with the real tokenizer, overlap, boundaries, exact offsets."""

from __future__ import annotations

import re

import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.chunking import approx_token_counter, chunk_text

PARAS = [
    "Retrieval augmented generation grounds a language model in documents. It fetches passages first.",
    "Dense retrieval embeds queries and passages into one vector space. Nearest neighbours are found with FAISS.",
    "BM25 is a lexical baseline that is hard to beat. It scores term frequency against document length!",
    "Rerankers read the query and a passage together. They are slower, so they see only the top candidates.",
]
TEXT = "\n\n".join(PARAS * 3)


def _check_offsets(text, chunks):
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text


@pytest.mark.parametrize("size,overlap", [(16, 0), (24, 8), (40, 10), (64, 0), (128, 32)])
def test_size_bound_with_real_tokenizer(embedder, size, overlap):
    chunks = chunk_text(TEXT, size, overlap, embedder.count_tokens)
    assert chunks
    real = embedder.count_tokens([c.text for c in chunks])
    for c, n in zip(chunks, real):
        assert n <= size, (size, c.text)
        assert c.tokens == n
    _check_offsets(TEXT, chunks)
    # all text is covered: every word of the source lies in some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for m in re.finditer(r"\S+", TEXT):
        assert set(range(m.start(), m.end())) <= covered


def test_small_text_is_one_chunk(embedder):
    chunks = chunk_text("  Hello world.  \n", 64, 8, embedder.count_tokens)
    assert [(c.text, c.start, c.end) for c in chunks] == [("Hello world.", 2, 14)]


def test_paragraph_boundaries_respected(embedder):
    # each paragraph fits on its own; two do not fit together -> one chunk per paragraph
    size = max(embedder.count_tokens(PARAS)) + 2
    text = "\n\n".join(PARAS)
    chunks = chunk_text(text, size, 0, embedder.count_tokens)
    assert [c.text for c in chunks] == PARAS


def test_sentence_boundaries_respected(embedder):
    # one paragraph, too long for a chunk: cuts fall between sentences, never inside one
    sentences = [s for p in PARAS for s in re.split(r"(?<=[.!?])\s+", p)]
    text = " ".join(sentences)
    size = max(embedder.count_tokens(sentences)) + 1
    chunks = chunk_text(text, size, 0, embedder.count_tokens)
    assert len(chunks) > 1
    for c in chunks:
        assert c.text[-1] in ".!?", c.text
        assert any(c.text.startswith(s) for s in sentences)
    _check_offsets(text, chunks)


def test_overlap_repeats_trailing_units(embedder):
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(30)]
    text = " ".join(sentences)
    chunks = chunk_text(text, 40, 12, embedder.count_tokens)
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, "consecutive chunks must overlap"
        overlap = text[b.start : a.end]
        assert embedder.count_tokens([overlap])[0] <= 12
        assert b.end > a.end, "every chunk must move forward"
    # without overlap: chunks tile the text, no shared characters
    plain = chunk_text(text, 40, 0, embedder.count_tokens)
    for a, b in zip(plain, plain[1:]):
        assert b.start > a.end


def test_overlap_never_yields_a_chunk_inside_the_previous_one():
    # unit costs (approx counter): 2 short sentences then a long one that only fits alone
    text = "Alpha beta gamma. Delta epsilon zeta. " + " ".join(["word"] * 14) + "."
    count = approx_token_counter
    chunks = chunk_text(text, 20, 6, count)
    for a, b in zip(chunks, chunks[1:]):
        assert b.end > a.end, f"chunk {b.text!r} lies inside {a.text!r}"


def test_overlong_word_is_split_to_fit(embedder):
    blob = "x-" * 1500  # one whitespace-free "word" of ~3000 tokens (punctuation splits)
    text = f"Intro sentence here. {blob} Tail sentence."
    chunks = chunk_text(text, 32, 0, embedder.count_tokens)
    real = embedder.count_tokens([c.text for c in chunks])
    assert max(real) <= 32
    _check_offsets(text, chunks)
    assert "".join(c.text for c in chunks).count("x") == 1500


def test_unicode_offsets(embedder):
    text = "Ünïcödé straße — naïve café.\n\n東京は大きい。とても大きい！ Emoji 🙂 here."
    chunks = chunk_text(text, 8, 2, embedder.count_tokens)
    _check_offsets(text, chunks)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n"])
def test_empty_text_gives_no_chunks(text):
    assert chunk_text(text, 32, 4) == []


@pytest.mark.parametrize(
    "size,overlap,needle",
    [(0, 0, "chunk_size"), (-5, 0, "chunk_size"), (10, -1, "chunk_overlap"), (10, 10, "chunk_overlap"), (10, 11, "chunk_overlap")],
)
def test_invalid_size_or_overlap(size, overlap, needle):
    with pytest.raises(InvalidInput, match=needle):
        chunk_text("some text", size, overlap)
