"""Corruption detection: damaged files are reported by ``verify`` and refused by readers.

For each file of a built dataset (the manifest, the index, every shard) single bytes are
flipped at many offsets (the Parquet header, the first page, the middle, the page index,
the footer, the trailing length and magic; the manifest's start, numbers, checksums,
whitespace and end; then seeded random offsets), and files are truncated (to 0 bytes, to
half, by one byte). For every damaged dataset:

- ``ga.verify`` reports a problem naming the damaged file (all of them: counted and
  asserted);
- ``ga.open`` and the first read of every read path (stream, fetch, the Arrow cache, stats,
  SQL over the index) either raise a ``FormatError`` naming the file, or return exactly the
  data of the undamaged dataset (the byte was one that path does not read). Never another
  exception, never other data.

Hostile manifests (unknown versions, missing or mistyped fields, non-JSON, paths outside
the dataset, a file listed twice, negative counts), each with a valid checksum (a hostile
writer can compute one), are refused with a ``FormatError`` naming the manifest, and
nothing outside the dataset's directory is opened.

SQL over the shards (the ``examples`` view) scans them through PyArrow, which checks page
CRCs: a flipped byte inside a data page fails the query with DuckDB's error naming the shard.

Environment: ``GROUPARROW_CORRUPTION_OFFSETS`` (default 32) offsets per file;
``GROUPARROW_LONG=1`` raises it to 400. ``GROUPARROW_RELIABILITY_STATS=FILE`` writes the
counts (detected / tried per file kind and per read path) to FILE as JSON lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table

import grouparrow as ga
from grouparrow.format import tail_start

LONG = os.environ.get("GROUPARROW_LONG") == "1"
OFFSETS = int(os.environ.get("GROUPARROW_CORRUPTION_OFFSETS", "400" if LONG else "32"))
STATS = os.environ.get("GROUPARROW_RELIABILITY_STATS")
NUM_SHARDS = 2
FILE_KINDS = ["manifest", "index", *(f"shard-{i}" for i in range(NUM_SHARDS))]


# -- the dataset and what every read path returns from it -----------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset with several row groups per shard, label counts in the index."""
    table = make_table(3_000, 40, seed=5)
    table = table.append_column("label", pa.array(np.arange(3_000) % 3, pa.int64()))
    path = tmp_path_factory.mktemp("corruption") / "ds"
    ga.build(
        table,
        key="k",
        output=path,
        num_shards=NUM_SHARDS,
        row_group_bytes=16 * 1024,
        label_column="label",
    )
    return path


def _stream(path: Path) -> dict[Any, pa.Table]:
    return {g.id: g.to_arrow() for g in ga.open(path).iter_groups()}


def _fetch(path: Path) -> dict[Any, pa.Table]:
    ds = ga.open(path)
    ids = sorted(ga.open(path).group_ids())
    return {gid: ds[gid].to_arrow() for gid in ids}


def _cache(path: Path) -> dict[Any, pa.Table]:
    with tempfile.TemporaryDirectory() as directory:
        return {g.id: g.to_arrow() for g in ga.open(path).cache(directory).iter_groups()}


def _stats(path: Path) -> list[dict[str, Any]]:
    return ga.open(path).stats().to_dicts()


def _sql(path: Path) -> list[tuple[Any, ...]]:
    query = 'SELECT * FROM groups ORDER BY shard, "offset"'
    return ga.open(path).sql(query).fetchall()


def _sql_examples(path: Path) -> list[tuple[Any, ...]]:
    return ga.open(path).sql("SELECT * FROM examples ORDER BY i").fetchall()


def _open(path: Path) -> tuple[int, int]:
    ds = ga.open(path)
    return ds.num_groups, ds.num_rows


READS: dict[str, Callable[[Path], Any]] = {
    "open": _open,
    "stream": _stream,
    "fetch": _fetch,
    "cache": _cache,
    "stats": _stats,
    "sql": _sql,
    "sql_examples": _sql_examples,
}


@pytest.fixture(scope="module")
def expected(pristine: Path) -> dict[str, Any]:
    return {name: read(pristine) for name, read in READS.items()}


def _file_of(root: Path, kind: str) -> Path:
    if kind == "manifest":
        return root / "grouparrow.json"
    if kind == "index":
        return root / "index.parquet"
    manifest = json.loads((root / "grouparrow.json").read_text())
    return root / manifest["shards"][int(kind.split("-")[1])]["file"]


