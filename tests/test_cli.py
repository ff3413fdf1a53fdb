"""The grouparrow command: build, info, verify, demo; exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import grouparrow as ga
from grouparrow.cli import main


@pytest.fixture
def parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    table = pa.table(
        {
            "user": ["ann", "bob", "ann", "cy", "bob", "ann"],
            "url": [f"https://h{i % 3}.org/p{i}" for i in range(6)],
            "text": ["a b", "c", "d e f", "g", "h i", "j"],
        }
    )
    pq.write_table(table, path)
    return path


def test_build_by_column_then_info_and_verify(parquet_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["build", str(parquet_file), "--key", "user", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "groups           3" in printed and "rows             6" in printed
    assert ga.open(out)["ann"].num_rows == 3

    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_groups"] == 3 and info["num_rows"] == 6
    assert info["key"] == {
        "column": "group_id",
        "type": "string",
        "kind": "column",
        "definition": "user",
    }
    assert info["rows_per_group"]["max"] == 3

    assert main(["verify", str(out)]) == 0
    assert "OK" in capsys.readouterr().out


def test_build_with_sql_key_and_overwrite(parquet_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    key = "regexp_extract(url, '://([^/]+)', 1)"
    assert main(["build", str(parquet_file), "--key", key, "-o", str(out), "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["key"]["kind"] == "sql" and summary["num_groups"] == 3
    assert sorted(ga.open(out).group_ids()) == ["h0.org", "h1.org", "h2.org"]

    # An existing output is refused without --overwrite, kept with it replaced.
    assert main(["build", str(parquet_file), "--key", "user", "-o", str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "build",
                str(parquet_file),
                "--key",
                "user",
                "-o",
                str(out),
                "-q",
                "--overwrite",
                "--num-shards",
                "2",
            ]
        )
        == 0
    )
    assert ga.open(out).num_shards == 2


def test_build_with_key_fn(parquet_file: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "mykeys.py").write_text(
        "def first_letter(example):\n    return example['user'][0]\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert (
        main(["build", str(parquet_file), "--key-fn", "mykeys:first_letter", "-o", str(out), "-q"])
        == 0
    )
    assert sorted(ga.open(out).group_ids()) == ["a", "b", "c"]
    assert main(["build", str(parquet_file), "--key-fn", "nope", "-o", str(out), "-q"]) == 2
    assert "MODULE:FUNCTION" in capsys.readouterr().err


def test_errors_exit_2_with_a_message(parquet_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "missing.parquet"), "--key", "user", "-o", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["build", str(parquet_file), "--key", "nosuchcolumn", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "nosuchcolumn" in err and "does not work over the source columns" in err
    assert not out.exists()
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "no grouped dataset" in capsys.readouterr().err


def test_verify_reports_damage_with_exit_1(parquet_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    ga.build(parquet_file, key="user", output=out)
    shard = next((out / "data").iterdir())
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["verify", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and str(shard) in report["problems"][0]


def test_info_without_a_path_prints_versions(capsys) -> None:
    assert main(["info", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert versions["grouparrow"] == ga.__version__ and "duckdb" in versions


def test_demo_builds_the_bundled_example(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "groups           32" in printed and "rows             600" in printed
    assert "OK" in printed
    assert ga.open(out).num_rows == 600


def test_python_dash_m_and_help() -> None:
    for command in ([], ["build"], ["info"], ["verify"], ["demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "grouparrow", *command, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "usage: grouparrow" in result.stdout


def test_build_progress_goes_to_stderr(parquet_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["build", str(parquet_file), "--key", "user", "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "clustering shard 1/1:" in err and "6 rows in all" in err and err.endswith("\n")
    table = pq.read_table(parquet_file)
    ga.build(table, key="user", output=tmp_path / "b", num_shards=2, progress=True)
    err = capsys.readouterr().err
    assert "partitioning:" in err and "clustering shard 2/2:" in err and "6 rows read" in err


def test_build_with_a_partitioner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from grouparrow import partitioners as P

    source = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"label": [i % 4 for i in range(400)]}), source)
    call = 'label_dirichlet("label", 5, alpha=0.5, labels=4, seed=1)'
    assert main(["build", str(source), "--partitioner", call, "-o", str(tmp_path / "a"), "-q"]) == 0
    ds = ga.open(tmp_path / "a")
    key = P.label_dirichlet("label", 5, 0.5, labels=4, seed=1)
    expected = ga.build(source, key=key, output=tmp_path / "b")
    assert {g.id: g.num_rows for g in ds} == {g.id: g.num_rows for g in expected}
    for bad in ['__import__("os")', "label_dirichlet(label, 5)", "os.system('x')", "shards("]:
        assert main(["build", str(source), "--partitioner", bad, "-o", str(tmp_path / "c")]) == 2
        assert "--partitioner" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
