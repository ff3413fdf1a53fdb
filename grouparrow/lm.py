"""Language-modelling preprocessing: tokenize a group's texts and pack them into fixed-length
blocks of (input, target) pairs, framework-free (NumPy out).

One client's texts (a :class:`~grouparrow.Group`'s ``text`` column, a pyarrow array, or a list
of ``str``) are tokenized, concatenated into one token stream, and cut into ``seq_len``-token
blocks with the target shifted by one — what Dataset Grouper's language-modelling example did
in TensorFlow.

Semantics, for a stream of ``N`` tokens (every text's ids, each text as
``[bos_id] + ids + [eos_id]`` with whichever of the two is given, in order; a null text is
skipped):

* block ``b`` is the window ``stream[b * seq_len : b * seq_len + seq_len + 1]``: windows of
  ``seq_len + 1`` tokens stepping by ``seq_len``, so consecutive windows share one token and
  no target is lost; ``input_ids[b] = window[:-1]``, ``targets[b] = window[1:]``. Each of
  tokens ``1 .. N-1`` is a target exactly once (token 0 has no predecessor: it is never one).
* there are ``ceil((N - 1) / seq_len)`` blocks (0 when ``N < 2``); the last may be short and
  is filled with ``pad_id`` (in inputs and targets alike, so ``targets[b, :-1] ==
  input_ids[b, 1:]`` and ``targets[b, -1] == input_ids[b + 1, 0]`` hold everywhere).
  ``drop_remainder=True`` keeps only the ``(N - 1) // seq_len`` full blocks.
* ``mask[b, j]`` is True where ``targets[b, j]`` is a real token (False only in the padded
  tail of the last block); weight the loss by it. The stream's last token is an input whose
  target is padding, so its mask is False.
* without ``bos_id`` / ``eos_id`` texts are joined with nothing between them (a tokenizer that
  adds its own special tokens, as many HF ones do, marks the boundaries itself); pass
  ``eos_id`` (or ``bos_id``) to make every document boundary visible to the model.
* arrays are ``int32`` when every id and ``pad_id`` fits, else ``int64``; an empty input (no
  texts, or fewer than two tokens) gives ``(0, seq_len)`` arrays.

Example:
    >>> vocab = {"<eos>": 1, "to": 2, "be": 3, "or": 4, "not": 5}
    >>> def tokenize(text):
    ...     return [vocab[word] for word in text.split()]
    >>> out = tokenize_and_pack(["to be or", "not to be"], tokenize, 3, eos_id=1)
    >>> out["input_ids"].tolist()        # stream: 2 3 4 1 5 2 3 1 (8 tokens, 7 targets)
    [[2, 3, 4], [1, 5, 2], [3, 1, 0]]
    >>> out["targets"].tolist()
    [[3, 4, 1], [5, 2, 3], [1, 0, 0]]
    >>> out["mask"].tolist()
    [[True, True, True], [True, True, True], [True, False, False]]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from grouparrow.group import Group

__all__ = ["tokenize_and_pack"]

#: Texts per tokenizer call when the tokenizer is called in batches.
_BATCH_SIZE = 4096
_INT32 = np.iinfo(np.int32)


def tokenize_and_pack(
    texts: Group | pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray | Iterable[str],
    tokenizer: Any,
    seq_len: int,
    *,
    column: str = "text",
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    drop_remainder: bool = False,
    batched: bool | None = None,
    tokenizer_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Tokenize ``texts``, concatenate them, and cut ``seq_len``-token blocks of inputs and
    next-token targets (see the module's docstring for the exact semantics).

    Args:
        texts: a :class:`~grouparrow.Group`, ``pyarrow.Table`` or ``RecordBatch`` (its
            ``column`` is used), a pyarrow string array or chunked array, or an iterable of
            ``str`` (not one ``str``). Null values are skipped.
        tokenizer: one of
            - a callable ``str -> list[int]`` (or a NumPy array of ids);
            - a callable ``list[str] -> list[list[int]]``, with ``batched=True``;
            - a Hugging Face ``transformers`` tokenizer (calling it gives a mapping with
              ``"input_ids"``); it is called on lists of texts, without truncation (its
              warning that a text is longer than the model's maximum does not apply here:
              texts are cut into blocks);
            - a Hugging Face ``tokenizers.Tokenizer`` (anything with ``encode_batch``
              returning encodings with ``.ids``); always called in batches.
            A callable's result may also be a mapping with ``"input_ids"`` or an object with
            ``.ids``.
        seq_len: tokens per block (inputs and targets alike), at least 1.
        column: the text column of a Group / Table / RecordBatch.
        bos_id: a token id put before every text.
        eos_id: a token id put after every text (marks document boundaries).
        pad_id: the id filling the padded tail of the last block (where ``mask`` is False).
        drop_remainder: drop the last block when it is not full (then ``mask`` is all True).
        batched: whether a callable ``tokenizer`` takes a list of texts. ``None`` (default)
            probes it with the first text: a mapping result (a ``transformers`` tokenizer)
            means batched, anything else means one text per call. Ignored for objects with
            ``encode_batch``.
        tokenizer_kwargs: keyword arguments passed to every tokenizer call (for instance
            ``{"add_special_tokens": False}`` for an HF tokenizer).

    Returns:
        ``{"input_ids", "targets", "mask"}``: arrays of shape ``(blocks, seq_len)``; ids
        ``int32`` (``int64`` if an id needs it), mask ``bool``.

    Raises:
        ValueError: ``seq_len`` below 1, or ``column`` is not a column of ``texts`` (the
            message names the available ones).
        TypeError: ``texts`` is a ``str`` or not text, or the tokenizer returns something
            other than integer ids.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
    seq_len = int(seq_len)
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer))
        ):
            raise TypeError(f"{name}={value!r} must be an integer token id")
    kwargs = dict(tokenizer_kwargs or {})
    chunks = _text_chunks(texts, column)
    ids, lengths = _tokenize(chunks, tokenizer, batched, kwargs)
    stream = _with_specials(ids, lengths, bos_id, eos_id)
    return _pack(stream, seq_len, pad_id, drop_remainder)


# -- texts ------------------------------------------------------------------------------------
def _text_chunks(texts: Any, column: str) -> Iterator[list[str]]:
    """The non-null texts, in order, as lists of at most ``_BATCH_SIZE`` strings."""
    if isinstance(texts, (Group, pa.Table, pa.RecordBatch)):
        if column not in texts.schema.names:
            available = ", ".join(repr(n) for n in texts.schema.names) or "none"
            raise ValueError(f"no column {column!r} to tokenize; the columns are: {available}")
        _check_text_type(texts.schema.field(column).type, column)
        if isinstance(texts, Group):  # batch by batch: a large group is never all in memory
            return itertools.chain.from_iterable(
                _arrow_chunks(batch.column(column), column)
                for batch in texts.iter_batches(_BATCH_SIZE)
            )
        texts = texts.column(column)
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return _arrow_chunks(texts, column)
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts is one string: pass a list of texts (or a Group)")
    if not isinstance(texts, Iterable):
        raise TypeError(f"cannot tokenize texts of type {type(texts).__name__}")
    return _iter_chunks(texts)


def _check_text_type(arrow_type: pa.DataType, column: str) -> None:
    value_type = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if not (
        pa.types.is_string(value_type)
        or pa.types.is_large_string(value_type)
        or str(value_type) == "string_view"
    ):
        raise TypeError(f"column {column!r} is {arrow_type}, not a string column")


def _arrow_chunks(values: pa.Array | pa.ChunkedArray, column: str) -> Iterator[list[str]]:
    _check_text_type(values.type, column)
    arrays = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for array in arrays:
        if array.null_count:
            array = array.drop_null()
        for start in range(0, len(array), _BATCH_SIZE):
            yield array.slice(start, _BATCH_SIZE).to_pylist()


def _iter_chunks(texts: Iterable[Any]) -> Iterator[list[str]]:
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, _BATCH_SIZE)):
        chunk = [t for t in chunk if t is not None]
        bad = next((t for t in chunk if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"texts must be str, got {type(bad).__name__}: {bad!r:.80}")
        yield chunk


# -- tokenizing -------------------------------------------------------------------------------
def _tokenize(
    chunks: Iterator[list[str]], tokenizer: Any, batched: bool | None, kwargs: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Every text's ids, concatenated (``int64``), and the number of ids of each text."""
    encode: Callable[[list[str]], Sequence[Any]] | None = None
    flat: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for chunk in chunks:
        if not chunk:
            continue
        if encode is None:
            encode = _encoder(tokenizer, batched, kwargs, chunk[0])
        results = [_ids_of(r) for r in encode(chunk)]
        if len(results) != len(chunk):
            raise TypeError(
                f"the tokenizer returned {len(results)} results for {len(chunk)} texts "
                "(a callable of one text needs batched=False)"
            )
        counts = np.fromiter(map(len, results), dtype=np.int64, count=len(results))
        first = next((r for r in results if len(r)), None)
        if first is not None:
            _check_id(first[0])
        total = int(counts.sum())
        flat.append(
            np.fromiter(itertools.chain.from_iterable(results), dtype=np.int64, count=total)
        )
        lengths.append(counts)
    if not lengths:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(flat), np.concatenate(lengths)


