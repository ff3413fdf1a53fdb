"""grouparrow.lm.tokenize_and_pack: tokenize a group's texts and pack next-token blocks."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import data_file
from hypothesis import given, settings
from hypothesis import strategies as st

import grouparrow as ga
from grouparrow import lm
from grouparrow.lm import tokenize_and_pack

VOCAB = {"a": 10, "b": 11, "c": 12, "d": 13, "e": 14, "f": 15}


def words(text: str) -> list[int]:
    return [VOCAB[w] for w in text.split()]


def reference(
    docs: Sequence[Sequence[int]],
    seq_len: int,
    bos: int | None = None,
    eos: int | None = None,
    pad: int = 0,
    drop: bool = False,
) -> tuple[list[list[int]], list[list[int]], list[list[bool]]]:
    """The packing, one token at a time in plain Python, straight from the definition."""
    stream: list[int] = []
    for doc in docs:
        stream += ([bos] if bos is not None else []) + list(doc)
        stream += [eos] if eos is not None else []
    inputs, targets, mask = [], [], []
    start = 0
    while start + 1 < len(stream):  # a window with at least one real target
        window = stream[start : start + seq_len + 1]
        if drop and len(window) < seq_len + 1:
            break
        real = len(window) - 1
        window = window + [pad] * (seq_len + 1 - len(window))
        inputs.append(window[:-1])
        targets.append(window[1:])
        mask.append([j < real for j in range(seq_len)])
        start += seq_len
    return inputs, targets, mask


def check_shapes(out: Mapping[str, np.ndarray], blocks: int, seq_len: int) -> None:
    assert set(out) == {"input_ids", "targets", "mask"}
    for name, array in out.items():
        assert array.shape == (blocks, seq_len), name
    assert out["mask"].dtype == np.bool_


# -- exact blocks -----------------------------------------------------------------------------
def test_exact_blocks_with_bos_and_eos() -> None:
    # stream: 1 10 11 2 | 1 12 2 | 1 13 14 15 2  -> 12 tokens, 11 targets, 3 blocks of 4
    out = tokenize_and_pack(["a b", "c", "d e f"], words, 4, bos_id=1, eos_id=2)
    check_shapes(out, 3, 4)
    assert out["input_ids"].dtype == out["targets"].dtype == np.int32
    assert out["input_ids"].tolist() == [[1, 10, 11, 2], [1, 12, 2, 1], [13, 14, 15, 2]]
    assert out["targets"].tolist() == [[10, 11, 2, 1], [12, 2, 1, 13], [14, 15, 2, 0]]
    assert out["mask"].tolist() == [[True] * 4, [True] * 4, [True, True, True, False]]


def test_exact_blocks_without_specials_and_custom_pad() -> None:
    # stream: 10 11 12 13 14 15 -> 6 tokens, 5 targets, 2 blocks of 4
    out = tokenize_and_pack(["a b", "c", "d e f"], words, 4, pad_id=-1)
    check_shapes(out, 2, 4)
    assert out["input_ids"].tolist() == [[10, 11, 12, 13], [14, 15, -1, -1]]
    assert out["targets"].tolist() == [[11, 12, 13, 14], [15, -1, -1, -1]]
    assert out["mask"].tolist() == [[True] * 4, [True, False, False, False]]


def test_eos_only_and_bos_only() -> None:
    out = tokenize_and_pack(["a", "b c"], words, 3, eos_id=2)  # 10 2 11 12 2
    assert out["input_ids"].tolist() == [[10, 2, 11], [12, 2, 0]]
    assert out["targets"].tolist() == [[2, 11, 12], [2, 0, 0]]
    assert out["mask"].tolist() == [[True, True, True], [True, False, False]]
    out = tokenize_and_pack(["a", "b c"], words, 3, bos_id=1)  # 1 10 1 11 12
    assert out["input_ids"].tolist() == [[1, 10, 1], [11, 12, 0]]
    assert out["targets"].tolist() == [[10, 1, 11], [12, 0, 0]]
    assert out["mask"].tolist() == [[True, True, True], [True, False, False]]


def test_exact_fit_has_no_padding() -> None:
    # 9 tokens: 8 targets, exactly 2 blocks of 4 (the last token is only a target).
    out = tokenize_and_pack(["a b c d e f a b c"], words, 4)
    assert out["input_ids"].tolist() == [[10, 11, 12, 13], [14, 15, 10, 11]]
    assert out["targets"].tolist() == [[11, 12, 13, 14], [15, 10, 11, 12]]
    assert out["mask"].all()
    dropped = tokenize_and_pack(["a b c d e f a b c"], words, 4, drop_remainder=True)
    for name in out:
        np.testing.assert_array_equal(dropped[name], out[name])


def test_drop_remainder() -> None:
    out = tokenize_and_pack(["a b", "c", "d e f"], words, 4, bos_id=1, eos_id=2)
    dropped = tokenize_and_pack(
        ["a b", "c", "d e f"], words, 4, bos_id=1, eos_id=2, drop_remainder=True
    )
    check_shapes(dropped, 2, 4)  # 11 targets // 4
    for name in out:
        np.testing.assert_array_equal(dropped[name], out[name][:2])
    assert dropped["mask"].all()
    # Fewer targets than one block: nothing is left.
    check_shapes(tokenize_and_pack(["a b c"], words, 4, drop_remainder=True), 0, 4)


def test_seq_len_one() -> None:
    out = tokenize_and_pack(["a b c"], words, 1)
    assert out["input_ids"].tolist() == [[10], [11]]
    assert out["targets"].tolist() == [[11], [12]]
    assert out["mask"].all()


@settings(max_examples=200, deadline=None)
@given(
    docs=st.lists(st.lists(st.integers(0, 50), max_size=12), max_size=12),
    seq_len=st.integers(1, 9),
    bos=st.none() | st.just(98),
    eos=st.none() | st.just(99),
    pad=st.sampled_from([0, -100]),
    drop=st.booleans(),
)
def test_matches_reference_and_shift(
    docs: list[list[int]],
    seq_len: int,
    bos: int | None,
    eos: int | None,
    pad: int,
    drop: bool,
) -> None:
    texts = [" ".join(map(str, doc)) for doc in docs]

    def tokenize(text: str) -> list[int]:
        return [int(w) for w in text.split()]

    out = tokenize_and_pack(
        texts, tokenize, seq_len, bos_id=bos, eos_id=eos, pad_id=pad, drop_remainder=drop
    )
    inputs, targets, mask = reference(docs, seq_len, bos, eos, pad, drop)
    check_shapes(out, len(inputs), seq_len)
    assert out["input_ids"].tolist() == inputs
    assert out["targets"].tolist() == targets
    assert out["mask"].tolist() == mask
    x, y, m = out["input_ids"], out["targets"], out["mask"]
    # Shift: within a block, and across block boundaries (no token lost between blocks).
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])
    # Every token after the first is a real target exactly once, in order.
    stream = [t for d in docs for t in [bos] * (bos is not None) + d + [eos] * (eos is not None)]
    expected = stream[1 : 1 + len(x) * seq_len]
    assert y[m].tolist() == expected
    if not drop:
        assert len(expected) == max(len(stream) - 1, 0)
    # Masked targets are padding, and padding only comes after the real ones.
    assert (y[~m] == pad).all()
    assert m.ravel().tolist() == sorted(m.ravel().tolist(), reverse=True)


def test_outputs_are_independent_arrays() -> None:
    out = tokenize_and_pack(["a b c d e"], words, 2)
    before = out["targets"].copy()
    out["input_ids"][:] = -5
    np.testing.assert_array_equal(out["targets"], before)


def test_int64_when_ids_need_it() -> None:
    big = 2**40
    out = tokenize_and_pack(["x y"], lambda t: [big, 1, big + 1], 2)
    assert out["input_ids"].dtype == np.int64
    assert out["input_ids"].tolist() == [[big, 1]]
    assert out["targets"].tolist() == [[1, big + 1]]
    assert tokenize_and_pack(["a b"], words, 2, pad_id=2**31)["input_ids"].dtype == np.int64
    assert tokenize_and_pack(["a b"], words, 2, pad_id=2**31 - 1)["input_ids"].dtype == np.int32


# -- empty ------------------------------------------------------------------------------------
@pytest.mark.parametrize("drop", [False, True])
def test_empty_inputs_give_zero_blocks(drop: bool) -> None:
    schema = pa.schema([("group_id", pa.string()), ("text", pa.string())])
    empty_group = ga.Group("nobody", [pa.record_batch([[], []], schema=schema)], schema)
    for texts in (
        [],
        [""],
        ["a"],  # one token: nothing to predict
        [None, None],
        pa.array([], pa.string()),
        pa.chunked_array([], pa.string()),
        pa.array([None], pa.string()),
        empty_group,
        ga.Group("nobody", [], schema),
    ):
        out = tokenize_and_pack(texts, words, 5, drop_remainder=drop)
        check_shapes(out, 0, 5)
        assert out["input_ids"].dtype == out["targets"].dtype == np.int32
    # Empty texts still carry their special tokens.
    out = tokenize_and_pack(["", ""], words, 5, bos_id=1, eos_id=2)
    assert out["input_ids"].tolist() == [[1, 2, 1, 2, 0]]
    assert out["targets"].tolist() == [[2, 1, 2, 0, 0]]
    assert out["mask"].tolist() == [[True, True, True, False, False]]


def test_empty_group_does_not_call_the_tokenizer() -> None:
    def refuse(text: str) -> list[int]:
        raise AssertionError("called")

    check_shapes(tokenize_and_pack([], refuse, 3), 0, 3)


# -- inputs -----------------------------------------------------------------------------------
TEXTS = ["a b", None, "c", "d e f"]
# nulls are skipped: 10 11 2 12 2 13 14 15 2 (9 tokens, 8 targets, 2 full blocks)
EXPECTED = [[10, 11, 2, 12], [2, 13, 14, 15]]
EXPECTED_TARGETS = [[11, 2, 12, 2], [13, 14, 15, 2]]


def _texts_variants() -> Iterator[tuple[str, Any, dict[str, Any]]]:
    table = pa.table({"user": ["u"] * 4, "body": pa.array(TEXTS, pa.string())})
    yield "list", TEXTS, {}
    yield "tuple", tuple(TEXTS), {}
    yield "generator", (t for t in TEXTS), {}
    yield "array", pa.array(TEXTS), {}
    yield "large_string", pa.array(TEXTS, pa.large_string()), {}
    yield "dictionary", pa.array(TEXTS).dictionary_encode(), {}
    yield "chunked", pa.chunked_array([TEXTS[:1], TEXTS[1:3], [], TEXTS[3:]]), {}
    yield "table", table, {"column": "body"}
    yield "batch", table.to_batches()[0], {"column": "body"}
    batches = [b for i in range(4) for b in table.slice(i, 1).to_batches()]
    yield "group", ga.Group("u", batches, table.schema), {"column": "body"}


@pytest.mark.parametrize(("kind", "texts", "kwargs"), list(_texts_variants()))
def test_kinds_of_texts(kind: str, texts: Any, kwargs: dict[str, Any]) -> None:
    out = tokenize_and_pack(texts, words, 4, eos_id=2, **kwargs)
    assert out["input_ids"].tolist() == EXPECTED, kind
    assert out["targets"].tolist() == EXPECTED_TARGETS, kind
    assert out["mask"].all(), kind


def test_chunks_of_texts_join_seamlessly(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [" ".join("abcdef"[(i + j) % 6] for j in range(i % 4)) for i in range(50)]
    whole = tokenize_and_pack(texts, words, 7, eos_id=2)
    monkeypatch.setattr(lm, "_BATCH_SIZE", 3)
    for batched in (False, True):
        tokenizer = (lambda batch: [words(t) for t in batch]) if batched else words
        for texts_in in (texts, pa.chunked_array([texts[:20], texts[20:]])):
            out = tokenize_and_pack(texts_in, tokenizer, 7, eos_id=2, batched=batched)
            for name in whole:
                np.testing.assert_array_equal(out[name], whole[name])


# -- tokenizers -------------------------------------------------------------------------------
class FakeHFTokenizer:
    """Mimics a ``transformers`` tokenizer: str or list of str in, a mapping out; adds a
    [CLS] (id 101) at the start unless ``add_special_tokens=False``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def _ids(self, text: str, add_special_tokens: bool) -> list[int]:
        return ([101] if add_special_tokens else []) + words(text)

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        self.calls.append(text)
        if isinstance(text, str):
            return {"input_ids": self._ids(text, add_special_tokens), "attention_mask": []}
        return {"input_ids": [self._ids(t, add_special_tokens) for t in text]}


