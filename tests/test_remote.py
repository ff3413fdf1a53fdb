"""Datasets on S3: built to s3://, opened from s3://, fetched, cached, queried, verified,
replaced, against a real S3-compatible server (moto's) on 127.0.0.1 (``s3`` fixture in
conftest.py). Nothing talks to an address outside loopback."""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table, new_bucket, s3_options

import grouparrow as ga
from grouparrow._commit import BUILD_PREFIX
from grouparrow.cli import main
from grouparrow.format import MANIFEST
from grouparrow.storage import Storage

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

S3 = tuple[str, dict[str, Any]]
TABLE = make_table(3_000, 60, seed=1)


def _groups(ds: ga.GroupedDataset, **kw: Any) -> list[tuple[Any, list[dict[str, Any]]]]:
    return [(g.id, g.to_pylist()) for g in ds.iter_groups(**kw)]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    """The same build as ``remote``'s, on the local disk: what every read must equal."""
    out = tmp_path_factory.mktemp("local") / "ds"
    return ga.build(TABLE, key="k", output=out, num_shards=3, row_group_bytes=16 * 1024)


@pytest.fixture
def remote(s3: S3) -> tuple[str, dict[str, Any]]:
    uri, options = s3
    ga.build(
        TABLE,
        key="k",
        output=f"{uri}/ds",
        num_shards=3,
        row_group_bytes=16 * 1024,
        storage_options=options,
    )
    return f"{uri}/ds", options