# -- where to flip ------------------------------------------------------------------------------


def _parquet_offsets(data: bytes, count: int, seed: int) -> list[int]:
    """Offsets in every part of a Parquet file, then seeded random ones, ``count`` in all."""
    size = len(data)
    footer = size - 8 - int.from_bytes(data[-8:-4], "little")
    tail = tail_start(pq.read_metadata(pa.BufferReader(data)))
    chosen = [0, 1, 2, 3]  # leading magic
    chosen += [4, 5, 6, 7, 9, 12]  # the first page's header
    chosen += [size // 4, size // 2, (tail + 4) // 2]  # pages
    chosen += [tail, tail + 1, (tail + footer) // 2, footer - 1]  # page index
    chosen += [footer, footer + 1, (footer + size - 8) // 2, size - 9]  # footer
    chosen += list(range(size - 8, size))  # its length and the trailing magic
    return _fill(chosen, size, count, seed)


def _manifest_offsets(text: str, count: int, seed: int) -> list[int]:
    """The manifest's start and end, its numbers, checksums, names, whitespace; random."""
    chosen = [0, 1, len(text) - 1, len(text) - 2, len(text) - 3]
    for pattern in (
        r'"num_rows": (\d)',
        r'"num_groups": (\d)',
        r'"seed": (\d)',
        r'"sha256": "(.)',
        r'"tail_sha256": "[0-9a-f]{10}(.)',
        r'"manifest_sha256": "[0-9a-f]{20}(.)',
        r'"(m)anifest_sha256"',
        r'"created_at": "(.)',
        r'"file": "data/shard-0000(.)',
        r'"index": "(.)',
        r'"arrow_schema": "[A-Za-z0-9+/]{40}(.)',
        r",\n( ) ",
        r'"format_version": (1)',
    ):
        match = re.search(pattern, text)
        assert match is not None, pattern
        chosen.append(match.start(1))
    return _fill(chosen, len(text.encode("utf-8")), count, seed)


def _fill(chosen: list[int], size: int, count: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    offsets = list(dict.fromkeys(o for o in chosen if 0 <= o < size))
    while len(offsets) < min(count, size):
        offset = int(rng.integers(0, size))
        if offset not in offsets:
            offsets.append(offset)
    return offsets[: max(count, len(chosen))]


def _damages(kind: str, data: bytes, seed: int) -> Iterator[tuple[str, bytes]]:
    """(description, damaged bytes): single flipped bytes, then truncations."""
    if kind == "manifest":
        offsets = _manifest_offsets(data.decode("utf-8"), OFFSETS, seed)
    else:
        offsets = _parquet_offsets(data, OFFSETS, seed)
    masks = np.random.default_rng(seed + 1).integers(1, 256, len(offsets))
    for offset, mask in zip(offsets, masks, strict=True):
        if kind == "manifest" and data[offset : offset + 1] == b" ":
            mask = 0x20 ^ 0x09  # a space into a tab: the JSON still parses, to the same body
        damaged = bytearray(data)
        damaged[offset] ^= int(mask)
        yield f"byte {offset} ^ {int(mask):#04x}", bytes(damaged)
    for size in (0, len(data) // 2, len(data) - 1):
        yield f"truncated to {size} bytes", data[:size]


# -- what a damaged dataset gives -----------------------------------------------------------


def _outcome(read: Callable[[Path], Any], root: Path, damaged: Path, expected: Any) -> str:
    """ "detected" (a FormatError naming ``damaged``; from SQL over ``examples``, DuckDB's
    error naming it), "same" (exactly the undamaged data), or what went wrong."""
    try:
        got = read(root)
    except ga.FormatError as exc:
        if str(damaged) in str(exc):
            return "detected"
        return f"a FormatError not naming {damaged}: {exc}"
    except duckdb.Error as exc:
        if read is _sql_examples and str(damaged) in str(exc):
            return "detected"
        return f"{type(exc).__name__} (not a FormatError): {exc}"
    except Exception as exc:
        return f"{type(exc).__name__} (not a FormatError): {exc}"
    return "same" if got == expected else "WRONG DATA"


def _record(entry: dict[str, Any]) -> None:
    if STATS:
        with open(STATS, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_every_damage_is_detected(
    kind: str, pristine: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    target = _file_of(root, kind)
    original = target.read_bytes()
    failures: list[str] = []
    tried = verified = 0
    outcomes: dict[str, dict[str, int]] = {name: {} for name in READS}
    for what, damaged in _damages(kind, original, seed=FILE_KINDS.index(kind)):
        tried += 1
        target.write_bytes(damaged)
        try:
            report = ga.verify(root)
            if not report.ok and any(str(target) in p for p in report.problems):
                verified += 1
            else:
                failures.append(f"{what}: verify says {report.problems or 'OK'}")
            for name, read in READS.items():
                outcome = _outcome(read, root, target, expected[name])
                outcomes[name][outcome] = outcomes[name].get(outcome, 0) + 1
                if outcome not in ("detected", "same"):
                    failures.append(f"{what}: {name}: {outcome}")
        finally:
            target.write_bytes(original)
    _record({"file": kind, "tried": tried, "verify_detected": verified, "reads": outcomes})
    assert not failures, "\n".join(failures)
    assert verified == tried >= min(OFFSETS, len(original)) + 3
    # A damaged file is never read silently by every path: opening or streaming it fails.
    assert outcomes["stream"].get("detected", 0) + outcomes["open"].get("detected", 0) > 0


def test_verify_no_checksums_and_full(pristine: Path, tmp_path: Path) -> None:
    """``--no-checksums`` skips whole-file hashes but still checks sizes, tails and the
    index; ``--full`` recomputes the index's statistics from the data."""
    assert ga.verify(pristine, checksums=False).ok
    assert ga.verify(pristine, full=True).ok
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    # The index rewritten with one group's num_words changed: sizes and checksums differ,
    # and only --full finds which statistic.
    index = pq.read_table(root / "index.parquet")
    words = index.column("num_words").to_pylist()
    words[3] += 1
    index = index.set_column(5, index.schema.field("num_words"), pa.array(words, pa.int64()))
    pq.write_table(index, root / "index.parquet")
    assert not ga.verify(root, checksums=False).ok
    full = ga.verify(root, full=True).problems
    assert any("num_words of some group differ" in p for p in full), full
    assert not any("num_words" in p for p in ga.verify(root).problems)


def test_cli_verify_full(pristine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from grouparrow.cli import main

    assert main(["verify", str(pristine), "--full", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["rows"] == 3_000
    assert main(["verify", str(pristine), "--no-checksums"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(": OK")


def _data_page_flip(shard: Path) -> int:
    """An offset inside the first data page of the float column ``x`` (random doubles:
    zstd stores them as they are, so a flipped byte decodes to another value)."""
    meta = pq.read_metadata(shard)
    column = meta.row_group(0).column(meta.schema.names.index("x"))
    return column.data_page_offset + column.total_compressed_size // 2


def _with_a_flipped_data_byte(pristine: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the dataset (its directory, its first shard) with one byte flipped inside
    a data page of that shard."""
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    shard = _file_of(root, "shard-0")
    data = bytearray(shard.read_bytes())
    data[_data_page_flip(shard)] ^= 0x01
    shard.write_bytes(bytes(data))
    return root, shard


def test_python_readers_catch_a_flipped_data_byte(pristine: Path, tmp_path: Path) -> None:
    root, shard = _with_a_flipped_data_byte(pristine, tmp_path)
    for read in (_stream, _fetch, _cache):
        with pytest.raises(ga.CorruptDatasetError, match=re.escape(str(shard))):
            read(root)


def test_sql_over_examples_catches_a_flipped_data_byte(
    pristine: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    """The ``examples`` view checks page CRCs (PyArrow scans, grouparrow/_scan.py): the
    query fails naming the shard. DuckDB raises the error as its own (relations are lazy:
    it comes while rows are fetched), with the shard's path in it. The unchecked reader
    (``checked=False``) is what DuckDB's ``read_parquet`` makes of the same bytes."""
    query = "SELECT k, i, x FROM examples ORDER BY i"
    right = ga.open(pristine).sql(query).fetchall()
    root, shard = _with_a_flipped_data_byte(pristine, tmp_path)
    ds = ga.open(root)
    with pytest.raises(duckdb.Error, match=re.escape(str(shard)) + ".*CRC checksum"):
        ds.sql(query).fetchall()
    with pytest.raises(duckdb.Error, match=re.escape(str(shard))):
        ds.connect().sql("SELECT sum(x) FROM examples").fetchall()
    assert ds.sql("SELECT count(*) FROM examples").fetchall() == [(len(right),)]
    assert ds.sql(query, checked=False).fetchall() != right  # what the check is for


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_cli_sql_names_a_damaged_page(
    pristine: Path, tmp_path: Path, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from grouparrow.cli import main

    root, shard = _with_a_flipped_data_byte(pristine, tmp_path)
    assert main(["sql", str(root), "SELECT * FROM examples", "--format", output]) == 2
    err = capsys.readouterr().err
    assert str(shard) in err and "CRC checksum" in err and "grouparrow verify --full" in err


# -- hostile manifests ------------------------------------------------------------------------


def _write_manifest(root: Path, body: Any) -> None:
    """``body`` as the manifest, with a valid checksum when it is an object (as FORMAT.md
    defines it: the SHA-256 of the text with the checksum's 64 hex digits as zeros)."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "manifest_sha256"}
        body["manifest_sha256"] = "0" * 64
        text = json.dumps(body, indent=2) + "\n"
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        text = text.replace('"manifest_sha256": "' + "0" * 64, f'"manifest_sha256": "{digest}')
    else:
        text = body if isinstance(body, str) else json.dumps(body)
    (root / "grouparrow.json").write_text(text, encoding="utf-8")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting ``body[a][b]...`` (``path`` "a.b", list indexes as numbers)."""

    def edit(body: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = body
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = body
        for part in parents:
            target = target[part]
        del target[last]

    return edit


def _duplicate_shard(body: dict[str, Any]) -> None:
    body["shards"][1]["file"] = body["shards"][0]["file"]


def _shard_is_index(body: dict[str, Any]) -> None:
    body["shards"][0]["file"] = body["index"]


OUTSIDE = [
    "../../etc/passwd",
    "../secret.parquet",
    "/etc/passwd",
    "data/../../secret.parquet",
    "data/../index.parquet",
    "./index.parquet",
    "data//shard.parquet",
    "C:\\secret.parquet",
    "c:secret.parquet",
    "data/\u0000.parquet",
    "data/*.parquet",
    "",
    7,
    None,
]

HOSTILE: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("version 2", _set("format_version", 2)),
    ("version '1'", _set("format_version", "1")),
    ("version true", _set("format_version", True)),
    ("version null", _set("format_version", None)),
    ("no version", _drop("format_version")),
    ("other format", _set("format", "lance")),
    *[(f"no {field}", _drop(field)) for field in ("arrow_schema", "key", "seed", "shards")],
    *[(f"no {field}", _drop(field)) for field in ("num_groups", "num_rows", "num_bytes")],
    ("no key column", _drop("key.column")),
    ("key column not in schema", _set("key.column", "nope")),
    ("no shard file", _drop("shards.0.file")),
    ("no shard rows", _drop("shards.1.num_rows")),
    ("unknown shard field", _set("shards.0.extra", 1)),
    ("shards not a list", _set("shards", {"file": "x"})),
    ("shard not an object", _set("shards", ["data/x.parquet"])),
    ("schema not base64", _set("arrow_schema", "%%%")),
    ("schema garbage", _set("arrow_schema", "AAAA")),
    ("stats not an object", _set("stats", [])),
    ("label column not in schema", _set("stats.label_counts", {"column": "nope"})),
    ("duplicate shard file", _duplicate_shard),
    ("shard file is the index", _shard_is_index),
    *[(f"index {p!r}", _set("index", p)) for p in OUTSIDE],
    *[(f"shard file {p!r}", _set("shards.1.file", p)) for p in OUTSIDE],
    *[
        (f"{field} {value!r}", _set(field, value))
        for field in (
            "num_groups",
            "num_rows",
            "num_bytes",
            "shards.0.num_rows",
            "shards.0.num_groups",
            "shards.0.num_bytes",
            "shards.0.file_bytes",
            "shards.0.tail_bytes",
            "index_info.file_bytes",
        )
        for value in (-1, "10", 1.5, True, None)
    ],
    ("tail longer than the file", _set("shards.0.tail_bytes", 10**9)),
    ("seed 'x'", _set("seed", "x")),
    ("seed 1.5", _set("seed", 1.5)),
    ("sha256 not text", _set("shards.0.sha256", 5)),
    ("index_info not an object", _set("index_info", [1, 2])),
    ("index_info missing a field", _drop("index_info.sha256")),
]

NOT_A_MANIFEST = [
    ("empty", ""),
    ("not JSON", "grouparrow!"),
    ("truncated JSON", '{"format": "grouparrow", "format_vers'),
    ("a list", [1, 2]),
    ("a string", '"grouparrow"'),
    ("null", "null"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000),
    ("a huge number", '{"format": "grouparrow", "format_version": 1' + "0" * 5000 + "}"),
]

#: Files this process opened (from Python) while the hostile-manifest checks ran.
_OPENED: list[str] = []
_WATCHING: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHING and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


@pytest.fixture(scope="module")
def watch_opens() -> Iterator[None]:
    sys.addaudithook(_audit)  # cannot be removed: it records only while _WATCHING
    yield


@pytest.mark.parametrize("name", [name for name, _ in HOSTILE])
def test_hostile_manifest(name: str, pristine: Path, tmp_path: Path, watch_opens: None) -> None:
    edit = dict(HOSTILE)[name]
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    (tmp_path / "secret.parquet").write_bytes((root / "index.parquet").read_bytes())
    body = json.loads((root / "grouparrow.json").read_text())
    edit(body)
    _write_manifest(root, body)
    _assert_refused(root)


@pytest.mark.parametrize("name", [name for name, _ in NOT_A_MANIFEST])
def test_not_a_manifest(name: str, pristine: Path, tmp_path: Path, watch_opens: None) -> None:
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    _write_manifest(root, dict(NOT_A_MANIFEST)[name])
    _assert_refused(root)


def test_hostile_manifests_tried() -> None:
    """The count reported: hostile manifests tried."""
    _record({"hostile_manifests": len(HOSTILE) + len(NOT_A_MANIFEST)})
    assert len(HOSTILE) + len(NOT_A_MANIFEST) >= 100


def _assert_refused(root: Path) -> None:
    manifest = str(root / "grouparrow.json")
    _OPENED.clear()
    _WATCHING.append(True)
    try:
        with pytest.raises(ga.FormatError) as info:
            ga.open(root)
        report = ga.verify(root)
    finally:
        _WATCHING.clear()
    assert manifest in str(info.value), str(info.value)
    assert not report.ok and any(manifest in p for p in report.problems), report.problems
    outside = [p for p in _OPENED if not os.path.abspath(p).startswith(str(root) + os.sep)]
    assert outside == [], outside
    assert _OPENED and all(p == manifest for p in _OPENED), _OPENED


def test_legacy_manifest_without_checksum_reads(pristine: Path, tmp_path: Path) -> None:
    """A manifest written before the checksum (and the index and tail checks) existed is
    read as it was; with a field no such manifest had, it is refused as damaged."""
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    body = json.loads((root / "grouparrow.json").read_text())
    for field in ("manifest_sha256", "index_info"):
        body.pop(field)
    for shard in body["shards"]:
        shard.pop("tail_bytes"), shard.pop("tail_sha256")
    (root / "grouparrow.json").write_text(json.dumps(body, indent=2))
    assert ga.verify(root).ok
    assert _stream(root) == _stream(pristine)
    body["manifesT_sha256"] = "0" * 64  # a damaged checksum name: not an old manifest
    (root / "grouparrow.json").write_text(json.dumps(body, indent=2))
    with pytest.raises(ga.CorruptDatasetError, match="manifesT_sha256"):
        ga.open(root)


# -- symbolic links ---------------------------------------------------------------------------


def test_links_out_of_the_dataset_are_refused(
    pristine: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    """A shard, the index, the manifest or the data directory that is a symbolic link leading
    outside the dataset's directory is refused on open (even to a byte-identical copy:
    the link is the problem); a dataset reached through a link, or links that stay inside
    it, read as usual."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shard_rel = _file_of(pristine, "shard-0").relative_to(pristine)
    for target in ("grouparrow.json", "index.parquet", str(shard_rel), shard_rel.parts[0]):
        root = tmp_path / f"ds-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(pristine, root)
        moved = outside / f"{root.name}-{Path(target).name}"
        shutil.move(root / target, moved)
        (root / target).symlink_to(moved)
        with pytest.raises(ga.FormatError, match=re.escape(str(root / target)) + ".*outside"):
            ga.open(root)
        report = ga.verify(root)
        assert not report.ok and "outside" in " ".join(report.problems)
    linked = tmp_path / "linked"
    linked.symlink_to(pristine)
    assert _stream(linked) == expected["stream"]
    inner = tmp_path / "inner"
    shutil.copytree(pristine, inner)
    shard = inner / shard_rel
    shutil.move(shard, inner / "elsewhere.parquet")
    shard.symlink_to(inner / "elsewhere.parquet")
    assert _stream(inner) == expected["stream"]