def test_hf_transformers_like_tokenizer_is_called_in_batches() -> None:
    tok = FakeHFTokenizer()
    out = tokenize_and_pack(["a b", "c", "d"], tok, 3)  # 101 10 11 101 12 101 13
    assert out["input_ids"].tolist() == [[101, 10, 11], [101, 12, 101]]
    assert out["targets"].tolist() == [[10, 11, 101], [12, 101, 13]]
    assert tok.calls == ["a b", ["a b", "c", "d"]]  # one probe, then one batched call
    out = tokenize_and_pack(["a b", "c"], tok, 3, tokenizer_kwargs={"add_special_tokens": False})
    assert out["input_ids"].tolist() == [[10, 11, 12]]
    assert out["targets"].tolist() == [[11, 12, 0]]
    assert out["mask"].tolist() == [[True, True, False]]


def test_batched_callable() -> None:
    calls: list[list[str]] = []

    def batch_tokenize(batch: list[str]) -> list[list[int]]:
        calls.append(batch)
        return [words(t) for t in batch]

    out = tokenize_and_pack(["a b", "c", "d e f"], batch_tokenize, 4, batched=True)
    assert out["input_ids"].tolist() == [[10, 11, 12, 13], [14, 15, 0, 0]]
    assert calls == [["a b", "c", "d e f"]]


