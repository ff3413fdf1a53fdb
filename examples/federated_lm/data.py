"""The study's data path, all through grouparrow: build the grouped dataset, hold out clients
(``split_groups``), split each held-out client's rows (``split_rows``), sample cohorts
(``sample``), and turn a client's texts into byte-level ``(input, target, mask)`` blocks
(``Group.tokenize_and_pack``) as PyTorch tensors. Every call that reads or packs data runs
under the ``data`` clock of a :class:`Clock`, so the study can report what the data path
costs next to training.

Example:
    >>> clock = Clock()
    >>> with clock("data"):
    ...     blocks = pack_texts(["To be,", "or not"], seq_len=4)
    >>> blocks.inputs.tolist(), blocks.tokens
    ([[84, 111, 32, 98], [101, 44, 256, 111], [114, 32, 110, 111], [116, 256, 0, 0]], 13)
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import grouparrow as ga
from grouparrow.group import Group

#: The token after every text (a line of a play, a web page): id 256, after the 256 bytes.
EOS_ID = 256
#: The id in the padded tail of a client's last block (masked out of every loss).
PAD_ID = 0
#: ../shared/data from the repository root.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class Clock:
    """Wall time per phase (``data``, ``train``, ``eval``, ``personalize``, ...), summed
    over every ``with clock(phase):`` block.

    Example:
        >>> clock = Clock()
        >>> with clock("train"):
        ...     pass
        >>> list(clock.seconds)
        ['train']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


@dataclass
class Blocks:
    """One client's data as ``(blocks, seq_len)`` tensors: ``inputs`` and ``targets``
    (int64 ids) and ``mask`` (True where the target is a real token)."""

    id: Any
    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = int(self.mask.sum())

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def take(self, rows: Sequence[int] | np.ndarray) -> Blocks:
        """These blocks only (in this order)."""
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return Blocks(self.id, self.inputs[index], self.targets[index], self.mask[index])


def byte_tokenize(texts: list[str]) -> list[list[int]]:
    """UTF-8 bytes of each text (a batched tokenizer for :func:`grouparrow.lm.tokenize_and_pack`).

    Example:
        >>> byte_tokenize(["hé", "!"])
        [[104, 195, 169], [33]]
    """
    return [list(text.encode("utf-8")) for text in texts]


def pack_texts(
    texts: Group | Iterable[str],
    seq_len: int,
    *,
    max_blocks: int | None = None,
    rng: np.random.Generator | None = None,
    group_id: Any = None,
) -> Blocks:
    """A client's texts as byte-level blocks: every text's bytes then ``EOS_ID``,
    concatenated and cut into ``seq_len``-token windows by :func:`grouparrow.lm.tokenize_and_pack`
    (targets shifted by one, the last block padded and masked). With ``max_blocks``, a client
    with more blocks keeps a random ``max_blocks`` of them (drawn with ``rng``, kept in order).

    Example:
        >>> pack_texts(["abc"] * 40, 8, max_blocks=4, rng=np.random.default_rng(0)).inputs.shape
        torch.Size([4, 8])
    """
    if isinstance(texts, Group):
        group_id = texts.id if group_id is None else group_id
        packed = texts.tokenize_and_pack(
            byte_tokenize, seq_len, eos_id=EOS_ID, pad_id=PAD_ID, batched=True
        )
    else:
        packed = ga.lm.tokenize_and_pack(
            list(texts), byte_tokenize, seq_len, eos_id=EOS_ID, pad_id=PAD_ID, batched=True
        )
    inputs, targets, mask = packed["input_ids"], packed["targets"], packed["mask"]
    if max_blocks is not None and len(inputs) > max_blocks:
        keep = np.sort((rng or np.random.default_rng(0)).choice(len(inputs), max_blocks, False))
        inputs, targets, mask = inputs[keep], targets[keep], mask[keep]
    return Blocks(
        group_id,
        torch.from_numpy(inputs.astype(np.int64)),
        torch.from_numpy(targets.astype(np.int64)),
        torch.from_numpy(mask),
    )


# -- datasets ---------------------------------------------------------------------------------
def shakespeare_source(data_dir: Path = SHARED_DATA) -> tuple[Any, Any, str]:
    """``(source, key, description)`` of the Shakespeare lines grouped by ``play_speaker``:
    the 105k-line copy under ``data_dir``, else the 600 lines bundled with grouparrow
    (``ga.examples.path("shakespeare")``, keyed by ``play || '::' || speaker``).

    Example:
        >>> source, key, what = shakespeare_source()
        >>> key if source.endswith(".parquet") else "play_speaker"
        'play_speaker'
    """
    path = data_dir / "shakespeare" / "shakespeare_lines.parquet"
    if path.is_file():
        return str(path), "play_speaker", f"{path.name}: one client per play_speaker"
    return (
        ga.examples.path("shakespeare"),
        ga.sql("play || '::' || speaker"),
        "the 600 bundled lines (ga.examples): one client per play::speaker",
    )


def c4_source(data_dir: Path = SHARED_DATA) -> tuple[Any, Any, str]:
    """``(source, key, description)`` of the C4 sample (``c4/*.jsonl``, ``c4/*.json.gz``)
    grouped by URL host (``ga.partitioners.url_host``, FedC4's key).

    Example:
        >>> source, key, what = c4_source()   # doctest: +SKIP
    """
    pattern = str(data_dir / "c4")
    files = sorted(glob.glob(f"{pattern}/*.jsonl") + glob.glob(f"{pattern}/*.json.gz"))
    if not files:
        raise FileNotFoundError(f"no C4 files (*.jsonl, *.json.gz) under {pattern}")
    names = ", ".join(os.path.basename(f) for f in files)
    return files, ga.partitioners.url_host("url"), f"{names}: one client per URL host"


