"""The Ray engine: the same map and reduce steps as the local engine, as Ray tasks, on a local
Ray instance (2 CPUs). Its output must be the local engine's, byte for byte, whatever the
source and however it is cut into fragments; a task whose worker dies is retried without
duplicating rows; an error in the user's key stops the build as the local engine would."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table

import grouparrow as ga
from grouparrow import _faults
from grouparrow.distributed import fragments

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray instance whose workers crash at the points listed in the returned file."""
    spec = tmp_path_factory.mktemp("faults") / "faults.json"
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"GROUPARROW_FAULTS": str(spec), "PYTHONPATH": path}},
    )
    try:
        yield spec
    finally:
        ray.shutdown()


@pytest.fixture
def parquet_source(tmp_path: Path) -> str:
    """Three Parquet files of 4,000 rows in row groups of 500 (each file several fragments
    once FRAGMENT_BYTES is small)."""
    table = make_table(12_000, num_keys=300, seed=5)
    for i in range(3):
        pq.write_table(
            table.slice(i * 4000, 4000), tmp_path / f"part-{i}.parquet", row_group_size=500
        )
    return str(tmp_path / "part-*.parquet")


@pytest.fixture
def small_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fragments, "FRAGMENT_BYTES", 32 * 1024)


def _same_output(local: ga.GroupedDataset, other: ga.GroupedDataset) -> None:
    assert [s.sha256 for s in other.manifest.shards] == [s.sha256 for s in local.manifest.shards]
    assert pq.read_table(other.path / "index.parquet").equals(
        pq.read_table(local.path / "index.parquet")
    )
    assert other.manifest.schema.equals(local.manifest.schema)
    assert (other.num_groups, other.num_rows) == (local.num_groups, local.num_rows)
    assert ga.verify(other.path).ok


def _both(
    source: Any, tmp_path: Path, **kwargs: Any
) -> tuple[ga.GroupedDataset, ga.GroupedDataset]:
    local = ga.build(source, output=tmp_path / "local", **kwargs)
    distributed = ga.build(source, output=tmp_path / "ray", engine="ray", **kwargs)
    return local, distributed


def test_parquet_files_in_many_fragments_match_the_local_engine(
    faults: Path, parquet_source: str, tmp_path: Path, small_fragments: None
) -> None:
    parts = fragments.fragments(parquet_source, target_bytes=fragments.FRAGMENT_BYTES)
    assert len(parts) > 6  # files cut into row-group runs
    assert sum(p.num_rows or 0 for p in parts) == 12_000
    local, distributed = _both(parquet_source, tmp_path, key="k", num_shards=4, seed=3)
    _same_output(local, distributed)
    build = distributed.manifest.build
    assert build["engine"] == "ray" and build["map_tasks"] == len(parts)
    assert build["reduce_tasks"] == 4 and build["rows_read"] == 12_000
    assert build["bytes_shuffled"] > 0
    # Rows of a group keep their input order across fragments and files.
    for group in distributed.iter_groups():
        positions = group.to_arrow().column("i").to_pylist()
        assert positions == sorted(positions)
    # Nothing but the dataset is left behind.
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [
        "data",
        "grouparrow.json",
        "index.parquet",
    ]
    assert not [p for p in tmp_path.iterdir() if "grouparrow-tmp" in p.name]


def test_a_table_with_a_python_key_function_matches_the_local_engine(
    faults: Path, tmp_path: Path, small_fragments: None
) -> None:
    table = make_table(6_000, num_keys=40, seed=9)

    def key(example: dict[str, Any]) -> str:  # shipped to the workers
        return example["k"][-1] + "/" + str(int(example["x"] * 4) % 3)

    local, distributed = _both(table, tmp_path, key=key, num_shards=3, label_column="k")
    assert distributed.manifest.build["map_tasks"] > 1
    _same_output(local, distributed)
    assert distributed.label_counts().equals(local.label_counts())


def test_a_partitioner_keyed_row_by_row_matches_the_local_engine(
    faults: Path, tmp_path: Path, small_fragments: None
) -> None:
    """Dataset Grouper's Dirichlet partition: a draw per row, seeded by its position."""
    table = make_table(3_000, num_keys=5, seed=1)
    key = ga.partitioners.dirichlet_over_groups("k", num_groups=8, alpha=0.5, seed=4)
    local, distributed = _both(table, tmp_path, key=key, num_shards=2)
    _same_output(local, distributed)


@pytest.mark.parametrize(
    "key",
    [
        ga.partitioners.label_dirichlet("k", num_groups=4, alpha=0.5),
        ga.partitioners.iid(4),
        ga.sql("row_number() over (order by i) % 3"),
    ],
    ids=["label_dirichlet", "iid", "sql-window"],
)
def test_keys_ranked_over_the_whole_input_are_refused(
    faults: Path, tmp_path: Path, key: Any
) -> None:
    with pytest.raises(ga.KeySpecError, match=r"over the whole input.*engine='local'"):
        ga.build(make_table(100), key=key, output=tmp_path / "o", engine="ray")
    assert not list(tmp_path.iterdir())


