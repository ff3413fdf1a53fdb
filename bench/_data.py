"""The synthetic web corpus the benchmarks group: ``url``, ``text``, ``timestamp``, ``label``.

Hosts follow a Zipf law (exponent 1.1, truncated to 200,000 hosts), so a few hosts hold
most rows and most hosts hold a few, as in a web crawl. ``text`` is ~500 bytes of words
drawn from a Zipf-weighted vocabulary. ``label`` is a uniform integer ``0 .. 9`` (a class
label for the label partitioners), drawn from its own generator so that the other columns
are the same as before it was added. Everything is vectorized with numpy and pyarrow, and
deterministic: the same ``--rows`` and ``--seed`` give the same file.

The corpus is cached in ``bench/data/`` with a JSON sidecar holding its row count and
in-memory Arrow size; it is regenerated only when missing. The file name carries
``VERSION``, raised whenever the columns change, so that an older cache is not reused.

``clients()`` makes the other corpus, the one ``bench/read.py`` reads back: rows of many
small clients (federated-learning users) in random order, see its docstring.

Run: ``python3 -m bench._data --rows 2000000`` (``--clients N`` for the client corpus)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_ROWS = 2_000_000
NUM_HOSTS = 200_000
HOST_EXPONENT = 1.1
VOCABULARY = 20_000
WORDS_PER_ROW = (40, 100)  # uniform; ~70 words of ~7 bytes: ~500 bytes
NUM_LABELS = 10
#: In the cache's file name; 2: the ``label`` column was added.
VERSION = 2
_CHUNK_ROWS = 100_000
_TLDS = (".com", ".org", ".net", ".de", ".fr", ".io", ".co.uk", ".info")
_EPOCH = 1_640_995_200  # 2022-01-01T00:00:00Z
_SPAN_SECONDS = 3 * 365 * 86_400
_SCHEMA = pa.schema(
    [("url", pa.string()), ("text", pa.string()), ("timestamp", pa.string()), ("label", pa.int64())]
)


@dataclass(frozen=True, slots=True)
class Corpus:
    """A generated corpus file with its size: rows and Arrow bytes in memory."""

    path: Path
    num_rows: int
    arrow_bytes: int
    file_bytes: int


def corpus(rows: int = DEFAULT_ROWS, seed: int = 0) -> Corpus:
    """The cached corpus of ``rows`` rows, generated first if missing."""
    path = DATA_DIR / f"corpus-v{VERSION}-{rows}-s{seed}.parquet"
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        _generate(path, meta, rows, seed)
    info = json.loads(meta.read_text())
    return Corpus(path, info["num_rows"], info["arrow_bytes"], path.stat().st_size)


def _generate(path: Path, meta: Path, rows: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    words = _vocabulary(np.random.default_rng([seed, 0]))
    host_cdf = _zipf_cdf(NUM_HOSTS, HOST_EXPONENT)
    # A lookup table maps 2**20 equal slices of [0, 1) to words: faster than searchsorted.
    word_table = np.searchsorted(_zipf_cdf(VOCABULARY, 1.0), (np.arange(2**20) + 0.5) / 2**20)
    arrow_bytes = 0
    with pq.ParquetWriter(tmp, _SCHEMA, compression="zstd") as writer:
        for start in range(0, rows, _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, rows - start)
            rng = np.random.default_rng([seed, 1, start])
            labels = np.random.default_rng([seed, 2, start]).integers(0, NUM_LABELS, n)
            table = _chunk(rng, start, n, host_cdf, words, word_table, labels)
            arrow_bytes += table.nbytes
            writer.write_table(table)
    os.replace(tmp, path)
    meta.write_text(json.dumps({"num_rows": rows, "arrow_bytes": arrow_bytes, "seed": seed}))


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _vocabulary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Words as a (VOCABULARY, 12) byte matrix, each followed by a space, and their lengths."""
    lengths = rng.integers(2, 11, VOCABULARY)  # letters; +1 for the space
    letters = rng.integers(ord("a"), ord("z") + 1, (VOCABULARY, 12), dtype=np.uint8)
    letters[np.arange(VOCABULARY), lengths] = ord(" ")
    return letters, lengths + 1


def _chunk(
    rng: np.random.Generator,
    start: int,
    n: int,
    host_cdf: np.ndarray,
    words: tuple[np.ndarray, np.ndarray],
    word_table: np.ndarray,
    labels: np.ndarray,
) -> pa.Table:
    hosts = np.searchsorted(host_cdf, rng.random(n)) + 1
    url = _urls(hosts, np.arange(start, start + n))
    text = _texts(rng, n, words, word_table)
    seconds = np.sort(rng.integers(_EPOCH, _EPOCH + _SPAN_SECONDS, n))
    stamps = pc.strftime(pa.array(seconds, pa.timestamp("s")), "%Y-%m-%dT%H:%M:%S")
    return pa.table([url, text, stamps, pa.array(labels, pa.int64())], schema=_SCHEMA)


