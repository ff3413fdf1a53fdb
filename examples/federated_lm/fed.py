"""FedSGD and FedAvg rounds, evaluation on held-out clients, and per-client personalization.

* FedSGD: each client of the cohort computes one gradient of its mean loss per byte over
  its (capped) blocks; the server averages the gradients weighted by the clients' tokens and
  takes one server-optimizer step (Adam by default).
* FedAvg: each client starts from the global model and takes ``local_steps`` SGD steps on
  batches of its blocks (cycling through a shuffled order, so the default ``local_steps *
  batch_size == max_blocks`` is one local epoch); the server averages the model deltas
  weighted by tokens and applies their negation as a pseudo-gradient with its optimizer
  (SGD with ``lr=1.0`` — plain FedAvg — by default, Adam optional).
* Personalization: a copy of the global model takes one epoch of SGD on a held-out client's
  train part (batches of ``batch_size`` blocks, shuffled), then is evaluated on its eval part.

Training time (forward, backward, optimizer steps, averaging) is counted under the ``train``
clock, evaluation under ``eval``, fine-tuning under ``personalize``; reading and packing
cohorts is the caller's ``data`` clock (:func:`examples.federated_lm.data.cohort`).

Example:
    >>> server = Server(model, "fedavg", server_opt="sgd", server_lr=1.0)   # doctest: +SKIP
    >>> server.round(clients, client_lr=0.5, local_steps=4, batch_size=8)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from examples.federated_lm.data import Blocks, Clock, EvalClient
from examples.federated_lm.model import token_nll

ALGORITHMS = ("fedsgd", "fedavg")
#: Blocks per forward pass where only memory bounds the batch (FedSGD's gradient, evaluation).
_CHUNK = 64


def make_optimizer(params: Sequence[nn.Parameter], name: str, lr: float) -> torch.optim.Optimizer:
    """``sgd`` (no momentum) or ``adam`` (betas 0.9, 0.999; eps 1e-8) over ``params``.

    Example:
        >>> opt = make_optimizer(list(nn.Linear(2, 2).parameters()), "adam", 1e-3)
        >>> type(opt).__name__
        'Adam'
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer {name!r} must be 'sgd' or 'adam'")


@dataclass
class RoundStats:
    """What one round did: clients, their real target tokens, and the clients' mean training
    loss per byte (before FedAvg's local steps / at FedSGD's gradient)."""

    clients: int
    tokens: int
    loss: float


class Server:
    """The global model, its server optimizer, and one :meth:`round` of ``algorithm``
    (``"fedsgd"`` or ``"fedavg"``).

    Example:
        >>> server = Server(nn.Linear(2, 2), "fedsgd", server_opt="adam", server_lr=1e-3)
        >>> server.algorithm
        'fedsgd'
    """

    def __init__(
        self,
        model: nn.Module,
        algorithm: str,
        *,
        server_opt: str,
        server_lr: float,
        clip: float | None = None,
        seed: int = 0,
        clock: Clock | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {algorithm!r} must be one of {ALGORITHMS}")
        self.model = model
        self.algorithm = algorithm
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, server_opt, server_lr)
        self.clip = clip
        self.seed = seed
        self.clock = clock or Clock()
        self._local = copy.deepcopy(model)  # FedAvg's client model, reloaded each client
        self._rounds = 0

    def round(
        self,
        clients: Sequence[Blocks],
        *,
        client_lr: float,
        local_steps: int,
        batch_size: int,
    ) -> RoundStats:
        """One round over ``clients`` (already read and packed); the global model is
        updated in place. A round with no client tokens leaves it unchanged."""
        with self.clock("train"):
            self.model.train()
            total = sum(c.tokens for c in clients)
            if not total:
                return RoundStats(len(clients), 0, float("nan"))
            if self.algorithm == "fedsgd":
                update, loss = self._fedsgd(clients)
            else:
                update, loss = self._fedavg(clients, client_lr, local_steps, batch_size)
            for p, g in zip(self.params, update, strict=True):
                p.grad = g
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._rounds += 1
            return RoundStats(len(clients), total, loss / total)

    def _fedsgd(self, clients: Sequence[Blocks]) -> tuple[list[torch.Tensor], float]:
        """The token-weighted average of the clients' gradients (of their mean loss)."""
        total = sum(c.tokens for c in clients)
        average = [torch.zeros_like(p) for p in self.params]
        loss_sum = 0.0
        for client in clients:
            if not client.tokens:
                continue
            self.model.zero_grad(set_to_none=True)
            # One gradient of the client's mean loss, accumulated over slices of its blocks
            # (only to bound memory: the same gradient as one batch of all of them).
            for start in range(0, len(client), _CHUNK):
                part = slice(start, start + _CHUNK)
                nll = token_nll(
                    self.model, client.inputs[part], client.targets[part], client.mask[part]
                )
                (nll / client.tokens).backward()
                loss_sum += float(nll.detach())
            weight = client.tokens / total
            for acc, p in zip(average, self.params, strict=True):
                if p.grad is not None:
                    acc.add_(p.grad, alpha=weight)
        self.model.zero_grad(set_to_none=True)
        return average, loss_sum

    def _fedavg(
        self, clients: Sequence[Blocks], client_lr: float, local_steps: int, batch_size: int
    ) -> tuple[list[torch.Tensor], float]:
        """Minus the token-weighted average of the clients' model deltas."""
        total = sum(c.tokens for c in clients)
        start_state = [p.detach().clone() for p in self.params]
        local_params = [p for p in self._local.parameters() if p.requires_grad]
        average = [torch.zeros_like(p) for p in self.params]
        loss_sum = 0.0
        for i, client in enumerate(clients):
            if not client.tokens:
                continue
            with torch.no_grad():
                for lp, p in zip(local_params, start_state, strict=True):
                    lp.copy_(p)
            self._local.train()
            optimizer = torch.optim.SGD(local_params, lr=client_lr)
            rng = np.random.default_rng([self.seed, self._rounds, i, 1])
            for step, batch in enumerate(batches(client, batch_size, local_steps, rng)):
                nll = token_nll(self._local, *batch)
                tokens = int(batch[2].sum())
                if not tokens:
                    continue
                optimizer.zero_grad(set_to_none=True)
                (nll / tokens).backward()
                if self.clip:
                    nn.utils.clip_grad_norm_(local_params, self.clip)
                optimizer.step()
                if step == 0:
                    loss_sum += float(nll.detach()) / tokens * client.tokens
            weight = client.tokens / total
            with torch.no_grad():
                for acc, lp, p in zip(average, local_params, start_state, strict=True):
                    acc.add_(p - lp, alpha=weight)  # minus the delta: a pseudo-gradient
        return average, loss_sum


