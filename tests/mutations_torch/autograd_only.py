"""Code torch differentiates itself (no hand-written backward): it must pass, in eval and train mode."""

import torch
from torch import nn

from . import Case, normal


class Attention(nn.Module):
    """torch's own multi-head attention, self-attention on x."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class NormedMLP(nn.Module):
    """Linear, torch's BatchNorm1d (train mode: batch statistics, running buffers), GELU."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.bn = nn.BatchNorm1d(n_out)

    def forward(self, x):
        return nn.functional.gelu(self.bn(self.lin(x)))


def dense_tanh(x, w):
    return torch.tanh(x @ w)


CASES = [
    Case("torch-attention", lambda rule: Attention, None, {"x": normal(1, 3, 4)},
         wrt=("x", "params"), init={"d_model": 4, "n_heads": 2}),
    Case("torch-batch-norm-train", lambda rule: NormedMLP, None, {"x": normal(5, 3)},
         wrt=("x", "params"), init={"n_in": 3, "n_out": 2}, mode="train"),
    Case("callable", lambda rule: dense_tanh, None, {"x": normal(3, 4), "w": normal(4, 2)}),
]
