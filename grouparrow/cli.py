"""The ``grouparrow`` command: a thin layer over the library.

    grouparrow build SOURCE... --key EXPR --output DIR [--overwrite] [--num-shards N]
    grouparrow build SOURCE... --partitioner 'label_dirichlet("label", 100, alpha=0.5)' -o DIR
    grouparrow build SOURCE... --key EXPR -o s3://bucket/ds --storage-options @s3.json
    grouparrow build SOURCE... --key EXPR -o DIR --engine ray
    grouparrow info [DIR] [--json]
    grouparrow verify DIR [--no-checksums | --full] [--json]
    grouparrow gc DIR [--dry-run] [--grace SECONDS] [--temp-directory DIR] [--json]
    grouparrow stats DIR [--label COLUMN] [--json]
    grouparrow sql DIR "QUERY" [--format table|csv|json]
    grouparrow plot DIR --kind sizes|labels --output FILE
    grouparrow counts SOURCE... --key EXPR [--label COLUMN] [--output FILE]
    grouparrow demo [--output DIR]

Example:
    >>> main(["info", "--json"])    # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grouparrow as ga
from grouparrow._cli_stats import add_commands, add_storage_options, dataset_name
from grouparrow.errors import GroupArrowError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (GroupArrowError, OSError, ValueError) as exc:  # OSError: files, the network
        message = _cli_spelling(str(exc), _options(parser, args.command))
        print(f"grouparrow {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grouparrow {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


#: Library spellings in error messages (``on_null="drop"``) and the option of the command
#: that says the same; each is rewritten only when the command has that option.
_CLI_SPELLINGS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"""\bon_null=["']drop["']"""), "--on-null drop", "--on-null"),
    (re.compile(r"\bkey_column=\.\.\."), "--key-column NAME", "--key-column"),
    (
        re.compile(r"\bunify_schemas=True \(grouparrow build --unify-schemas\)"),
        "--unify-schemas",
        "--unify-schemas",
    ),
    (re.compile(r"\bmemory_limit\b(?!=)"), "--memory-limit", "--memory-limit"),
    (re.compile(r"\bnum_shards\b(?!=)"), "--num-shards", "--num-shards"),
    (re.compile(r"\btemp_directory\b(?!=)"), "--temp-directory", "--temp-directory"),
)


def _cli_spelling(message: str, options: set[str]) -> str:
    """``message`` (a library error's) with the library's option spellings that the command
    has as ``options`` (its flags) written as those flags: ``pass on_null="drop"`` becomes
    ``pass --on-null drop`` for ``grouparrow build`` and ``grouparrow counts``.

    Example:
        >>> _cli_spelling('the key is null; pass on_null="drop" to skip', {"--on-null"})
        'the key is null; pass --on-null drop to skip'
    """
    for pattern, flag_text, flag in _CLI_SPELLINGS:
        if flag in options:
            message = pattern.sub(flag_text, message)
    return message