def _encoder(
    tokenizer: Any, batched: bool | None, kwargs: dict[str, Any], probe: str
) -> Callable[[list[str]], Sequence[Any]]:
    """A function of a list of texts giving one result per text."""
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if callable(encode_batch):  # tokenizers.Tokenizer
        fast = getattr(tokenizer, "encode_batch_fast", None)  # no offsets: faster
        call = fast if callable(fast) else encode_batch
        return lambda chunk: call(chunk, **kwargs)
    if not callable(tokenizer):
        raise TypeError(
            f"tokenizer of type {type(tokenizer).__name__} is neither callable nor has encode_batch"
        )
    if batched is None:
        batched = isinstance(tokenizer(probe, **kwargs), Mapping)
    if batched:

        def call_batched(chunk: list[str]) -> Sequence[Any]:
            result = tokenizer(chunk, **kwargs)
            if isinstance(result, Mapping):
                result = result["input_ids"]
            return list(result)

        return call_batched
    return lambda chunk: [tokenizer(text, **kwargs) for text in chunk]


def _ids_of(result: Any) -> Sequence[Any]:
    """The ids in one text's tokenizer result (a sequence, mapping or encoding)."""
    if isinstance(result, Mapping):
        result = result["input_ids"]
    elif hasattr(result, "ids") and not isinstance(result, np.ndarray):
        result = result.ids
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise TypeError(
            f"the tokenizer returned {type(result).__name__} for a text, not a list of ids"
        )
    return result  # type: ignore[no-any-return]


