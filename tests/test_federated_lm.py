"""Tests of examples/federated_lm: the FedSGD / FedAvg study runs end to end on the real
Shakespeare and C4 samples in a reduced configuration (tiny model, a few rounds) and writes
finite, decreasing losses; FedSGD and FedAvg agree where they must; the byte-level packing
and batching are exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")  # the plot

import grouparrow as ga  # noqa: E402
from examples.federated_lm.data import EOS_ID, Blocks, pack_texts  # noqa: E402
from examples.federated_lm.fed import ALGORITHMS, Server, batches, epoch  # noqa: E402
from examples.federated_lm.model import ByteTransformer  # noqa: E402
from examples.federated_lm.run import NAMES, OUTPUT_FILES, main  # noqa: E402

TINY = [
    "--rounds", "3", "--cohort", "4", "--d-model", "32", "--layers", "1", "--heads", "2",
    "--eval-every", "1", "--eval-clients", "12", "--personalize-max-blocks", "16",
    "--eval-max-blocks", "8", "--quiet",
]  # fmt: skip


def _finite(values: list[float]) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


def _check_outputs(out: Path, algorithms: tuple[str, ...] = ("fedsgd", "fedavg")) -> dict:
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert (out / "federated_lm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert list(results["algorithms"]) == list(algorithms)
    n = results["dataset"]["eval_clients"]
    for name, r in results["algorithms"].items():
        curve = r["curve"]
        assert [p["round"] for p in curve] == [0, 1, 2, 3], name
        for point in curve:
            assert _finite([point[k] for k in ("p10", "p50", "p90", "token_mean")]), point
            assert point["p10"] <= point["p50"] <= point["p90"]
        assert _finite([x["train_loss"] for x in r["rounds"]])
        assert len(r["before"]) == len(r["after"]) == n
        assert _finite(r["before"]) and _finite(r["after"])
        # Training lowered the global model's held-out loss, for every percentile.
        for key in ("p10", "p50", "p90", "token_mean"):
            assert curve[-1][key] < curve[0][key], (name, key)
        assert r["global"]["p50"] == pytest.approx(float(np.median(r["before"])))
        assert r["personalized"]["p50"] == pytest.approx(float(np.median(r["after"])))
        t = r["timing"]
        assert t["data_s"] == pytest.approx(t["fetch_s"] + t["pack_s"])
        assert t["train_s"] > 0 and t["personalize_s"] > 0 and t["cohort_tokens"] > 0
    # The same initial model: both algorithms start from identical losses.
    first = [r["curve"][0] for r in results["algorithms"].values()]
    assert all(p == first[0] for p in first)
    table = (out / "results.md").read_text()
    assert results["command"] in table
    assert [f"| {NAMES[a]} |" in table for a in ALGORITHMS] == [a in algorithms for a in ALGORITHMS]
    assert (out / "command.txt").read_text().strip() == results["command"]
    return results


def test_shakespeare_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [*TINY, "--data-dir", str(data_dir), "--out", str(out), "--work-dir", str(work)]
    assert main(argv) == 0
    results = _check_outputs(out)
    data = results["dataset"]
    assert (data["clients"], data["rows"]) == (1334, 105_153)
    assert data["eval_clients"] == 12
    assert results["command"].startswith("python3 -m examples.federated_lm --rounds 3")
    # Held-out clients are the split_groups eval side; none of them trains.
    train, heldout = ga.open(work / "shakespeare").split_groups(0.1, seed=0)
    assert data["train_clients"] == train.num_groups
    assert data["heldout_clients"] == heldout.num_groups == 1334 - train.num_groups
    assert set(data["eval_client_ids"]) <= set(heldout.group_ids())
    for name, r in results["algorithms"].items():
        assert [x["clients"] for x in r["rounds"]] == [4, 4, 4], name
    # Same cohorts (sample(k, seed=round)) for both: the same tokens each round.
    tokens = [[x["tokens"] for x in r["rounds"]] for r in results["algorithms"].values()]
    assert tokens[0] == tokens[1]


def test_c4_smoke(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    argv = [*TINY, "--dataset", "c4", "--data-dir", str(data_dir), "--out", str(out)]
    assert main(argv) == 0
    results = _check_outputs(out)
    assert results["config"]["within"] == "blocks"
    assert (results["dataset"]["clients"], results["dataset"]["rows"]) == (1988, 2000)


def test_one_algorithm(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    argv = [*TINY, "--algorithms", "fedavg", "--data-dir", str(data_dir), "--out", str(out)]
    assert main(argv) == 0
    assert _check_outputs(out, ("fedavg",))["comparison"] == {}


def test_bad_flags() -> None:
    with pytest.raises(SystemExit):
        main(["--algorithms", "fedprox"])
    with pytest.raises(SystemExit):
        main(["--rounds", "0"])


def _clients() -> list[Blocks]:
    texts = [
        ["Who's there?", "Nay, answer me: stand, and unfold yourself."],
        ["Long live the king!"] * 3,
        ["He.", "You come most carefully upon your hour.", "'Tis now struck twelve."],
    ]
    return [pack_texts(t, 16, group_id=i) for i, t in enumerate(texts)]


def test_fedavg_one_full_batch_step_is_fedsgd() -> None:
    """FedAvg with one local step on all of a client's blocks, client SGD lr η and server
    SGD lr 1 takes the same step as FedSGD with server SGD lr η: the token-weighted mean
    of the clients' gradients."""
    torch.manual_seed(0)
    init = ByteTransformer(seq_len=16, d_model=16, layers=1, heads=2)
    models = {a: ByteTransformer(seq_len=16, d_model=16, layers=1, heads=2) for a in ("s", "a")}
    for model in models.values():
        model.load_state_dict(init.state_dict())
    clients = _clients()
    fedsgd = Server(models["s"], "fedsgd", server_opt="sgd", server_lr=0.3)
    fedavg = Server(models["a"], "fedavg", server_opt="sgd", server_lr=1.0)
    stats = fedsgd.round(clients, client_lr=99.0, local_steps=9, batch_size=1)
    fedavg.round(clients, client_lr=0.3, local_steps=1, batch_size=100)
    assert stats.clients == 3 and stats.tokens == sum(c.tokens for c in clients)
    moved = 0.0
    for p_init, p_sgd, p_avg in zip(
        init.parameters(), models["s"].parameters(), models["a"].parameters(), strict=True
    ):
        torch.testing.assert_close(p_sgd, p_avg, atol=2e-6, rtol=1e-5)
        moved += float((p_sgd - p_init).detach().abs().sum())
    assert moved > 1e-3  # and the step was not zero