def _options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The option strings (``--on-null``, ...) of ``command``'s subparser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return set(action.choices[command]._option_string_actions)
    return set()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grouparrow",
        description="Group any dataset by a key into group-clustered Parquet, and inspect it.",
    )
    parser.add_argument("--version", action="version", version=f"grouparrow {ga.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser(
        "build",
        help="group a dataset by a key",
        description="Group SOURCE (Parquet/CSV/JSON-lines files, globs or directories) by a "
        "key and write a grouped dataset to --output.",
    )
    build.add_argument("source", nargs="+", help="input files, globs or directories")
    key = build.add_mutually_exclusive_group(required=True)
    key.add_argument(
        "--key",
        metavar="EXPR",
        help="a column name or a DuckDB SQL expression over the columns, "
        "e.g. --key writer_id or --key \"regexp_extract(url, '://([^/]+)', 1)\"",
    )
    key.add_argument(
        "--key-fn",
        metavar="MODULE:FUNCTION",
        help="an importable Python function of one example (a dict) returning the key",
    )
    key.add_argument(
        "--partitioner",
        metavar="CALL",
        help="a built-in partitioner call with literal arguments, e.g. "
        "--partitioner 'label_dirichlet(\"label\", 100, alpha=0.5, seed=0)'",
    )
    build.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="DIR",
        help="dataset directory, or a URI of any fsspec filesystem (s3://bucket/ds, gs://...)",
    )
    add_storage_options(build)
    build.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    build.add_argument("--num-shards", type=int, metavar="N", help="shard files (default: auto)")
    build.add_argument("--seed", type=int, default=0, help="seed of the group order (default 0)")
    build.add_argument("--key-column", default="group_id", help="name of the key column")
    build.add_argument(
        "--on-null", choices=["error", "drop"], default="error", help="rows whose key is null"
    )
    build.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="run the build here, or as Ray tasks on the connected (else a local) Ray cluster: "
        "pip install 'grouparrow[ray]' (default: local)",
    )
    build.add_argument(
        "--memory-limit", metavar="SIZE", help="DuckDB memory budget (per task on Ray), e.g. 4GB"
    )
    build.add_argument("--threads", type=int, metavar="N", help="DuckDB threads (per task on Ray)")
    build.add_argument("--temp-directory", metavar="DIR", help="where DuckDB spills")
    build.add_argument(
        "--text-columns",
        metavar="A,B",
        help="string columns whose words are counted (default: all string columns)",
    )
    build.add_argument(
        "--unify-schemas",
        action="store_true",
        help="read input files whose columns differ by column name: missing columns null, "
        "differing types widened (default: refuse them, naming the difference)",
    )
    build.add_argument(
        "--tensor",
        action="append",
        metavar="COLUMN=SHAPE",
        help="store a fixed-width column as a fixed_shape_tensor, e.g. --tensor pixels=28x28 "
        "(repeatable)",
    )
    build.add_argument(
        "--label-column",
        metavar="COLUMN",
        help="count this column per group into the index (label statistics and plots)",
    )
    build.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    build.add_argument("--json", action="store_true", help="print the summary as JSON")
    build.set_defaults(run=_build)

    info = commands.add_parser(
        "info",
        help="describe a grouped dataset (or, without DIR, the installed versions)",
        description="Print a grouped dataset's summary: groups, rows, key, schema, shards, "
        "group sizes. Without DIR, print the versions of grouparrow and its engines.",
    )
    info.add_argument("path", nargs="?", metavar="DIR", help="dataset directory or URI")
    info.add_argument("--json", action="store_true", help="print JSON")
    add_storage_options(info)
    info.set_defaults(run=_info)

    verify = commands.add_parser(
        "verify",
        help="check a grouped dataset's files, checksums, index and contiguity",
        description="Check every file against the manifest (sizes, SHA-256), the index "
        "against the data, and that each group's rows are contiguous. Exit status 1 when a "
        "problem is found.",
    )
    verify.add_argument("path", metavar="DIR", help="dataset directory or URI")
    verify.add_argument(
        "--no-checksums",
        action="store_true",
        help="skip the SHA-256 of whole files (faster; sizes, footers and the index are checked)",
    )
    verify.add_argument(
        "--full",
        action="store_true",
        help="also decode every row group and recompute the index's per-group statistics",
    )
    add_storage_options(verify)
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(run=_verify)

    gc = commands.add_parser(
        "gc",
        help="delete what interrupted builds left beside an output",
        description="Delete the staging directories (.DIR.grouparrow-tmp-*) of builds to DIR "
        "that are not running, old outputs an interrupted overwrite moved aside "
        "(.DIR.grouparrow-old-*; one whose overwrite was killed half-way is first put back "
        "at DIR), and, on object stores, build-* prefixes the manifest does not list that are "
        "older than --grace, and the local scratch directories (grouparrow-build-* under "
        "--temp-directory) of builds to DIR that are not running. The dataset at DIR and "
        "running builds are never touched.",
    )
    gc.add_argument("path", metavar="DIR", help="dataset directory or URI (it may not exist)")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    gc.add_argument(
        "--grace",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="keep leftovers whose build cannot be known dead (object-store prefixes) until "
        "they are this old (default: one day); 0 when no build to DIR is running",
    )
    gc.add_argument(
        "--temp-directory",
        metavar="DIR",
        help="where object-store builds to DIR kept their local scratch (build's "
        "--temp-directory; default: the system's temp directory)",
    )
    add_storage_options(gc)
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(run=_gc)

    demo = commands.add_parser(
        "demo",
        help="build the bundled Shakespeare example and show what was built",
        description="Group 600 bundled lines of Shakespeare by play and speaker (one group "
        "per character, as LEAF's Shakespeare clients), then print the dataset and a group.",
    )
    demo.add_argument(
        "--output",
        "-o",
        default="out/shakespeare-by-speaker",
        metavar="DIR",
        help="where to write the dataset (replaced if it exists)",
    )
    demo.set_defaults(run=_demo)
    add_commands(commands)
    return parser


