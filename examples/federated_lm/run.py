"""The study's entry point: build the grouped dataset, train a byte-level Transformer with
FedSGD and with FedAvg (same initial model, rounds, cohorts and seed), evaluate both on
held-out clients before and after one epoch of per-client fine-tuning, and write the table
(stdout and ``results.md``), the numbers (``results.json``), the plot (``federated_lm.png``)
and the command (``command.txt``) to ``--out``.

Run it from the repository root::

    python3 -m examples.federated_lm                 # the default study, ~5 min on 2 cores
    python3 -m examples.federated_lm --dataset c4    # C4 sample grouped by URL host

Example:
    >>> main(["--rounds", "2", "--cohort", "2", "--d-model", "32", "--layers", "1",
    ...       "--out", "/tmp/fedlm"])   # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples.federated_lm.data import (
    SHARED_DATA,
    Clock,
    EvalClient,
    build_dataset,
    cohort,
    eval_clients,
)
from examples.federated_lm.fed import ALGORITHMS, Server, evaluate, personalize
from examples.federated_lm.model import ByteTransformer, count_parameters

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {"fedsgd": "FedSGD", "fedavg": "FedAvg"}
#: The paper's FedC4 validation loss, median before -> after one epoch of fine-tuning.
PAPER = {"fedavg": (5.64, 0.01), "fedsgd": (4.93, 3.38)}
PERCENTILES = (10, 50, 90)
_D = " (default: %(default)s)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists every flag with its default).

    Example:
        >>> parse_args(["--rounds", "3"]).rounds
        3
    """
    p = argparse.ArgumentParser(
        prog="python3 -m examples.federated_lm",
        description="FedSGD vs FedAvg, global vs personalized loss, on grouparrow clients.",
    )
    data = p.add_argument_group("data")
    add = data.add_argument
    add("--dataset", choices=["shakespeare", "c4"], default="shakespeare", help=_D)
    add("--data-dir", type=Path, default=SHARED_DATA, help="the shared data folder" + _D)
    add("--heldout-frac", type=float, default=0.1, help="split_groups fraction" + _D)
    add("--eval-frac", type=float, default=0.2, help="held-out clients' eval share" + _D)
    add(
        "--within",
        choices=["rows", "blocks"],
        default=None,
        help="split held-out clients by rows (split_rows) or by their last blocks (default: "
        "rows for shakespeare, blocks for c4, whose hosts have one page each)",
    )
    add("--seq-len", type=int, default=64, help="bytes per block" + _D)
    add(
        "--max-blocks",
        type=int,
        default=None,
        help="blocks a cohort client contributes per round (default: local-steps * batch-size)",
    )
    add("--personalize-max-blocks", type=int, default=128, help="train-part cap" + _D)
    add("--eval-max-blocks", type=int, default=32, help="eval-part cap" + _D)
    add("--eval-clients", type=int, default=0, help="0: every eligible one" + _D)
    add("--cache", action="store_true", help="read groups from ds.cache(), not Parquet")
    fed = p.add_argument_group("federated training")
    add = fed.add_argument
    add("--algorithms", default="fedsgd,fedavg", help="comma-separated" + _D)
    add("--rounds", type=int, default=150, help=_D)
    add("--cohort", type=int, default=10, help="clients per round" + _D)
    add("--local-steps", type=int, default=4, help="FedAvg SGD steps per client" + _D)
    add("--batch-size", type=int, default=8, help="blocks per client SGD step" + _D)
    add("--client-lr", type=float, default=0.5, help="FedAvg client SGD" + _D)
    add("--personalize-lr", type=float, default=None, help="fine-tuning SGD (default: client-lr)")
    add("--clip", type=float, default=1.0, help="client grad-norm clip, 0: off" + _D)
    add("--fedavg-server-opt", choices=["sgd", "adam"], default="sgd", help=_D)
    add("--fedavg-server-lr", type=float, default=1.0, help=_D)
    add("--fedsgd-server-opt", choices=["sgd", "adam"], default="adam", help=_D)
    add("--fedsgd-server-lr", type=float, default=3e-3, help=_D)
    add("--eval-every", type=int, default=None, help="rounds (default: rounds // 10)")
    model = p.add_argument_group("model")
    add = model.add_argument
    add("--d-model", type=int, default=128, help=_D)
    add("--layers", type=int, default=2, help=_D)
    add("--heads", type=int, default=4, help=_D)
    run = p.add_argument_group("run")
    add = run.add_argument
    add("--seed", type=int, default=0, help=_D)
    add("--threads", type=int, default=2, help="torch.set_num_threads" + _D)
    add("--out", type=Path, default=RESULTS, help="output folder" + _D)
    add("--work-dir", type=Path, default=None, help="where to build (default: a temp dir)")
    add("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(argv)
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in args.algorithms if a not in ALGORITHMS]
    if bad or not args.algorithms:
        p.error(f"--algorithms takes a comma-separated subset of {ALGORITHMS}, got {bad}")
    if args.within is None:
        args.within = "rows" if args.dataset == "shakespeare" else "blocks"
    if args.max_blocks is None:
        args.max_blocks = args.local_steps * args.batch_size
    if args.personalize_lr is None:
        args.personalize_lr = args.client_lr
    if args.eval_every is None:
        args.eval_every = max(1, args.rounds // 10)
    for name in ("rounds", "cohort", "local_steps", "batch_size", "seq_len", "max_blocks"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study with these command-line arguments; write the results to ``--out``.

    Example:
        >>> main(["--rounds", "2", "--out", "/tmp/fedlm"])   # doctest: +SKIP
        0
    """
    args = parse_args(argv)
    command = "python3 -m examples.federated_lm" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    with tempfile.TemporaryDirectory(prefix="fedlm-") as tmp:
        work = args.work_dir or Path(tmp)
        results = study(args, work)
    results["command"] = command
    write_outputs(results, args.out)
    if not args.quiet:
        print(table(results))
        print(f"\nwrote {', '.join(sorted(OUTPUT_FILES))} to {args.out}")
    return 0


def study(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Everything but the outputs: the numbers of ``results.json``."""
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    shared = Clock()
    with shared("build"):
        ds, what = build_dataset(args.dataset, work / args.dataset, args.data_dir)
    if args.cache:
        with shared("cache"):
            ds = ds.cache(work / "cache")
    say(
        f"built {ds.num_groups:,} clients, {ds.num_rows:,} rows ({what}) "
        f"in {shared.seconds['build']:.1f} s"
    )
    with shared("heldout_data"):
        train, heldout = ds.split_groups(args.heldout_frac, seed=args.seed)
        clients, num_heldout = eval_clients(
            heldout,
            seq_len=args.seq_len,
            within=args.within,
            fraction=args.eval_frac,
            seed=args.seed,
            max_train_blocks=args.personalize_max_blocks,
            max_eval_blocks=args.eval_max_blocks,
            limit=args.eval_clients or None,
        )
    if not clients:
        raise SystemExit("no held-out client is large enough to evaluate: see --heldout-frac")
    say(
        f"{train.num_groups:,} training clients; {len(clients)} of {num_heldout} held-out "
        f"clients evaluated ({sum(c.eval.tokens for c in clients):,} eval bytes)"
    )

    torch.manual_seed(args.seed)
    init = ByteTransformer(
        seq_len=args.seq_len, d_model=args.d_model, layers=args.layers, heads=args.heads
    )
    out: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "dataset": {
            "name": args.dataset,
            "source": what,
            "clients": ds.num_groups,
            "rows": ds.num_rows,
            "train_clients": train.num_groups,
            "heldout_clients": num_heldout,
            "eval_clients": len(clients),
            "eval_client_ids": [str(c.id) for c in clients],
        },
        "parameters": count_parameters(init),
        "algorithms": {},
    }
    for algorithm in args.algorithms:
        out["algorithms"][algorithm] = train_one(args, algorithm, init, train, clients, say)
    out["timing"] = {
        "build_s": shared.seconds["build"],
        "cache_s": shared.seconds.get("cache", 0.0),
        "heldout_data_s": shared.seconds["heldout_data"],
        "total_s": time.perf_counter() - started,
    }
    out["comparison"] = compare(out["algorithms"])
    return out


def train_one(
    args: argparse.Namespace,
    algorithm: str,
    init: torch.nn.Module,
    train: Any,
    clients: Sequence[EvalClient],
    say: Any,
) -> dict[str, Any]:
    """Train a copy of ``init`` with ``algorithm``; its curve, final losses and timing."""
    clock = Clock()
    model = copy.deepcopy(init)
    fedavg = algorithm == "fedavg"
    server = Server(
        model,
        algorithm,
        server_opt=args.fedavg_server_opt if fedavg else args.fedsgd_server_opt,
        server_lr=args.fedavg_server_lr if fedavg else args.fedsgd_server_lr,
        clip=args.clip or None,
        seed=args.seed,
        clock=clock,
    )
    losses = evaluate(model, clients, clock)
    curve = [curve_point(0, losses, clients)]
    rounds = []
    say(f"{NAMES[algorithm]} round 0: held-out median {curve[-1]['p50']:.3f}")
    for r in range(args.rounds):
        cohort_blocks = cohort(
            train,
            args.cohort,
            r,
            seed=args.seed,
            seq_len=args.seq_len,
            max_blocks=args.max_blocks,
            clock=clock,
        )
        stats = server.round(
            cohort_blocks,
            client_lr=args.client_lr,
            local_steps=args.local_steps,
            batch_size=args.batch_size,
        )
        rounds.append(
            {
                "round": r + 1,
                "clients": stats.clients,
                "tokens": stats.tokens,
                "train_loss": stats.loss,
            }
        )
        if (r + 1) % args.eval_every == 0 or r + 1 == args.rounds:
            losses = evaluate(model, clients, clock)
            curve.append(curve_point(r + 1, losses, clients))
            say(
                f"{NAMES[algorithm]} round {r + 1}: train {stats.loss:.3f}, held-out median "
                f"{curve[-1]['p50']:.3f} (p10 {curve[-1]['p10']:.3f}, p90 "
                f"{curve[-1]['p90']:.3f}); data {data_s(clock):.1f} s, "
                f"train {clock.seconds.get('train', 0):.1f} s"
            )
    after = personalize(
        model,
        clients,
        lr=args.personalize_lr,
        batch_size=args.batch_size,
        clip=args.clip or None,
        seed=args.seed,
        clock=clock,
    )
    return {
        "curve": curve,
        "rounds": rounds,
        "before": losses.tolist(),
        "after": after.tolist(),
        "global": percentiles(losses),
        "personalized": percentiles(after),
        "timing": {
            "fetch_s": clock.seconds.get("fetch", 0.0),
            "pack_s": clock.seconds.get("pack", 0.0),
            "data_s": data_s(clock),
            "train_s": clock.seconds.get("train", 0.0),
            "eval_s": clock.seconds.get("eval", 0.0),
            "personalize_s": clock.seconds.get("personalize", 0.0),
            "cohort_tokens": int(sum(r["tokens"] for r in rounds)),
        },
    }


def data_s(clock: Clock) -> float:
    return clock.seconds.get("fetch", 0.0) + clock.seconds.get("pack", 0.0)


def percentiles(losses: np.ndarray) -> dict[str, float]:
    """The 10th, 50th and 90th percentiles of per-client losses.

    Example:
        >>> percentiles(np.arange(11.0))
        {'p10': 1.0, 'p50': 5.0, 'p90': 9.0}
    """
    return {f"p{q}": float(np.percentile(losses, q)) for q in PERCENTILES}


def curve_point(round_: int, losses: np.ndarray, clients: Sequence[EvalClient]) -> dict[str, Any]:
    tokens = np.array([c.eval.tokens for c in clients])
    mean = float((losses * tokens).sum() / tokens.sum())
    return {"round": round_, **percentiles(losses), "token_mean": mean}


def compare(algorithms: dict[str, Any]) -> dict[str, Any]:
    """Which algorithm is ahead on the median global and personalized loss, and on how many
    clients (paired: the same held-out clients), when both ran."""
    if set(algorithms) != set(ALGORITHMS):
        return {}
    sgd, avg = algorithms["fedsgd"], algorithms["fedavg"]
    before_sgd, before_avg = np.array(sgd["before"]), np.array(avg["before"])
    after_sgd, after_avg = np.array(sgd["after"]), np.array(avg["after"])
    clients = len(before_sgd)
    fedsgd_better_global = sgd["global"]["p50"] < avg["global"]["p50"]
    fedavg_better_personalized = avg["personalized"]["p50"] < sgd["personalized"]["p50"]
    return {
        "fedsgd_better_global": bool(fedsgd_better_global),
        "fedavg_better_personalized": bool(fedavg_better_personalized),
        "paper_ordering": bool(fedsgd_better_global and fedavg_better_personalized),
        "global_median_gap": sgd["global"]["p50"] - avg["global"]["p50"],
        "personalized_median_gap": sgd["personalized"]["p50"] - avg["personalized"]["p50"],
        "clients": clients,
        "clients_fedsgd_lower_global": int((before_sgd < before_avg).sum()),
        "clients_fedavg_lower_personalized": int((after_avg < after_sgd).sum()),
        "median_personalization_gain": {
            "fedsgd": float(np.median(before_sgd - after_sgd)),
            "fedavg": float(np.median(before_avg - after_avg)),
        },
    }


# -- outputs ----------------------------------------------------------------------------------
OUTPUT_FILES = ("results.md", "results.json", "federated_lm.png", "command.txt")


def table(results: dict[str, Any]) -> str:
    """The results as Markdown: losses, the paper's figures, the timing split.

    Example:
        >>> print(table(json.load(open("results/results.json"))))   # doctest: +SKIP
    """
    algos = results["algorithms"]
    lines = [
        "Loss per byte (nats) on held-out clients' eval parts, percentiles across "
        f"{results['dataset']['eval_clients']} clients:",
        "",
        "| algorithm | global p10 | global p50 | global p90 | personalized p10 "
        "| personalized p50 | personalized p90 | paper p50 before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in algos.items():
        g, q = r["global"], r["personalized"]
        paper = "{} → {}".format(*PAPER[name])
        lines.append(
            f"| {NAMES[name]} | {g['p10']:.3f} | {g['p50']:.3f} | {g['p90']:.3f} "
            f"| {q['p10']:.3f} | {q['p50']:.3f} | {q['p90']:.3f} | {paper} |"
        )
    comparison = results.get("comparison") or {}
    if comparison:
        n = comparison["clients"]
        lines += [
            "",
            f"FedSGD better global model (median): {yes(comparison['fedsgd_better_global'])} "
            f"(gap {comparison['global_median_gap']:+.3f}; lower on "
            f"{comparison['clients_fedsgd_lower_global']}/{n} clients). "
            f"FedAvg better personalized (median): "
            f"{yes(comparison['fedavg_better_personalized'])} (gap "
            f"{comparison['personalized_median_gap']:+.3f}; lower on "
            f"{comparison['clients_fedavg_lower_personalized']}/{n} clients). "
            f"Paper's ordering: {yes(comparison['paper_ordering'])}.",
        ]
    lines += [
        "",
        "Wall time (s):",
        "",
        "| algorithm | data: fetch | data: pack | data total | train | eval | personalize "
        "| data / (data + train) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in algos.items():
        t = r["timing"]
        share = t["data_s"] / max(t["data_s"] + t["train_s"], 1e-9)
        lines.append(
            f"| {NAMES[name]} | {t['fetch_s']:.2f} | {t['pack_s']:.2f} | {t['data_s']:.2f} "
            f"| {t['train_s']:.1f} | {t['eval_s']:.1f} | {t['personalize_s']:.1f} "
            f"| {share:.1%} |"
        )
    timing = results["timing"]
    lines += [
        "",
        f"Build {timing['build_s']:.2f} s"
        + (f" (+ ds.cache() {timing['cache_s']:.2f} s)" if timing.get("cache_s") else "")
        + "; held-out clients read, split and packed in "
        f"{timing['heldout_data_s']:.2f} s; total {timing['total_s']:.0f} s "
        f"({results['parameters']:,}-parameter model).",
    ]
    return "\n".join(lines)


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``results.md``, ``results.json``, ``federated_lm.png`` and ``command.txt`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    (out / "command.txt").write_text(results["command"] + "\n")
    config = results["config"]
    data = results["dataset"]
    md = [
        "# Federated LM: FedSGD vs FedAvg, global vs personalized",
        "",
        f"Command (from the repository root, {config['threads']} threads): `{results['command']}`",
        "",
        f"Data: {data['source']}; {data['clients']:,} clients, {data['rows']:,} rows; "
        f"{data['train_clients']:,} training clients, {data['heldout_clients']} held out "
        f"(split_groups {config['heldout_frac']}), {data['eval_clients']} of them evaluated "
        f"(within-client split: {config['within']}, {config['eval_frac']} in eval). "
        f"{config['rounds']} rounds of {config['cohort']} clients, ≤ {config['max_blocks']} "
        f"blocks of {config['seq_len']} bytes per client per round; FedAvg: "
        f"{config['local_steps']} local SGD steps of {config['batch_size']} blocks at lr "
        f"{config['client_lr']}, server {config['fedavg_server_opt']} lr "
        f"{config['fedavg_server_lr']}; FedSGD: server {config['fedsgd_server_opt']} lr "
        f"{config['fedsgd_server_lr']}. Personalization: one epoch of SGD (lr "
        f"{config.get('personalize_lr', config['client_lr'])}, batches of "
        f"{config['batch_size']}) on each client's train part.",
        "",
        table(results),
        "",
        "![loss vs round; before/after personalization](federated_lm.png)",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    plot(results, out / "federated_lm.png")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def plot(results: dict[str, Any], path: Path) -> None:
    """Two panels: held-out loss (median, 10-90 % band) versus round for each algorithm;
    the before/after personalization percentiles."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    colors = {"fedsgd": "tab:blue", "fedavg": "tab:orange"}
    for name, r in results["algorithms"].items():
        rounds = [p["round"] for p in r["curve"]]
        left.plot(
            rounds,
            [p["p50"] for p in r["curve"]],
            "o-",
            color=colors[name],
            label=f"{NAMES[name]} median",
        )
        left.fill_between(
            rounds,
            [p["p10"] for p in r["curve"]],
            [p["p90"] for p in r["curve"]],
            color=colors[name],
            alpha=0.15,
        )
    left.set_xlabel("round")
    left.set_ylabel("held-out loss per byte (nats)")
    left.set_title("Global model on held-out clients (band: p10-p90)")
    left.legend()
    ticks, labels = [], []
    for i, (name, r) in enumerate(results["algorithms"].items()):
        for j, (when, key) in enumerate((("before", "global"), ("after", "personalized"))):
            x = 3 * i + j
            q = r[key]
            right.errorbar(
                [x],
                [q["p50"]],
                yerr=[[q["p50"] - q["p10"]], [q["p90"] - q["p50"]]],
                fmt="o" if j == 0 else "s",
                color=colors[name],
                capsize=6,
            )
            ticks.append(x)
            labels.append(f"{NAMES[name]}\n{when}")
        right.plot(
            [3 * i, 3 * i + 1],
            [r["global"]["p50"], r["personalized"]["p50"]],
            ":",
            color=colors[name],
        )
    right.set_xticks(ticks, labels)
    right.set_ylabel("loss per byte (nats): p50, whiskers p10-p90")
    right.set_title("Personalization: one epoch of fine-tuning per client")
    fig.savefig(path, dpi=110)
