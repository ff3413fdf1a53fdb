"""A small byte-level causal Transformer (PyTorch, CPU) and the loss the study reports.

Tokens are UTF-8 bytes (0-255) plus an end-of-line token (256): a vocabulary of 257. The model
is a pre-LayerNorm decoder (learned positions, causal self-attention through
``scaled_dot_product_attention``, GELU MLP, output layer tied to the embedding). At the
defaults (``d_model=128``, ``layers=2``, ``heads=4``, ``seq_len=64``) it has 437,888
parameters.

Example:
    >>> import torch
    >>> model = ByteTransformer(seq_len=16, d_model=32, layers=1, heads=2)
    >>> model(torch.zeros(3, 16, dtype=torch.long)).shape
    torch.Size([3, 16, 257])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Bytes 0-255 and the end-of-line token.
VOCAB_SIZE = 257


class _Block(nn.Module):
    """One pre-LayerNorm decoder block: causal self-attention, then an MLP."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.ln2(x))


class ByteTransformer(nn.Module):
    """A causal language model over bytes: ``(batch, length)`` ids to ``(batch, length,
    257)`` logits, ``length <= seq_len``.

    Example:
        >>> model = ByteTransformer(seq_len=64)
        >>> sum(p.numel() for p in model.parameters())
        437888
    """

    def __init__(
        self, *, seq_len: int = 64, d_model: int = 128, layers: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.seq_len = seq_len
        self.embed = nn.Embedding(VOCAB_SIZE, d_model)
        self.position = nn.Parameter(torch.zeros(seq_len, d_model))
        self.blocks = nn.ModuleList(_Block(d_model, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.apply(_init)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.embed.weight.T


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def token_nll(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The summed negative log-likelihood (nats) of the real targets (``mask`` True) of a
    batch of blocks; divide by ``mask.sum()`` for the loss per byte.

    Example:
        >>> model = ByteTransformer(seq_len=8, d_model=16, layers=1, heads=2)
        >>> ids = torch.zeros(2, 8, dtype=torch.long)
        >>> float(token_nll(model, ids, ids, torch.zeros(2, 8, dtype=torch.bool)).detach())
        0.0
    """
    logits = model(inputs)
    losses = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), targets.reshape(-1), reduction="none")
    return (losses * mask.reshape(-1)).sum()


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters.

    Example:
        >>> count_parameters(ByteTransformer(seq_len=64))
        437888
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