def _check_id(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"the tokenizer returned {type(value).__name__} {value!r:.80} as a token id, "
            "not an integer (a batched tokenizer needs batched=True)"
        )


# -- packing ----------------------------------------------------------------------------------
def _with_specials(
    ids: np.ndarray, lengths: np.ndarray, bos_id: int | None, eos_id: int | None
) -> np.ndarray:
    """The token stream: each text's ids between ``bos_id`` and ``eos_id`` (when given)."""
    bos, eos = int(bos_id is not None), int(eos_id is not None)
    if not bos and not eos:
        return ids
    docs = len(lengths)
    extra = bos + eos
    stream = np.empty(len(ids) + docs * extra, dtype=np.int64)
    # Text i starts at its ids' offset plus i * extra special tokens before it.
    starts = np.zeros(docs, dtype=np.int64)
    np.cumsum(lengths[:-1] + extra, out=starts[1:])
    doc_of_token = np.repeat(np.arange(docs, dtype=np.int64), lengths)
    stream[np.arange(len(ids), dtype=np.int64) + doc_of_token * extra + bos] = ids
    if bos_id is not None:
        stream[starts] = bos_id
    if eos_id is not None:
        stream[starts + bos + lengths] = eos_id
    return stream


def _pack(
    stream: np.ndarray, seq_len: int, pad_id: int, drop_remainder: bool
) -> dict[str, np.ndarray]:
    n = len(stream)
    targets_total = max(n - 1, 0)
    blocks = targets_total // seq_len if drop_remainder else -(-targets_total // seq_len)
    size = blocks * seq_len
    fits = _INT32.min <= pad_id <= _INT32.max and (
        n == 0 or (_INT32.min <= stream.min() and stream.max() <= _INT32.max)
    )
    dtype = np.int32 if fits else np.int64
    padded = np.full(size + 1, pad_id, dtype=dtype)
    used = min(n, size + 1)
    padded[:used] = stream[:used]
    positions = np.arange(1, size + 1, dtype=np.int64)
    return {
        "input_ids": padded[:size].reshape(blocks, seq_len),
        "targets": padded[1:].copy().reshape(blocks, seq_len),  # not a view of input_ids
        "mask": (positions < n).reshape(blocks, seq_len),
    }
