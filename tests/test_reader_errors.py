"""Clear errors for plausible mistakes of a reader: 64-bit values JAX would narrow, a size
named as the caller named it, unknown columns, one id where a list is expected, library
spellings in CLI messages, composite ids of the wrong length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import grouparrow as ga
from grouparrow.cli import main
from grouparrow.errors import GroupNotFoundError
from grouparrow.keys import composite_id_problem, composite_parts

COLUMNS = "'group_id', 'user', 'big', 'f', 'small', 'text'"


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    table = pa.table(
        {
            "user": ["ann"] * 6 + ["bob"] * 2,
            "big": pa.array([2**40 + 1, 1, 2, 3, 4, 5, 7, 8], pa.int64()),
            "f": pa.array([1e300, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5, -0.25], pa.float64()),
            "small": pa.array([-(2**31), 2**31 - 1, 0, 1, 2, 3, 4, 5], pa.int64()),
            "text": list("abcdefgh"),
        }
    )
    return ga.build(table, key="user", output=tmp_path_factory.mktemp("ds") / "ds")


@pytest.fixture(scope="module")
def composite(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    table = pa.table({"a": ["x", "y"], "b": ["p", "q"], "v": [1, 2]})
    return ga.build(table, key=("a", "b"), output=tmp_path_factory.mktemp("ds") / "ds")


# -- 1. JAX narrowing 64-bit values ----------------------------------------------------------
def test_to_jax_refuses_int64_past_int32(ds: ga.GroupedDataset) -> None:
    pytest.importorskip("jax")
    for pad_to in (8, None):
        with pytest.raises(ValueError) as info:
            ds["ann"].to_jax(pad_to=pad_to, columns=["big"])
        message = str(info.value)
        assert "column 'big' holds int64 values from 1 to 1099511627777" in message
        assert "stores as int32 (would wrap around)" in message
        assert 'jax.config.update("jax_enable_x64", True)' in message


def test_to_jax_refuses_float64_past_float32(ds: ga.GroupedDataset) -> None:
    pytest.importorskip("jax")
    with pytest.raises(ValueError, match=r"column 'f' holds float64 values from 1\.0 to 1e\+300"):
        ds["ann"].to_jax(pad_to=8, columns=["f"])
    with pytest.raises(ValueError, match="stores as float32 \\(would become inf\\)"):
        ds["ann"].to_jax(columns=["small", "f"])


def test_to_jax_values_that_fit_convert_exactly(ds: ga.GroupedDataset) -> None:
    pytest.importorskip("jax")
    arrays = ds["ann"].to_jax(pad_to=8, columns=["small"])  # int32's extremes fit
    assert str(arrays["small"].dtype) == "int32"
    assert arrays["small"].tolist() == [-(2**31), 2**31 - 1, 0, 1, 2, 3, 0, 0]
    assert arrays["mask"].tolist() == [True] * 6 + [False] * 2
    bob = ds["bob"].to_jax(columns=["big", "f"])
    assert bob["big"].tolist() == [7, 8]
    assert bob["f"].tolist() == [0.5, -0.25]


def test_to_jax_keeps_inf_and_nan(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    table = pa.table({"u": ["a"] * 3, "f": [float("inf"), float("nan"), -1.5]})
    group = ga.build(table, key="u", output=tmp_path / "ds")["a"]
    values = group.to_jax(columns=["f"])["f"].tolist()
    assert values[0] == float("inf") and np.isnan(values[1]) and values[2] == -1.5


def test_to_jax_with_x64_keeps_64_bit_values(ds: ga.GroupedDataset) -> None:
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        arrays = ds["ann"].to_jax(pad_to=8, columns=["big", "f"])
        assert str(arrays["big"].dtype) == "int64"
        assert arrays["big"].tolist()[:2] == [2**40 + 1, 1]
        assert arrays["f"].tolist()[0] == 1e300


# -- 2. the size named as the caller named it ------------------------------------------------
def test_to_jax_names_pad_to(ds: ga.GroupedDataset) -> None:
    pytest.importorskip("jax")
    with pytest.raises(ValueError) as info:
        ds["ann"].to_jax(pad_to=5, columns=["small"])
    assert str(info.value) == (
        "group 'ann' has 6 rows, more than pad_to=5: pass a larger pad_to (at least 6), or "
        "truncate=True to keep its first 5"
    )
    with pytest.raises(ValueError, match="pad_to=0 must be a positive integer"):
        ds["ann"].to_jax(pad_to=0, columns=["small"])


def test_pad_group_still_names_num_examples(ds: ga.GroupedDataset) -> None:
    from grouparrow.adapters.jax import pad_group

    with pytest.raises(ValueError, match="more than num_examples=5: pass a larger num_examples"):
        pad_group(ds["ann"], 5, columns=["small"])


# -- 3. unknown columns, one name where a list is expected ----------------------------------
def test_to_numpy_unknown_column(ds: ga.GroupedDataset) -> None:
    with pytest.raises(KeyError) as info:
        ds["ann"].to_numpy("txt")
    assert str(info.value) == f"no column 'txt'; the columns are {COLUMNS}"
    with pytest.raises(TypeError, match=r"column=\['text'\] must be one column name \(a str\)"):
        ds["ann"].to_numpy(["text"])  # type: ignore[arg-type]
    assert ds["bob"].to_numpy("big").tolist() == [7, 8]


def test_to_jax_unknown_column_and_one_name(ds: ga.GroupedDataset) -> None:
    pytest.importorskip("jax")
    with pytest.raises(KeyError) as info:
        ds["ann"].to_jax(columns=["small", "txt"])
    assert str(info.value) == f"no column 'txt'; the columns are {COLUMNS}"
    with pytest.raises(TypeError) as one:
        ds["ann"].to_jax(columns="small")
    assert str(one.value) == (
        "columns='small' must be a list of column names, not one name: pass columns=['small']"
    )


def test_torch_unknown_column_and_one_name(ds: ga.GroupedDataset) -> None:
    pytest.importorskip("torch")
    from grouparrow.adapters.torch import ExampleIterableDataset, GroupIterableDataset

    with pytest.raises(KeyError) as info:
        ds["ann"].to_torch("txt")
    assert str(info.value) == f"no column 'txt'; the columns are {COLUMNS}"
    assert ds["bob"].to_torch("big").tolist() == [7, 8]
    for cls in (GroupIterableDataset, ExampleIterableDataset):
        with pytest.raises(KeyError, match="no column 'txt'; the columns are 'group_id'"):
            cls(ds, columns=["big", "txt"])
        with pytest.raises(TypeError, match=r"not one name: pass columns=\['text'\]"):
            cls(ds, columns="text")
    items = list(GroupIterableDataset(ds, columns=["big"]))
    got = {item["group_id"]: item["big"].tolist() for item in items}
    assert got == {"ann": [2**40 + 1, 1, 2, 3, 4, 5], "bob": [7, 8]}


# -- 4. get_many of one id ------------------------------------------------------------------
def test_get_many_refuses_one_id(ds: ga.GroupedDataset) -> None:
    with pytest.raises(TypeError) as info:
        ds.get_many("ann")
    assert str(info.value) == (
        "get_many('ann') takes a list of group ids, not one id (its characters would be read "
        "as ids): pass ['ann'], or use ds['ann'] for one group"
    )
    assert [g.id for g in ds.get_many(["bob", "ann"])] == ["bob", "ann"]
    assert [g.id for g in ds.get_many(iter(["ann"]))] == ["ann"]


# -- 5. CLI spellings -----------------------------------------------------------------------
@pytest.fixture()
def null_keys(tmp_path: Path) -> Path:
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"client": ["a", None, "b"], "x": [1, 2, 3]}), path)
    return path


def test_cli_counts_and_build_name_on_null_flag(
    null_keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["counts", str(null_keys), "--key", "client"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grouparrow counts: error: the key (column 'client') is null for row 1")
    assert "pass --on-null drop to skip rows" in err and "on_null" not in err
    out = str(tmp_path / "out")
    assert main(["build", str(null_keys), "--key", "client", "-o", out, "-q"]) == 2
    err = capsys.readouterr().err
    assert "grouparrow build: error:" in err and "pass --on-null drop" in err
    assert "on_null" not in err
    assert (
        main(["build", str(null_keys), "--key", "client", "-o", out, "-q", "--on-null", "drop"])
        == 0
    )
    assert ga.open(out).num_rows == 2


def test_cli_spelling_rewrites_only_the_commands_options() -> None:
    from grouparrow.cli import _cli_spelling

    text = 'pass a larger memory_limit or more num_shards; on_null="drop"; num_shards=3'
    assert _cli_spelling(text, {"--memory-limit", "--on-null"}) == (
        "pass a larger --memory-limit or more num_shards; --on-null drop; num_shards=3"
    )
    assert _cli_spelling(text, set()) == text


# -- 6. composite ids of the wrong length ---------------------------------------------------
def test_composite_id_of_wrong_length(composite: ga.GroupedDataset) -> None:
    with pytest.raises(GroupNotFoundError) as info:
        composite[("x",)]
    assert str(info.value) == (
        "no group ('x',): this dataset's key has 2 parts (a, b), so a group id is a tuple of 2 "
        "values, e.g. ds[(<a>, <b>)]; the id given has 1"
    )
    with pytest.raises(KeyError, match="the id given has 3"):
        composite[("x", "p", "z")]
    with pytest.raises(KeyError, match=r"has 2 parts .*; the id given is one str"):
        composite["x"]
    with pytest.raises(KeyError, match=r"^no group \('x', 'q'\) in .*keys of type string"):
        composite[("x", "q")]  # the right length, but absent: the usual message
    assert composite[("x", "p")].to_pylist()[0]["v"] == 1
    assert composite.get(("x",)) is None
    assert ("x",) not in composite


def test_composite_parts_split_top_level_commas() -> None:
    assert composite_parts("(a, b)") == ["a", "b"]
    assert composite_parts("(user, regexp_extract(url, '://(,)', 1), lower(\"c,d\"))") == [
        "user",
        "regexp_extract(url, '://(,)', 1)",
        'lower("c,d")',
    ]
    assert composite_id_problem(["x", "y"], "(a, b)") is None
    assert composite_id_problem(("x",), "(a, b)") is not None