def _build(args: argparse.Namespace) -> int:
    source = args.source[0] if len(args.source) == 1 else args.source
    if args.key_fn:
        key: Any = _import_function(args.key_fn)
    elif args.partitioner:
        key = _partitioner(args.partitioner)
    else:
        key = _column_or_sql(source, args.key, args.unify_schemas)
    ds = ga.build(
        source,
        key=key,
        output=args.output,
        mode="overwrite" if args.overwrite else "error",
        num_shards=args.num_shards,
        seed=args.seed,
        key_column=args.key_column,
        on_null=args.on_null,
        memory_limit=args.memory_limit,
        threads=args.threads,
        temp_directory=args.temp_directory,
        text_columns=args.text_columns.split(",") if args.text_columns is not None else None,
        progress=not args.quiet,
        unify_schemas=args.unify_schemas,
        tensor_shapes=_tensor_shapes(args.tensor),
        label_column=args.label_column,
        storage_options=args.storage_options,
        engine=args.engine,
    )
    summary = _summary(ds)
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 0


def _tensor_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]] | None:
    """``["pixels=28x28"]`` as ``{"pixels": (28, 28)}`` (``28,28`` works too).

    Example:
        >>> _tensor_shapes(["pixels=28x28", "audio=16000"])
        {'pixels': (28, 28), 'audio': (16000,)}
    """
    if not specs:
        return None
    shapes = {}
    for spec in specs:
        name, _, shape = spec.rpartition("=")
        dims = shape.replace(",", "x").split("x")
        if not name or not all(d.strip().isdigit() for d in dims):
            raise ValueError(f"--tensor {spec!r} must look like COLUMN=SHAPE, e.g. pixels=28x28")
        shapes[name] = tuple(int(d) for d in dims)
    return shapes


def _column_or_sql(source: Any, key: str, unify_schemas: bool = False) -> Any:
    """A CLI key is SQL; one that is exactly a column name is that column (any spelling)."""
    from grouparrow.sources import open_source

    names = open_source(source, unify_schemas=unify_schemas).reader.schema.names
    return key if key in names else ga.sql(key)


def _partitioner(call: str) -> Any:
    """``--partitioner 'shards("label", 100, 2)'``: a call of a public function of
    :mod:`grouparrow.partitioners` with literal arguments (nothing else is evaluated)."""
    import ast

    names = ga.partitioners.__all__
    usage = f"--partitioner {call!r} must be a call like 'iid(100, seed=0)' of one of: " + (
        ", ".join(names)
    )
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(usage) from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise ValueError(usage)
    if node.func.id not in names:
        raise ValueError(usage)
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except ValueError:
        raise ValueError(f"{usage}; arguments must be literals") from None
    return getattr(ga.partitioners, node.func.id)(*args, **kwargs)