def test_callable_returning_numpy_mapping_or_encoding() -> None:
    class Encoding:
        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

    for tokenize in (
        lambda t: np.array(words(t), dtype=np.int64),
        lambda t: np.array(words(t), dtype=np.uint16),
        lambda t: Encoding(words(t)),
        lambda t: {"input_ids": words(t)},
    ):
        out = tokenize_and_pack(["a b", "c", "d e f"], tokenize, 4, batched=False)
        assert out["input_ids"].tolist() == [[10, 11, 12, 13], [14, 15, 0, 0]]


def test_object_with_encode_batch() -> None:
    class Encoding:
        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

    class Tok:
        def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[Any]:
            return [Encoding(([1] if add_special_tokens else []) + words(t)) for t in texts]

    out = tokenize_and_pack(["a b", "c"], Tok(), 2)
    assert out["input_ids"].tolist() == [[1, 10], [11, 1]]
    assert out["targets"].tolist() == [[10, 11], [1, 12]]
    out = tokenize_and_pack(["a b", "c"], Tok(), 2, tokenizer_kwargs={"add_special_tokens": False})
    assert out["input_ids"].tolist() == [[10, 11]]


# -- errors -----------------------------------------------------------------------------------
def test_unknown_column_names_the_available_ones() -> None:
    table = pa.table({"user": ["u"], "body": ["a b"]})
    group = ga.Group("u", table.to_batches(), table.schema)
    for texts in (table, table.to_batches()[0], group):
        with pytest.raises(ValueError, match=r"'text'.*'user', 'body'"):
            tokenize_and_pack(texts, words, 4)