def batches(
    blocks: Blocks, batch_size: int, steps: int, rng: np.random.Generator
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``steps`` batches of ``min(batch_size, len(blocks))`` blocks, taken in order from
    shuffled passes over the blocks (a new shuffle each pass).

    Example:
        >>> b = Blocks("c", *(torch.zeros(3, 4, dtype=torch.long),) * 2, torch.ones(3, 4) > 0)
        >>> [x[0].shape[0] for x in batches(b, 2, 3, np.random.default_rng(0))]
        [2, 2, 2]
    """
    n = len(blocks)
    size = min(batch_size, n)
    order = np.concatenate(
        [rng.permutation(n) for _ in range(-(-steps * size // n))] or [np.zeros(0, np.int64)]
    )
    out = []
    for step in range(steps):
        index = torch.as_tensor(order[step * size : (step + 1) * size])
        out.append((blocks.inputs[index], blocks.targets[index], blocks.mask[index]))
    return out


def epoch(
    blocks: Blocks, batch_size: int, rng: np.random.Generator
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One pass over the blocks in a shuffled order, in batches of ``batch_size`` (the last
    one smaller when ``batch_size`` does not divide the number of blocks).

    Example:
        >>> b = Blocks("c", *(torch.zeros(5, 4, dtype=torch.long),) * 2, torch.ones(5, 4) > 0)
        >>> [x[0].shape[0] for x in epoch(b, 2, np.random.default_rng(0))]
        [2, 2, 1]
    """
    order = torch.as_tensor(rng.permutation(len(blocks)))
    return [
        (blocks.inputs[index], blocks.targets[index], blocks.mask[index])
        for index in order.split(batch_size)
    ]


@torch.no_grad()
def client_loss(model: nn.Module, blocks: Blocks, batch_size: int = _CHUNK) -> float:
    """``model``'s mean loss per byte (nats) on ``blocks``.

    Example:
        >>> client_loss(model, client.eval)   # doctest: +SKIP
        2.31
    """
    model.eval()
    nll = 0.0
    for start in range(0, len(blocks), batch_size):
        part = slice(start, start + batch_size)
        nll += float(token_nll(model, blocks.inputs[part], blocks.targets[part], blocks.mask[part]))
    return nll / blocks.tokens


def evaluate(model: nn.Module, clients: Sequence[EvalClient], clock: Clock) -> np.ndarray:
    """The global model's loss per byte on each held-out client's eval part.

    Example:
        >>> evaluate(model, clients, Clock()).shape   # doctest: +SKIP
        (83,)
    """
    with clock("eval"):
        return np.array([client_loss(model, c.eval) for c in clients])


def personalize(
    model: nn.Module,
    clients: Sequence[EvalClient],
    *,
    lr: float,
    batch_size: int,
    clip: float | None,
    seed: int,
    clock: Clock,
) -> np.ndarray:
    """Each held-out client's eval loss after one epoch of SGD, from ``model``, on its train
    part (shuffled batches of ``batch_size`` blocks); ``model`` is left unchanged.

    Example:
        >>> after = personalize(model, clients, lr=0.5, batch_size=8, clip=1.0, seed=0,
        ...     clock=Clock())   # doctest: +SKIP
    """
    local = copy.deepcopy(model)
    params = [p for p in local.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    out = []
    for i, client in enumerate(clients):
        with clock("personalize"):
            with torch.no_grad():
                for p, s in zip(params, start, strict=True):
                    p.copy_(s)
            local.train()
            optimizer = torch.optim.SGD(params, lr=lr)
            rng = np.random.default_rng([seed, i, 2])
            for inputs, targets, mask in epoch(client.train, batch_size, rng):
                tokens = int(mask.sum())
                if not tokens:
                    continue
                optimizer.zero_grad(set_to_none=True)
                (token_nll(local, inputs, targets, mask) / tokens).backward()
                if clip:
                    nn.utils.clip_grad_norm_(params, clip)
                optimizer.step()
        with clock("eval"):
            out.append(client_loss(local, client.eval))
    return np.array(out)