class _Fetches(logging.Handler):
    """The byte ranges s3fs fetches, from its own debug log (``Fetch: bucket/key, a-b``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.ranges: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.fullmatch(r"Fetch: (.+), (\d+)-(\d+)", record.getMessage())
        if match:
            self.ranges.append((match[1], int(match[3]) - int(match[2])))

    def __enter__(self) -> _Fetches:
        logger = logging.getLogger("s3fs")
        self._level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("s3fs")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def bytes(self, name: str = "") -> int:
        return sum(n for key, n in self.ranges if name in key)


# -- build and read -------------------------------------------------------------------------
def test_build_open_iterate(remote: S3, local: ga.GroupedDataset) -> None:
    uri, options = remote
    ds = ga.open(uri, storage_options=options)
    assert ds.uri == uri and not ds.storage.local
    assert ds.num_groups == 60 and ds.num_rows == 3_000
    assert ds.group_ids() == local.group_ids()
    assert _groups(ds) == _groups(local)
    kw = {"shuffle": True, "seed": 3, "epoch": 1, "worker_index": 1, "num_workers": 2}
    assert _groups(ds, **kw) == _groups(local, **kw)
    assert ds.index.equals(local.index)

    # Layout: the manifest at the root, everything else under one build prefix it lists.
    storage = Storage.at(uri, options)
    prefix = ds.manifest.index.split("/")[0]
    assert BUILD_PREFIX.fullmatch(prefix)
    assert storage.entries() == sorted([MANIFEST, prefix])
    listed = [ds.manifest.index, *(s.file for s in ds.manifest.shards)]
    assert storage.list(prefix) == sorted(listed)
    for mine, theirs in zip(ds.manifest.shards, local.manifest.shards, strict=True):
        assert mine.file == f"{prefix}/{theirs.file}"
        assert (mine.sha256, mine.num_rows) == (theirs.sha256, theirs.num_rows)


def test_build_from_a_parquet_file(s3: S3, local: ga.GroupedDataset, tmp_path: Path) -> None:
    uri, options = s3
    source = tmp_path / "in.parquet"
    pq.write_table(TABLE, source)
    ds = ga.build(
        str(source),
        key="k",
        output=f"{uri}/from-file",
        num_shards=3,
        row_group_bytes=16 * 1024,
        storage_options=options,
    )
    assert _groups(ds) == _groups(local)
    assert ds.manifest.source["type"] == "parquet"
    # The input on S3 too (read through the same storage_options).
    Storage.at(uri, options).put_files([(source, "in/part-0.parquet")])
    from_s3 = ga.build(
        f"{uri}/in/*.parquet",
        key="k",
        output=f"{uri}/from-s3",
        num_shards=3,
        row_group_bytes=16 * 1024,
        storage_options=options,
    )
    assert _groups(from_s3) == _groups(local)


def test_fetch_reads_only_what_it_needs(s3: S3) -> None:
    uri, options = s3
    table = make_table(40_000, 400, seed=2)
    ga.build(
        table,
        key="k",
        output=f"{uri}/big",
        num_shards=1,
        row_group_bytes=64 * 1024,
        storage_options=options,
    )
    ds = ga.open(f"{uri}/big", storage_options=options)
    shard = ds.manifest.shards[0]
    assert shard.file_bytes > 400_000
    with _Fetches() as cold:
        first = ds["user-3"]
    # The index's part, the shard's footer, one row group: not the 50 MB blocks s3fs reads
    # ahead by default, nor the whole file.
    assert first.num_rows == sum(1 for k in table.column("k").to_pylist() if k == "user-3")
    assert cold.bytes("data/shard-") < shard.file_bytes / 4
    with _Fetches() as warm:
        second = ds["user-5"]
    rows = [{"group_id": "user-5", **r} for r in table.to_pylist() if r["k"] == "user-5"]
    assert second.to_pylist() == rows
    assert len(warm.ranges) == 1  # footer and index part known: one request, one row group
    assert warm.bytes() < shard.file_bytes / 20
    with _Fetches() as stream:
        assert sum(g.num_rows for g in ds.iter_groups()) == 40_000
    assert stream.bytes() <= shard.file_bytes  # no read-ahead past what is asked
    assert len(stream.ranges) <= 4  # ~8 MiB chunks of row groups, one request each


def test_get_many_and_sample(remote: S3, local: ga.GroupedDataset) -> None:
    uri, options = remote
    ds = ga.open(uri, storage_options=options)
    ids = local.group_ids()[::5]
    assert [g.to_pylist() for g in ds.get_many(ids)] == [g.to_pylist() for g in local.get_many(ids)]
    cohort = ds.sample(7, seed=4, weights="num_rows")
    assert [(g.id, g.to_pylist()) for g in cohort] == [
        (g.id, g.to_pylist()) for g in local.sample(7, seed=4, weights="num_rows")
    ]
    assert "nope" not in ds
    with pytest.raises(ga.GroupNotFoundError, match=f"no group 'nope' in '{uri}'"):
        ds["nope"]
    with pytest.raises(ga.GroupArrowError, match="not on the local disk"):
        _ = ds.path


def test_forked_and_pickled_copies_read(remote: S3, local: ga.GroupedDataset) -> None:
    """DataLoader workers: a forked copy of a dataset the parent read from (s3fs refuses to
    run in a forked child: grouparrow makes its filesystem again), and a pickled one."""
    uri, options = remote
    ds = ga.open(uri, storage_options=options)
    ids = local.group_ids()
    assert ds[ids[0]].to_pylist() == local[ids[0]].to_pylist()  # files opened here
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()

    def work() -> None:
        try:
            queue.put((ds[ids[1]].to_pylist(), _groups(ds, worker_index=1, num_workers=2)))
        except BaseException as exc:
            queue.put(repr(exc))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX, if imported by another test, warns on fork
        process = context.Process(target=work)
        process.start()
    result = queue.get()
    process.join(30)
    assert result == (local[ids[1]].to_pylist(), _groups(local, worker_index=1, num_workers=2))
    copy = pickle.loads(pickle.dumps(ds))
    assert _groups(copy) == _groups(local)


def test_cache_reads_without_the_server(local: ga.GroupedDataset, tmp_path: Path) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {**s3_options(endpoint), "config_kwargs": {"retries": {"max_attempts": 1}}}
        uri = f"s3://{new_bucket(endpoint)}/ds"
        ga.build(
            TABLE,
            key="k",
            output=uri,
            num_shards=3,
            row_group_bytes=16 * 1024,
            storage_options=options,
        )
        cached = ga.open(uri, storage_options=options).cache(tmp_path / "c")
        lazy = ga.open(uri, storage_options=options, cache_dir=tmp_path / "lazy")
        assert _groups(lazy) == _groups(local)  # caches each shard on first use
    finally:
        server.stop()
    with pytest.raises(Exception, match="Could not connect"):  # the server is gone indeed
        ga.open(uri, storage_options=options)
    # One cache file per shard, named by its checksum; no download left behind.
    expected = sorted(f"{s.sha256}.arrow" for s in local.manifest.shards)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == expected
    assert sorted(p.name for p in (tmp_path / "lazy").iterdir()) == expected
    # The server is gone: these read the local cache only.
    for ds in (cached, lazy):
        assert _groups(ds) == _groups(local)
        assert ds["user-7"].to_pylist() == local["user-7"].to_pylist()
        ids = local.group_ids()[:9]
        assert [g.to_pylist() for g in ds.get_many(ids)] == [
            g.to_pylist() for g in local.get_many(ids)
        ]
        assert [g.id for g in ds.sample(5, seed=2)] == [g.id for g in local.sample(5, seed=2)]
        assert ds.group_ids() == local.group_ids()


def test_sql(remote: S3, local: ga.GroupedDataset) -> None:
    uri, options = remote
    ds = ga.open(uri, storage_options=options)
    query = "SELECT group_id, count(*) AS n, sum(x) AS s FROM examples GROUP BY 1 ORDER BY 1"
    assert ds.sql(query).fetchall() == local.sql(query).fetchall()
    groups = "SELECT group_id, num_rows, num_words FROM groups ORDER BY 1"
    assert ds.sql(groups).fetchall() == local.sql(groups).fetchall()
    con = ds.connect()
    assert con.sql("SELECT count(*) FROM examples").fetchall() == [(3_000,)]
    assert ds.summary().rows() == local.summary().rows()


# -- verify ---------------------------------------------------------------------------------
def test_verify(remote: S3, tmp_path: Path) -> None:
    uri, options = remote
    report = ga.verify(uri, storage_options=options)
    assert report.ok, report.problems
    assert (report.checked_shards, report.checked_groups, report.checked_rows) == (3, 60, 3_000)
    assert str(report) == f"{uri}: 3 shards, 60 groups, 3,000 rows checked: OK"

    ds = ga.open(uri, storage_options=options)
    storage = Storage.at(uri, options)
    shard = ds.manifest.shards[1].file
    data = bytearray(storage.read_bytes(shard))
    data[len(data) // 2] ^= 0xFF
    storage.write_bytes(shard, bytes(data))
    report = ga.verify(uri, storage_options=options)
    assert not report.ok
    assert report.problems == [
        f"{uri}/{shard}: SHA-256 differs from the manifest (the file changed or is damaged)"
    ]
    with pytest.raises(ga.CorruptDatasetError, match="does not match the checksum"):
        ds.cache(tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir()] == [f"{ds.manifest.shards[0].sha256}.arrow"]

    storage.delete(shard)
    report = ga.verify(uri, storage_options=options)
    assert f"{uri}/{shard}: missing" in report.problems
    assert not ga.verify(f"{uri}-nothing-here", storage_options=options).ok


# -- the commit protocol --------------------------------------------------------------------
def test_mode_error_refuses(remote: S3) -> None:
    uri, options = remote
    storage = Storage.at(uri, options)
    before = storage.list(), storage.read_bytes(MANIFEST)
    with pytest.raises(ga.OutputExistsError, match="already exists; pass mode='overwrite'"):
        ga.build(TABLE, key="k", output=uri, storage_options=options)
    assert (storage.list(), storage.read_bytes(MANIFEST)) == before


def test_overwrite_replaces_and_deletes_the_old_prefix(remote: S3) -> None:
    uri, options = remote
    storage = Storage.at(uri, options)
    old = ga.open(uri, storage_options=options).manifest.index.split("/")[0]
    # Another build's files (one running now): never touched.
    running = "build-20200101T000000Z-0123abcd"
    storage.write_bytes(f"{running}/data/shard-00000-of-00001.parquet", b"partial")
    table = make_table(200, 4, seed=9)
    ds = ga.build(
        table, key="k", output=uri, num_shards=2, mode="overwrite", storage_options=options
    )
    new = ds.manifest.index.split("/")[0]
    assert new != old
    assert storage.entries() == sorted([MANIFEST, new, running])
    assert not storage.exists(old)
    assert storage.read_bytes(f"{running}/data/shard-00000-of-00001.parquet") == b"partial"
    reopened = ga.open(uri, storage_options=options)
    assert reopened.num_groups == 4 and reopened.num_rows == 200
    assert sorted(r["i"] for g in reopened for r in g.to_pylist()) == list(range(200))


def test_failed_build_leaves_the_dataset(remote: S3, local: ga.GroupedDataset) -> None:
    uri, options = remote
    storage = Storage.at(uri, options)
    before = storage.list(), storage.read_bytes(MANIFEST)

    def key(row: dict[str, Any]) -> str:
        if row["i"] == 2_500:
            raise RuntimeError("broken key")
        return str(row["k"])

    with pytest.raises(ga.KeyFunctionError, match="broken key"):
        ga.build(TABLE, key=key, output=uri, mode="overwrite", storage_options=options)
    assert (storage.list(), storage.read_bytes(MANIFEST)) == before
    assert _groups(ga.open(uri, storage_options=options)) == _groups(local)


def test_output_that_is_not_a_dataset(s3: S3) -> None:
    uri, options = s3
    storage = Storage.at(uri, options)
    storage.write_bytes("mine/notes.txt", b"keep me")
    with pytest.raises(ga.OutputExistsError, match=r"not a grouparrow dataset.*'notes\.txt'"):
        ga.build(TABLE, key="k", output=f"{uri}/mine", storage_options=options, mode="overwrite")
    assert storage.list("mine") == ["mine/notes.txt"]
    storage.write_bytes("file", b"x")
    with pytest.raises(ga.OutputExistsError, match="is a file"):
        ga.build(TABLE, key="k", output=f"{uri}/file", storage_options=options)
    # Only build prefixes (a failed or running build): no dataset yet, so a build may go.
    storage.write_bytes("ds/build-20200101T000000Z-0123abcd/index.parquet", b"partial")
    ds = ga.build(TABLE, key="k", output=f"{uri}/ds", storage_options=options)
    assert ds.num_rows == 3_000
    with pytest.raises(ga.FormatError, match=r"has no grouparrow\.json"):
        ga.open(f"{uri}/mine", storage_options=options)
    with pytest.raises(FileNotFoundError, match="no grouped dataset at"):
        ga.open(f"{uri}/absent", storage_options=options)


def test_compute_stats(remote: S3, local: ga.GroupedDataset, tmp_path: Path) -> None:
    uri, options = remote
    ds = ga.open(uri, storage_options=options)
    counted = ds.compute_stats(label_column="k")
    assert counted.manifest.label_column == "k"
    assert counted.manifest.index != ds.manifest.index
    assert not Storage.at(uri, options).exists(ds.manifest.index)
    relocal = ga.open(local.path).compute_stats(label_column="k")
    assert counted.label_counts().rows() == relocal.label_counts().rows()
    assert ga.verify(uri, storage_options=options).ok


# -- the CLI --------------------------------------------------------------------------------
def test_cli(remote: S3, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri, options = remote
    flag = ["--storage-options", json.dumps(options)]
    assert main(["info", uri, "--json", *flag]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["path"], info["num_groups"], info["num_rows"]) == (uri, 60, 3_000)
    assert main(["verify", uri, *flag]) == 0
    assert capsys.readouterr().out.strip() == f"{uri}: 3 shards, 60 groups, 3,000 rows checked: OK"
    secrets = tmp_path / "s3.json"
    secrets.write_text(json.dumps(options))
    query = "SELECT count(*) AS n FROM examples"
    assert main(["sql", uri, query, "--format", "csv", "--storage-options", f"@{secrets}"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "3000"]
    assert main(["stats", uri, "--json", *flag]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == uri

    # Without the options the endpoint is unknown; a bad value is refused by the parser.
    assert main(["info", f"{uri}-absent", *flag]) == 2
    assert "no grouped dataset at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["info", uri, "--storage-options", "[1, 2]"])
    assert exit_info.value.code == 2
    assert "must be a JSON object" in capsys.readouterr().err

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"u": ["a", "b", "a"], "v": [1, 2, 3]}), source)
    built = f"{uri}-cli"
    assert main(["build", str(source), "--key", "u", "-o", built, "-q", *flag]) == 0
    capsys.readouterr()
    assert ga.open(built, storage_options=options)["a"].to_pylist() == [
        {"group_id": "a", "u": "a", "v": 1},
        {"group_id": "a", "u": "a", "v": 3},
    ]
    assert main(["build", str(source), "--key", "u", "-o", built, "-q", *flag]) == 2
    assert "already exists" in capsys.readouterr().err