def test_non_text_column() -> None:
    table = pa.table({"text": [1, 2]})
    for texts in (table, table.column(0), ga.Group("g", [], table.schema)):  # empty, too
        with pytest.raises(TypeError, match=r"column 'text' is int64, not a string column"):
            tokenize_and_pack(texts, words, 4)
    with pytest.raises(TypeError, match="texts must be str, got int"):
        tokenize_and_pack(["a", 3], words, 4)


@pytest.mark.parametrize("seq_len", [0, -1, True, 2.5, "4", None])
def test_bad_seq_len(seq_len: Any) -> None:
    with pytest.raises(ValueError, match="seq_len"):
        tokenize_and_pack(["a b"], words, seq_len)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="one string"):
        tokenize_and_pack("a b c", words, 4)
    with pytest.raises(TypeError, match="type int"):
        tokenize_and_pack(5, words, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="eos_id"):
        tokenize_and_pack(["a"], words, 4, eos_id="</s>")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="neither callable nor has encode_batch"):
        tokenize_and_pack(["a"], {"a": 1}, 4)


def test_bad_tokenizer_output() -> None:
    with pytest.raises(TypeError, match="returned str"):
        tokenize_and_pack(["a"], lambda t: t, 4)
    with pytest.raises(TypeError, match="returned int"):
        tokenize_and_pack(["a"], lambda t: 3, 4)
    with pytest.raises(TypeError, match=r"returned float 1\.5 as a token id"):
        tokenize_and_pack(["a"], lambda t: [1.5], 4)

    def batch_only(batch: list[str]) -> list[list[int]]:
        return [words(t) for t in batch]

    # A batched callable not declared batched sees one str and iterates its characters.
    with pytest.raises(TypeError, match="needs batched=True"):
        tokenize_and_pack(["a b"], batch_only, 4)
    with pytest.raises(TypeError, match="returned 1 results for 2 texts"):
        tokenize_and_pack(["a", "b"], lambda batch: [[1, 2]], 4, batched=True)


