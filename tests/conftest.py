"""Shared fixtures and helpers for the grouparrow tests."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

#: The shared, read-only real data (../shared/data from the repository root).
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder; the test is skipped when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared test data not found at {DATA_DIR}")
    return DATA_DIR


def data_file(data_dir: Path, relative: str) -> Path:
    """``data_dir / relative``, skipping the test when that file is absent."""
    path = data_dir / relative
    if not path.is_file():
        pytest.skip(f"shared test data file not found: {path}")
    return path


def make_table(
    num_rows: int,
    num_keys: int = 7,
    *,
    key_type: str = "string",
    key_name: str = "k",
    seed: int = 0,
    chunks: int = 1,
) -> pa.Table:
    """A table of ``num_rows`` rows: a key column ``key_name`` with ``num_keys`` distinct
    values (``string``, ``int64``, ``int32`` or ``binary``), ``i`` (the row position),
    ``text`` (a few words) and ``x`` (a float).
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, max(num_keys, 1), num_rows)
    if key_type == "string":
        keys: pa.Array = pa.array([f"user-{j}" for j in ids], pa.string())
    elif key_type == "int64":
        keys = pa.array(ids * 1000 - 7, pa.int64())
    elif key_type == "int32":
        keys = pa.array(ids.astype(np.int32) - 3, pa.int32())
    elif key_type == "binary":
        keys = pa.array([b"\x00\xff" + bytes([int(j) % 256]) * 3 for j in ids], pa.binary())
    else:
        raise ValueError(key_type)
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    text = [" ".join(words[: (i % 5) + 1]) for i in range(num_rows)]
    table = pa.table(
        {
            key_name: keys,
            "i": pa.array(np.arange(num_rows, dtype=np.int64)),
            "text": pa.array(text, pa.string()),
            "x": pa.array(rng.random(num_rows)),
        }
    )
    if chunks > 1 and num_rows:
        size = -(-num_rows // chunks)
        table = pa.concat_tables(table.slice(s, size) for s in range(0, num_rows, size))
    return table


def read_manifest_json(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "grouparrow.json").read_text(encoding="utf-8"))


def shard_paths(path: Path) -> list[Path]:
    """The shard files listed in the manifest, in shard order."""
    return [Path(path) / s["file"] for s in read_manifest_json(path)["shards"]]


def runs(keys: pa.Array | pa.ChunkedArray) -> list[tuple[Any, int]]:
    """The runs of equal values in ``keys``: ``[(value, length), ...]``, in order."""
    values = keys.to_pylist()
    out: list[tuple[Any, int]] = []
    for value in values:
        if out and out[-1][0] == value:
            out[-1] = (value, out[-1][1] + 1)
        else:
            out.append((value, 1))
    return out


def assert_contiguous(path: Path, key_column: str = "group_id") -> list[tuple[Any, int]]:
    """Check with plain pyarrow that every shard holds each of its groups as one run and
    no group appears in two shards; return all runs, shard by shard."""
    all_runs: list[tuple[Any, int]] = []
    for shard in shard_paths(path):
        keys = pq.read_table(shard, columns=[key_column]).column(0)
        shard_runs = runs(keys)
        values = [v for v, _ in shard_runs]
        assert len(values) == len(set(values)), f"{shard}: a group is split into several runs"
        all_runs.extend(shard_runs)
    values = [v for v, _ in all_runs]
    assert len(values) == len(set(values)), "a group appears in more than one shard"
    return all_runs


def sorted_rows(table: pa.Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows of ``table`` (only ``columns``) as tuples, sorted: a multiset to compare."""
    data = [table.column(c).to_pylist() for c in columns]
    return sorted(zip(*data, strict=True), key=repr)


def group_counts(table: pa.Table, column: str) -> dict[Any, int]:
    """Rows per distinct value of ``column`` (nulls excluded), by pyarrow's group_by."""
    counted = table.select([column]).group_by(column).aggregate([([], "count_all")])
    return {
        k: n
        for k, n in zip(
            counted.column(column).to_pylist(), counted.column("count_all").to_pylist(), strict=True
        )
        if k is not None
    }


def rows_of(table: pa.Table, column: str, value: Any) -> pa.Table:
    """The rows of ``table`` whose ``column`` equals ``value``, in input order."""
    return table.filter(
        pc.equal(table.column(column), pa.scalar(value, table.schema.field(column).type))
    )


def row_number(message: str) -> int:
    """The row number a grouparrow error message names (``... row 1841 ...``)."""
    match = re.search(r"\brow (\d+)\b", message)
    assert match, f"no row number in {message!r}"
    return int(match.group(1))


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary build folders (``.<name>.grouparrow-*``) left in ``parent``."""
    return sorted(
        p.name for p in Path(parent).iterdir() if p.name.startswith(f".{name}.grouparrow-")
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's) on 127.0.0.1, on a port the OS picks, for the
    whole session: its endpoint URL. Skipped when s3fs or moto[server] is not installed."""
    pytest.importorskip("s3fs")
    pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_options(endpoint: str) -> dict[str, Any]:
    """s3fs ``storage_options`` for the test server at ``endpoint`` (explicit credentials:
    nothing is read from the environment)."""
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


def new_bucket(endpoint: str) -> str:
    """Create a fresh bucket on the server at ``endpoint``; its name."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3(s3_endpoint: str) -> tuple[str, dict[str, Any]]:
    """``(uri_prefix, storage_options)``: ``s3://<a fresh bucket>`` on the test server."""
    return f"s3://{new_bucket(s3_endpoint)}", s3_options(s3_endpoint)