def build_dataset(name: str, output: Path, data_dir: Path = SHARED_DATA) -> tuple[Any, str]:
    """Build dataset ``name`` (``"shakespeare"`` or ``"c4"``) grouped into ``output``
    (overwritten); returns ``(dataset, description)``.

    Example:
        >>> ds, what = build_dataset("shakespeare", Path("/tmp/fedlm-data"))   # doctest: +SKIP
        >>> ds.num_groups                                                      # doctest: +SKIP
        1334
    """
    if name == "shakespeare":
        source, key, what = shakespeare_source(data_dir)
        unify = False
    elif name == "c4":
        source, key, what = c4_source(data_dir)
        unify = True  # the two files name their date column differently
    else:
        raise ValueError(f"unknown dataset {name!r}: shakespeare or c4")
    ds = ga.build(source, key=key, output=str(output), mode="overwrite", unify_schemas=unify)
    return ds, what


# -- held-out clients -------------------------------------------------------------------------
@dataclass
class EvalClient:
    """A held-out client: ``train`` (for personalization) and ``eval`` blocks of its own."""

    id: Any
    train: Blocks
    eval: Blocks


def eval_clients(
    heldout: Any,
    *,
    seq_len: int,
    within: str,
    fraction: float,
    seed: int,
    max_train_blocks: int,
    max_eval_blocks: int,
    limit: int | None = None,
) -> tuple[list[EvalClient], int]:
    """The held-out clients that can be evaluated and personalized, and how many held-out
    clients there were.

    Each held-out client's data is split in two: with ``within="rows"`` by
    ``heldout.split_rows(fraction, seed=seed)`` (``fraction`` of its rows — lines, pages —
    in eval; both sides streamed in the same group order), with ``within="blocks"`` the last
    ``ceil(fraction * blocks)`` of its packed blocks (for C4, where a host has one page).
    A client is kept when its train part has at least ``2 * seq_len`` real tokens and its
    eval part at least ``seq_len``. The train part is capped at ``max_train_blocks`` and the
    eval part at ``max_eval_blocks`` (a random subset, drawn from ``seed``). ``limit`` keeps
    a random ``limit`` of the kept clients.

    Example:
        >>> clients, total = eval_clients(test, seq_len=64, within="rows", fraction=0.2,
        ...     seed=0, max_train_blocks=128, max_eval_blocks=32)   # doctest: +SKIP
    """
    rng = np.random.default_rng([seed, 7])
    pairs: list[tuple[Blocks, Blocks]] = []
    if within == "rows":
        fit, held = heldout.split_rows(fraction, seed=seed)
        columns = ["text"]
        for train_group, eval_group in zip(
            fit.iter_groups(columns=columns), held.iter_groups(columns=columns), strict=True
        ):
            if train_group.id != eval_group.id:
                raise AssertionError("split_rows sides out of step")
            train = pack_texts(train_group, seq_len, max_blocks=max_train_blocks, rng=rng)
            test = pack_texts(eval_group, seq_len, max_blocks=max_eval_blocks, rng=rng)
            pairs.append((train, test))
    elif within == "blocks":
        for group in heldout.iter_groups(columns=["text"]):
            blocks = pack_texts(group, seq_len)
            n_eval = int(np.ceil(fraction * len(blocks)))
            train = blocks.take(np.arange(len(blocks) - n_eval))
            test = blocks.take(np.arange(len(blocks) - n_eval, len(blocks)))
            pairs.append((_cap(train, max_train_blocks, rng), _cap(test, max_eval_blocks, rng)))
    else:
        raise ValueError(f"within={within!r} must be 'rows' or 'blocks'")
    kept = [
        EvalClient(train.id, train, test)
        for train, test in pairs
        if train.tokens >= 2 * seq_len and test.tokens >= seq_len
    ]
    if limit is not None and len(kept) > limit:
        kept = [kept[i] for i in np.sort(rng.choice(len(kept), limit, replace=False))]
    return kept, len(pairs)


def _cap(blocks: Blocks, max_blocks: int, rng: np.random.Generator) -> Blocks:
    if len(blocks) <= max_blocks:
        return blocks
    return blocks.take(np.sort(rng.choice(len(blocks), max_blocks, replace=False)))


def cohort(
    train: Any,
    k: int,
    round_: int,
    *,
    seed: int,
    seq_len: int,
    max_blocks: int,
    clock: Clock | None = None,
) -> list[Blocks]:
    """Round ``round_``'s cohort: ``train.sample(k, seed=seed * 1_000_000 + round_)`` (so
    ``seed=0`` is ``sample(k, seed=round)``), each client packed and capped at ``max_blocks``
    random blocks; clients with no target (a single byte of text) are left out. Reading the
    groups counts under ``clock``'s ``fetch`` phase, packing them under ``pack``.

    Example:
        >>> clients = cohort(train, 8, 0, seed=0, seq_len=64, max_blocks=32)   # doctest: +SKIP
    """
    clock = clock or Clock()
    with clock("fetch"):
        groups = train.sample(k, seed=seed * 1_000_000 + round_)
    out = []
    with clock("pack"):
        for i, group in enumerate(groups):
            rng = np.random.default_rng([seed, round_, i])
            blocks = pack_texts(group, seq_len, max_blocks=max_blocks, rng=rng)
            if blocks.tokens:
                out.append(blocks)
    return out
