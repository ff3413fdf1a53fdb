"""An installed (non-editable) wheel ships the SQL files and finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_finds_its_sql(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("grouparrow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("grouparrow/sql/")}
    assert shipped == {p.name for p in (ROOT / "sql").glob("*.sql")}
    assert "grouparrow/py.typed" in names and "grouparrow/examples/shakespeare.jsonl" in names

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    script = (
        "import grouparrow as ga, grouparrow._sql as s, pathlib, sys\n"
        f"assert pathlib.Path(ga.__file__).is_relative_to({str(site)!r}), ga.__file__\n"
        f"assert s._sql_dir() == pathlib.Path({str(site)!r}) / 'grouparrow' / 'sql'\n"
        "ds = ga.build(ga.examples.path('shakespeare'), key='speaker',\n"
        f"             output={str(tmp_path / 'out')!r}, num_shards=2)\n"
        "print(ds.num_groups, ds.num_rows)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["32", "600"]