# -- Group and real data ----------------------------------------------------------------------
def test_group_method(tmp_path: Path) -> None:
    table = pa.table({"user": ["ann", "bob", "ann"], "text": ["a b", "c", "d e f"]})
    ds = ga.build(table, key="user", output=tmp_path / "ds")
    out = ds["ann"].tokenize_and_pack(words, 3, eos_id=2)  # 10 11 2 13 14 15 2
    assert out["input_ids"].tolist() == [[10, 11, 2], [13, 14, 15]]
    assert out["targets"].tolist() == [[11, 2, 13], [14, 15, 2]]
    assert out["mask"].all()
    with pytest.raises(ValueError, match=r"no column 'body'.*'group_id', 'user', 'text'"):
        ds["bob"].tokenize_and_pack(words, 3, column="body")


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> ga.GroupedDataset:
    path = data_file(data_dir, "shakespeare/shakespeare_lines.parquet")
    return ga.build(path, key="play_speaker", output=tmp_path_factory.mktemp("lm") / "by-speaker")


def _word_vocab(ds: ga.GroupedDataset) -> dict[str, int]:
    """A whitespace word vocabulary built from the data: 0 pad, 1 <unk>, 2 <eos>, then words
    by first appearance."""
    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2}
    for group in ds.iter_groups(columns=["text"]):
        for text in group.to_arrow().column("text").to_pylist():
            for word in (text or "").split():
                vocab.setdefault(word, len(vocab))
    return vocab


def test_shakespeare_every_character(shakespeare: ga.GroupedDataset) -> None:
    ds = shakespeare
    vocab = _word_vocab(ds)

    def tokenize(text: str) -> list[int]:
        return [vocab.get(w, 1) for w in text.split()]

    seq_len = 32
    groups = blocks = targets = 0
    start = time.perf_counter()
    for group in ds.iter_groups(columns=["text"]):
        texts = [t for t in group.to_arrow().column("text").to_pylist() if t is not None]
        n = sum(len(t.split()) + 1 for t in texts)  # words plus one <eos> per line
        out = group.tokenize_and_pack(tokenize, seq_len, eos_id=2)
        expected_blocks = -(-(n - 1) // seq_len) if n > 1 else 0
        check_shapes(out, expected_blocks, seq_len)
        assert out["input_ids"].dtype == np.int32
        assert int(out["mask"].sum()) == max(n - 1, 0)
        x, y = out["input_ids"], out["targets"]
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
        np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])
        if n > 1:  # every line ends with <eos>, so the last real target is <eos>
            assert y[out["mask"]][-1] == 2
        groups += 1
        blocks += expected_blocks
        targets += max(n - 1, 0)
    elapsed = time.perf_counter() - start
    assert groups == ds.num_groups == 1_334
    assert blocks > 0 and targets > 500_000
    assert elapsed < 30  # a few seconds at most; generous for slow machines

    # One character checked token by token against the plain-Python reference.
    group = ds["Hamlet::HAMLET"]
    texts = [t for t in group.to_arrow().column("text").to_pylist() if t is not None]
    out = group.tokenize_and_pack(tokenize, seq_len, eos_id=2)
    inputs, tgts, mask = reference([tokenize(t) for t in texts], seq_len, eos=2)
    assert out["input_ids"].tolist() == inputs
    assert out["targets"].tolist() == tgts
    assert out["mask"].tolist() == mask
    assert len(inputs) > 100


def test_shakespeare_hf_tokenizers_wordlevel(shakespeare: ga.GroupedDataset) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    ds = shakespeare
    vocab = _word_vocab(ds)
    tok = tokenizers.Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()

    def tokenize(text: str) -> list[int]:
        return [vocab.get(w, 1) for w in text.split()]

    checked = 0
    for group in ds.iter_groups(columns=["text"]):
        if group.num_rows < 200:
            continue
        by_hf = group.tokenize_and_pack(tok, 64, eos_id=2)
        by_callable = group.tokenize_and_pack(tokenize, 64, eos_id=2)
        for name in by_hf:
            np.testing.assert_array_equal(by_hf[name], by_callable[name])
        checked += 1
    assert checked > 50


def test_lazy_group_is_streamed() -> None:
    if not hasattr(ga.Group, "lazy"):
        pytest.skip("Group.lazy is not available")
    table = pa.table({"text": ["a b", "c", "d e f"]})
    reads: list[int] = []

    def source() -> Iterator[pa.RecordBatch]:
        reads.append(1)
        return iter(table.to_batches(max_chunksize=1))

    group = ga.Group.lazy("g", source, table.schema, 3)
    out = group.tokenize_and_pack(words, 4)
    assert out["input_ids"].tolist() == [[10, 11, 12, 13], [14, 15, 0, 0]]
    assert reads == [1]