def test_json_lines_files_match_the_local_engine(faults: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for f in range(3):
        with open(tmp_path / f"rows-{f}.jsonl", "w") as out:
            for i in range(500):
                user = f"user-{rng.integers(0, 30)}"
                out.write(json.dumps({"user": user, "n": f * 1000 + i, "v": float(i) / 7}) + "\n")
    source = str(tmp_path / "rows-*.jsonl")
    local = ga.build(source, key="user", output=tmp_path / "local", num_shards=2)
    distributed = ga.build(source, key="user", output=tmp_path / "ray", num_shards=2, engine="ray")
    assert distributed.manifest.build["map_tasks"] == 3
    _same_output(local, distributed)


def test_dead_workers_are_retried_without_duplicating_rows(
    faults: Path, parquet_source: str, tmp_path: Path, small_fragments: None
) -> None:
    """A map task's worker dies after writing its rows, and a reduce task's after writing
    its shard: Ray runs them again, and the output is still the local engine's."""
    points = ["map:1", "map:4", "reduce:0"]
    faults.write_text(json.dumps(points))
    try:
        local, distributed = _both(parquet_source, tmp_path, key="k", num_shards=3)
    finally:
        faults.unlink()
    for point in points:  # each crashed once
        assert Path(f"{faults}.{point.replace(':', '-')}.done").exists()
    _same_output(local, distributed)
    assert distributed.num_rows == 12_000


def test_a_failing_key_function_is_not_retried_and_leaves_the_old_output(
    faults: Path, tmp_path: Path, small_fragments: None
) -> None:
    table = make_table(4_000, num_keys=10, seed=3)
    out = tmp_path / "out"
    old = ga.build(table, key="k", output=out, num_shards=2)

    def key(example: dict[str, Any]) -> str:
        if example["i"] == 3_333:
            raise RuntimeError("no key for this one")
        return str(example["k"])

    with pytest.raises(ga.KeyFunctionError, match=r"no key for this one.*row 3333"):
        ga.build(table, key=key, output=out, mode="overwrite", engine="ray", num_shards=2)
    reopened = ga.open(out)
    assert reopened.manifest.shards == old.manifest.shards
    assert ga.verify(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_null_key_names_the_file_and_row(faults: Path, tmp_path: Path) -> None:
    table = pa.table({"u": ["a", "b", None, "c"], "x": [1, 2, 3, 4]})
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(ga.NullKeyError, match=r"row 2 of '.*in\.parquet'"):
        ga.build(str(tmp_path / "in.parquet"), key="u", output=tmp_path / "o", engine="ray")
    assert not (tmp_path / "o").exists()


def test_sources_it_cannot_cut_are_refused_clearly(faults: Path, tmp_path: Path) -> None:
    reader = make_table(10).to_reader()
    with pytest.raises(ga.SourceError, match=r"engine=.ray. cannot cut.*engine=.local."):
        ga.build(reader, key="k", output=tmp_path / "o", engine="ray")
    with pytest.raises(ValueError, match="engine='spark' is not one of 'local', 'ray'"):
        ga.build(make_table(10), key="k", output=tmp_path / "o", engine="spark")  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()


def test_fault_points_do_nothing_unlisted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "f.json"
    spec.write_text(json.dumps(["map:9"]))
    monkeypatch.setenv("GROUPARROW_FAULTS", str(spec))
    _faults.point("map:1")  # not listed: returns
    assert not list(tmp_path.glob("*.done"))


def test_s3_in_and_out_matches_the_local_engine(
    faults: Path, s3: tuple[str, dict[str, Any]], tmp_path: Path, small_fragments: None
) -> None:
    """Inputs and output on an S3 server: map tasks upload their files under the build's
    prefix, reduce tasks download their shard's, sort and upload the shard; the manifest,
    written last by the driver, is the commit point; no map file is left."""
    import fsspec

    bucket, options = s3
    table = make_table(5_000, num_keys=80, seed=7)
    fs = fsspec.filesystem("s3", **options)
    for i in range(2):
        part = table.slice(i * 2500, 2500)
        with fs.open(f"{bucket}/in/p{i}.parquet", "wb") as f:
            pq.write_table(part, f, row_group_size=400)
        pq.write_table(part, tmp_path / f"p{i}.parquet", row_group_size=400)
    local = ga.build(str(tmp_path / "p*.parquet"), key="k", output=tmp_path / "l", num_shards=3)
    out = f"{bucket}/out"
    remote = ga.build(
        f"{bucket}/in/*.parquet",
        key="k",
        output=out,
        num_shards=3,
        engine="ray",
        storage_options=options,
    )
    assert remote.manifest.build["map_tasks"] > 2
    assert [s.sha256 for s in remote.manifest.shards] == [s.sha256 for s in local.manifest.shards]
    assert [g.id for g in remote.iter_groups()] == [g.id for g in local.iter_groups()]
    assert ga.verify(out, storage_options=options).ok
    listed = sorted(p.split("/out/", 1)[1] for p in fs.find(f"{bucket}/out"))
    prefix = remote.manifest.index.split("/")[0]
    assert listed == sorted(
        ["grouparrow.json", f"{prefix}/index.parquet"]
        + [f"{prefix}/data/shard-{i:05d}-of-00003.parquet" for i in range(3)]
    )

    def key(example: dict[str, Any]) -> str:
        if example["i"] == 4_000:
            raise RuntimeError("bad row")
        return str(example["k"])

    with pytest.raises(ga.KeyFunctionError, match="bad row"):
        ga.build(
            table, key=key, output=out, mode="overwrite", engine="ray", storage_options=options
        )
    assert sorted(p.split("/out/", 1)[1] for p in fs.find(f"{bucket}/out")) == listed


def test_the_cli_builds_on_ray(
    faults: Path, parquet_source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grouparrow.cli import main

    out = str(tmp_path / "o")
    args = ["build", parquet_source, "--key", "k", "-o", out, "--engine", "ray", "--json"]
    code = main([*args, "--num-shards", "2", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["num_groups"], summary["num_rows"]) == (300, 12_000)
    assert ga.open(tmp_path / "o").manifest.build["engine"] == "ray"