def _import_function(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--key-fn {spec!r} must look like MODULE:FUNCTION, e.g. mykeys:host")
    sys.path.insert(0, str(Path.cwd()))
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--key-fn {spec!r}: cannot import it ({exc})") from exc
    return function


def _info(args: argparse.Namespace) -> int:
    if args.path is None:
        versions = _versions()
        if args.json:
            print(json.dumps(versions, indent=2))
        else:
            print("\n".join(f"{name:<12} {version}" for name, version in versions.items()))
        return 0
    summary = _summary(ga.open(args.path, storage_options=args.storage_options))
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 0


def _versions() -> dict[str, str]:
    import duckdb
    import numpy
    import polars
    import pyarrow

    return {
        "grouparrow": ga.__version__,
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "polars": polars.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _summary(ds: ga.GroupedDataset) -> dict[str, Any]:
    manifest = ds.manifest
    sizes = ds.index.column("num_rows").to_numpy()
    disk = sum(s.file_bytes for s in manifest.shards)
    return {
        "path": dataset_name(ds),
        "format_version": 1,
        "num_groups": ds.num_groups,
        "num_rows": ds.num_rows,
        "num_shards": ds.num_shards,
        "num_bytes": manifest.num_bytes,
        "bytes_on_disk": disk,
        "key": {"column": manifest.key_column, "type": str(manifest.key_type), **manifest.key},
        "seed": manifest.seed,
        "rows_per_group": {
            "min": int(sizes.min()) if len(sizes) else 0,
            "median": float(_percentile(sizes, 50)),
            "mean": round(float(sizes.mean()), 3) if len(sizes) else 0.0,
            "p90": float(_percentile(sizes, 90)),
            "max": int(sizes.max()) if len(sizes) else 0,
        },
        "schema": {f.name: str(f.type) for f in ds.schema},
        "source": manifest.source,
        "build": manifest.build,
        "created_at": manifest.created_at,
        "grouparrow_version": manifest.grouparrow_version,
    }


def _percentile(values: Any, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else 0.0


def _format_summary(s: dict[str, Any]) -> str:
    key = s["key"]
    sizes = s["rows_per_group"]
    lines = [
        f"grouped dataset  {s['path']}",
        f"groups           {s['num_groups']:,}",
        f"rows             {s['num_rows']:,}",
        f"shards           {s['num_shards']}",
        f"data             {_human(s['num_bytes'])} in Arrow, {_human(s['bytes_on_disk'])} on disk",
        f"key              {key['column']} ({key['type']}) = {key['kind']} {key['definition']!r}",
        f"rows per group   min {sizes['min']}, median {sizes['median']:g}, "
        f"mean {sizes['mean']:g}, p90 {sizes['p90']:g}, max {sizes['max']}",
        "columns          " + ", ".join(f"{n}: {t}" for n, t in s["schema"].items()),
    ]
    if s["build"].get("rows_dropped_null_key"):
        lines.append(
            f"dropped          {s['build']['rows_dropped_null_key']:,} rows with a null key"
        )
    if "seconds" in s["build"]:
        lines.append(f"built in         {s['build']['seconds']:.2f} s")
    return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # unreachable: the loop returns at TB


def _verify(args: argparse.Namespace) -> int:
    report = ga.verify(
        args.path,
        checksums=not args.no_checksums,
        full=args.full,
        storage_options=args.storage_options,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "path": report.path,
                    "ok": report.ok,
                    "problems": report.problems,
                    "shards": report.checked_shards,
                    "groups": report.checked_groups,
                    "rows": report.checked_rows,
                },
                indent=2,
            )
        )
    else:
        print(report)
    return 0 if report.ok else 1


def _gc(args: argparse.Namespace) -> int:
    removed = ga.gc(
        args.path,
        dry_run=args.dry_run,
        grace=args.grace,
        storage_options=args.storage_options,
        temp_directory=args.temp_directory,
    )
    if args.json:
        print(json.dumps({"removed": removed, "dry_run": args.dry_run}, indent=2))
    elif not removed:
        print(f"{args.path}: nothing to remove")
    for path in [] if args.json else removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    source = ga.examples.path("shakespeare")
    key = "play || '::' || speaker"
    print(f'$ grouparrow build {source} --key "{key}" --output {args.output} --overwrite\n')
    ds = ga.build(source, key=ga.sql(key), output=args.output, mode="overwrite")
    print(_format_summary(_summary(ds)))
    largest = max(ds.iter_groups(), key=lambda g: (g.num_rows, str(g.id)))
    print(f"\nlargest group {largest.id!r}: {largest.num_rows} lines, the first three:")
    for row in largest.to_pylist()[:3]:
        print(f"  {row['line_number']:>8}  {row['text']}")
    first = next(ds.iter_groups(shuffle=True, seed=0))
    print(f"\nfirst group of a shuffled stream (seed 0): {first.id!r}, {first.num_rows} lines")
    print(f"\nverify: {ga.verify(args.output)}")
    print(
        "\nIn Python:\n"
        "  import grouparrow as ga\n"
        f"  ds = ga.open({args.output!r})\n"
        f"  ds[{largest.id!r}].to_pylist()\n"
        "  for group in ds.iter_groups(shuffle=True, seed=0): ..."
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