def test_round_without_tokens_changes_nothing() -> None:
    model = ByteTransformer(seq_len=8, d_model=16, layers=1, heads=2)
    before = [p.detach().clone() for p in model.parameters()]
    server = Server(model, "fedavg", server_opt="adam", server_lr=0.1)
    stats = server.round([], client_lr=0.1, local_steps=2, batch_size=2)
    assert stats.clients == 0 and stats.tokens == 0 and math.isnan(stats.loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_pack_texts_bytes_and_cap() -> None:
    blocks = pack_texts(["hé", "ok"], 3)
    # Stream: h é(2 bytes) EOS o k EOS = 7 tokens, 6 targets, 2 blocks.
    assert blocks.inputs.tolist() == [[104, 195, 169], [EOS_ID, 111, 107]]
    assert blocks.targets.tolist() == [[195, 169, EOS_ID], [111, 107, EOS_ID]]
    assert blocks.tokens == 6 and blocks.inputs.dtype == torch.int64
    full = pack_texts(["abcdefgh"] * 10, 4)  # 90 tokens: ceil(89 / 4) blocks
    capped = pack_texts(["abcdefgh"] * 10, 4, max_blocks=5, rng=np.random.default_rng(1))
    assert len(full) == 23 and len(capped) == 5
    keep = np.sort(np.random.default_rng(1).choice(23, 5, replace=False))
    assert torch.equal(capped.inputs, full.inputs[keep])  # those blocks, in order
    assert torch.equal(capped.targets, full.targets[keep])
    assert pack_texts(["abcdefgh"] * 10, 4, max_blocks=23).inputs.equal(full.inputs)


def test_pack_texts_of_a_group_is_pack_texts_of_its_lines(tmp_path: Path) -> None:
    ds = ga.build(ga.examples.path("shakespeare"), key="speaker", output=tmp_path / "ds")
    group = ds["HORATIO"]
    from_group = pack_texts(group, 32)
    from_lines = pack_texts(group.to_numpy("text").tolist(), 32)
    assert from_group.id == "HORATIO"
    assert torch.equal(from_group.inputs, from_lines.inputs)
    assert torch.equal(from_group.mask, from_lines.mask)


def test_batches_and_epoch() -> None:
    n = 5
    blocks = Blocks("c", torch.arange(n)[:, None], torch.arange(n)[:, None], torch.ones(n, 1) > 0)
    one = epoch(blocks, 2, np.random.default_rng(0))
    assert [len(b[0]) for b in one] == [2, 2, 1]
    assert sorted(int(x) for b in one for x in b[0]) == list(range(n))  # each block once
    steps = batches(blocks, 2, 5, np.random.default_rng(0))
    seen = [int(x) for b in steps for x in b[0]]
    assert len(seen) == 10
    assert sorted(seen[:5]) == list(range(n)) and sorted(seen[5:]) == list(range(n))
    small = batches(blocks, 8, 3, np.random.default_rng(0))  # fewer blocks than a batch
    assert all(sorted(int(x) for x in b[0]) == list(range(n)) for b in small)