def _urls(hosts: np.ndarray, positions: np.ndarray) -> pa.Array:
    tld = pa.array(_TLDS).take(pa.array(hosts % len(_TLDS)))
    return pc.binary_join_element_wise(
        "https://host",
        pa.array(hosts).cast(pa.string()),
        ".example",
        tld,
        "/path/",
        pa.array(positions).cast(pa.string()),
        "",
    )


def _texts(
    rng: np.random.Generator,
    n: int,
    words: tuple[np.ndarray, np.ndarray],
    word_table: np.ndarray,
    words_per_row: tuple[int, int] = WORDS_PER_ROW,
) -> pa.Array:
    letters, lengths = words
    per_row = rng.integers(words_per_row[0], words_per_row[1] + 1, n)
    chosen = word_table[rng.integers(0, len(word_table), int(per_row.sum()))]
    size = lengths[chosen]
    size[np.cumsum(per_row) - 1] -= 1  # no space after a row's last word
    mask = np.arange(letters.shape[1]) < size[:, None]
    data = letters[chosen][mask]
    word_ends = np.cumsum(size)
    offsets = np.concatenate([[0], word_ends[np.cumsum(per_row) - 1]]).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


#: The client corpus (``clients()``): in its cache's file name, raised when it changes.
CLIENTS_VERSION = 1
DEFAULT_CLIENTS = 200_000
CLIENT_MEDIAN_ROWS = 3
CLIENT_SIGMA = 1.2  # of the log of a client's row count: a long tail (max ~700 rows at 200k)
CLIENT_TEXT_WORDS = (15, 65)  # ~300 bytes
CLIENT_TITLE_WORDS = (3, 10)  # ~50 bytes
_CLIENTS_SCHEMA = pa.schema(
    [
        ("client", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("timestamp", pa.string()),
        ("score", pa.float64()),
    ]
)


def clients(groups: int = DEFAULT_CLIENTS, seed: int = 0) -> Corpus:
    """The cached client corpus of ``groups`` clients, generated first if missing.

    Each client (``client`` = ``user<n>``) has ``max(1, round(X))`` rows, ``X`` lognormal
    with median ``CLIENT_MEDIAN_ROWS`` and sigma ``CLIENT_SIGMA`` (median 3 rows, mean ~6,
    a long tail of clients with hundreds); rows are shuffled, so a client's rows are spread
    over the file as in a log. Columns: ``title`` (~50 bytes) and ``text`` (~300 bytes) of
    Zipf-weighted words, an ISO-8601 ``timestamp``, a float ``score``. 200,000 clients:
    ~1.2M rows, ~500 MB of Arrow data. The JSON sidecar also holds the group count.
    """
    path = DATA_DIR / f"clients-v{CLIENTS_VERSION}-{groups}-s{seed}.parquet"
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        _generate_clients(path, meta, groups, seed)
    info = json.loads(meta.read_text())
    return Corpus(path, info["num_rows"], info["arrow_bytes"], path.stat().st_size)


def _generate_clients(path: Path, meta: Path, groups: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    rng = np.random.default_rng([seed, 10])
    sizes = rng.lognormal(np.log(CLIENT_MEDIAN_ROWS), CLIENT_SIGMA, groups)
    sizes = np.maximum(1, np.rint(sizes)).astype(np.int64)
    owners = rng.permutation(np.repeat(np.arange(groups), sizes))
    words = _vocabulary(np.random.default_rng([seed, 0]))
    word_table = np.searchsorted(_zipf_cdf(VOCABULARY, 1.0), (np.arange(2**20) + 0.5) / 2**20)
    arrow_bytes = 0
    with pq.ParquetWriter(tmp, _CLIENTS_SCHEMA, compression="zstd") as writer:
        for start in range(0, len(owners), _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, len(owners) - start)
            rng = np.random.default_rng([seed, 11, start])
            client = pc.binary_join_element_wise(
                "user", pa.array(owners[start : start + n]).cast(pa.string()), ""
            )
            title = _texts(rng, n, words, word_table, CLIENT_TITLE_WORDS)
            text = _texts(rng, n, words, word_table, CLIENT_TEXT_WORDS)
            seconds = np.sort(rng.integers(_EPOCH, _EPOCH + _SPAN_SECONDS, n))
            stamps = pc.strftime(pa.array(seconds, pa.timestamp("s")), "%Y-%m-%dT%H:%M:%S")
            score = pa.array(rng.random(n))
            table = pa.table([client, title, text, stamps, score], schema=_CLIENTS_SCHEMA)
            arrow_bytes += table.nbytes
            writer.write_table(table)
    os.replace(tmp, path)
    info = {
        "num_rows": len(owners),
        "arrow_bytes": arrow_bytes,
        "num_groups": groups,
        "median_rows": float(np.median(sizes)),
        "max_rows": int(sizes.max()),
        "seed": seed,
    }
    meta.write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, help="make the client corpus of N clients instead")
    args = parser.parse_args()
    started = time.perf_counter()
    made = clients(args.clients, args.seed) if args.clients else corpus(args.rows, args.seed)
    print(
        f"{made.path}: {made.num_rows:,} rows, {made.arrow_bytes / 1e6:,.0f} MB Arrow, "
        f"{made.file_bytes / 1e6:,.0f} MB file ({time.perf_counter() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
