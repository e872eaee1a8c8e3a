"""PyTorch code for tests/test_torch_adapter.py."""

import torch
from torch import nn


class Noisy(nn.Module):
    """Draws random numbers without being in train mode: not deterministic."""

    def forward(self, x):
        return x * (1 + 0.01 * torch.rand_like(x))


class DropBlock(nn.Module):
    def __init__(self, n, p=0.5):
        super().__init__()
        self.lin = nn.Linear(n, n)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return self.drop(torch.tanh(self.lin(x)))


class Normed(nn.Module):
    """torch's BatchNorm1d: running statistics change on every call in train mode."""

    def __init__(self, n):
        super().__init__()
        self.bn = nn.BatchNorm1d(n)

    def forward(self, x):
        return torch.tanh(self.bn(x))


class OldStyleCube(torch.autograd.Function):
    """ctx in forward, no setup_context: torch.func.vmap cannot run it through .apply."""

    calls = []  # (x's shape, whether called through .apply) at each forward call

    @staticmethod
    def forward(ctx, x):
        OldStyleCube.calls.append((tuple(x.shape), isinstance(ctx, torch.autograd.function.FunctionCtx)))
        if ctx.needs_input_grad[0]:  # what a forward may read of ctx, and save to it
            ctx.save_for_backward(x)
        ctx.scale = 3.0
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


class OldStyleListCube(torch.autograd.Function):
    """A forward through Python floats: neither vmap nor anything batched can run it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tensor([v ** 3 for v in x.tolist()], dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


class OldStyleCubeWrong(OldStyleCube):
    """OldStyleCube with a backward off by 1 % at its first element."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad = 3 * x * x * g
        grad[0] *= 1.01
        return grad


def _cube_jvp(wrong):
    class Cube(torch.autograd.Function):
        """x ** 3 with backward and forward mode (jvp), vmappable."""

        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return x ** 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x * g

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return (3 + wrong) * x * x * t

    return Cube


Cube = _cube_jvp(0.0)
CubeWrongJvp = _cube_jvp(0.01)


def tanh_complex(x):
    return torch.tanh(x) * x


def scrub(x):
    """Changes its input in place (on a copy it owns, as gradrun passes)."""
    y = torch.sin(x)
    with torch.no_grad():
        x.zero_()
    return y


class SavedSquare(torch.autograd.Function):
    """x ** 3 whose backward uses x ** 2 saved from forward: right once, wrong twice
    (forward runs without autograd, so double backward sees x ** 2 as a constant)."""

    @staticmethod
    def forward(ctx, x):
        square = x * x
        ctx.save_for_backward(square)
        return square * x

    @staticmethod
    def backward(ctx, g):
        (square,) = ctx.saved_tensors
        return 3 * square * g
