"""One ``torch:`` declaration as code gradrun can call on numpy arrays.

``TorchCode`` builds the code (an ``autograd.Function`` subclass called through
``.apply``, an ``nn.Module`` subclass built with ``init`` under the seed or an
instance, or any callable on tensors), names its inputs (the forward's, then
a module's parameters under their ``named_parameters`` names) and calls it:

- ``forward`` in the dtype of its arguments: float64 arrays go to the float64
  twin (``copy.deepcopy(module).double()``), float32 arrays to a float32
  copy; it runs twice and says so when the two calls differ;
- ``vjp`` is ``torch.autograd.grad`` in the dtype of its arguments (so the
  float32 analytic side stays float32), ``hvp`` double backward;
- ``jvp`` and ``jvp_batch`` are forward-mode AD (``torch_jacobian``);

Every call gets fresh tensors and fresh copies of the module's buffers, so
in-place ops and running statistics change nothing gradrun keeps; ``mode:
train`` re-seeds torch before every call, so dropout draws the same mask
each time.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import threading

import numpy as np
import torch
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..tree import python_params
from . import torch_jacobian

MODES = ("eval", "train")

# numpy dtype of the arrays gradrun passes -> torch dtype the code runs in
TORCH_DTYPES = {
    np.dtype(np.float64): torch.float64,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.complex128): torch.complex128,
    np.dtype(np.complex64): torch.complex64,
    np.dtype(np.int64): torch.int64,  # labels (``gradrun.labels``): passed as they are, never differentiated
}

# how far two calls at the same point may differ, in eps of the output's scale, before non-determinism
REPEAT_AGREEMENT = 4


class TorchDeclarationError(ValueError):
    """A ``torch:`` declaration that cannot be built; carries a hint."""

    def __init__(self, message, hint="", key="torch"):
        super().__init__(message)
        self.message, self.hint, self.key = message, hint, key  # key: the declaration's key at fault


class TorchBackwardError(RuntimeError):
    """The code's backward pass raised, or returned a gradient of the wrong shape."""


class NondeterministicError(RuntimeError):
    """Two calls at the same point gave different outputs."""


def _autograd_function(obj) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.autograd.Function)


class _ForwardOnly:
    """The ``ctx`` of an old-style Function's ``forward`` called for its values alone: what it
    saves or marks for its backward is dropped, and no input needs a gradient."""

    def __init__(self, inputs: int):
        self.needs_input_grad = (False,) * inputs
        self.saved_tensors = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def save_for_forward(self, *tensors):
        pass

    def mark_dirty(self, *tensors):
        pass

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass


def _forward_of(function, tensors):
    """A Function's ``forward`` on ``tensors``, for its values (``TorchCode.apply``)."""
    if function.setup_context is not torch.autograd.Function.setup_context:
        return function.forward(*tensors)  # new style: the forward takes no ctx
    return function.forward(_ForwardOnly(len(tensors)), *tensors)


def _input_names(obj, module) -> tuple:
    """The forward's input names: a Function's without ctx, a module's without self."""
    if module is not None:
        return python_params(module.forward)
    if _autograd_function(obj):
        names = python_params(obj.forward)
        new_style = obj.setup_context is not torch.autograd.Function.setup_context
        return names if new_style else names[1:]
    return python_params(obj)


def _build_module(obj, init: dict, seed: int):
    """The module to check: an instance as given, a subclass built with ``init`` under ``seed``."""
    if isinstance(obj, torch.nn.Module):
        if init:
            raise TorchDeclarationError("init applies to an nn.Module subclass, not to an instance",
                                        "remove init, or name the class", key="init")
        return obj
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        if init:
            raise TorchDeclarationError("init applies to an nn.Module subclass only", "remove init", key="init")
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return obj(**(init or {}))
        except Exception as e:
            accepted = ", ".join(list(inspect.signature(obj.__init__).parameters)[1:]) or "no arguments"
            raise TorchDeclarationError(f"building {obj.__name__}(**init) raised {type(e).__name__}: {e}",
                                        f"its constructor takes: {accepted}", key="init") from None


class Spares:
    """Things of which each call running at once needs its own (a module copy, a working
    batch: calls from two threads write into them): one lent to each call, a new one
    made (``make()``) when none is spare, and kept for the next call after."""

    def __init__(self, make, first=()):
        self.make, self.free, self.lock = make, list(first), threading.Lock()

    @contextlib.contextmanager
    def lent(self):
        with self.lock:
            item = self.free.pop() if self.free else None
        if item is None:
            item = self.make()
        try:
            yield item
        finally:
            with self.lock:
                self.free.append(item)


class TorchCode:
    """One ``torch:`` declaration, callable on numpy arrays in their own dtype."""

    def __init__(self, name, obj, init=None, mode="eval", seed=0, device="cpu"):
        self.name, self.obj, self.mode, self.seed = name, obj, mode, seed
        self.device = torch.device(device)
        self.module = _build_module(obj, init, seed)
        self.inputs = _input_names(obj, self.module)
        self.parameters = tuple(n for n, _ in self.module.named_parameters()) if self.module is not None else ()
        clash = set(self.inputs) & set(self.parameters)
        if clash:
            raise TorchDeclarationError(f"forward input '{sorted(clash)[0]}' has the name of a parameter",
                                        "rename the forward's argument")
        self.buffers = tuple(n for n, _ in self.module.named_buffers()) if self.module is not None else ()
        self.tied = self.module is not None and _ties_tensors(self.module)
        self.copies: dict = {}  # torch dtype -> (module copy, its buffers)
        self.spare: dict = {}  # torch dtype -> the copies of that copy calls borrow (Spares)
        self.lock = threading.Lock()
        self.notes: list = []
        self.jacobian = torch_jacobian.ForwardJacobian(self)
        # (shape, dtype) of every argument -> what one call allocates there (``allocations``)
        self.allocated: dict = {}

    # -- calling the code

    @property
    def params(self) -> tuple:
        return self.inputs + self.parameters

    def defaults(self) -> dict:
        """The parameters' values at the seed, as float64 arrays (inputs the user need not give)."""
        if self.module is None:
            return {}
        return {n: p.detach().cpu().double().numpy().copy() for n, p in self.module.named_parameters()}

    def twin(self, dtype):
        """The module's copy in ``dtype`` (the float64 twin, say) and its buffers as built."""
        with self.lock:
            if dtype not in self.copies:
                twin = self._copy(dtype)
                self.copies[dtype] = (twin, [b.detach().clone() for _, b in twin.named_buffers()])
            return self.copies[dtype]

    def _copy(self, dtype):
        """A fresh copy of the module as built (never called: its tensors stay the seed's), in ``dtype``."""
        module = copy.deepcopy(self.module).to(device=self.device, dtype=dtype)
        return module.train(self.mode == "train")

    @contextlib.contextmanager
    def borrowed(self, dtype):
        """A copy of the module in ``dtype`` that no other call is using while this one does:
        ``functional_call`` puts a call's tensors into the module itself, so two calls at once
        (from two threads) need two copies, each made as the twin is."""
        twin, _ = self.twin(dtype)
        with self.lock:
            spares = self.spare.setdefault(dtype, Spares(lambda: self._copy(dtype), [twin]))
        with spares.lent() as module:
            yield module

    def rng(self):
        """Train mode: every call draws from the same seed (dropout repeats its mask)."""
        if self.mode != "train":
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]))
        torch.manual_seed(self.seed)
        return stack

    def apply(self, tensors, buffers=None, forward_only=False):
        """The code on tensors (the forward's inputs, then the parameters); one tensor out.

        ``buffers``, when given, are the module's buffers for this call (fresh
        ones otherwise), so whatever the call writes into them is discarded.
        ``forward_only``: the values alone are wanted (no autograd, as under
        ``torch.func.vmap`` for the numeric side), so an ``autograd.Function``'s
        own ``forward`` is called, not ``.apply``: functorch transforms refuse a
        Function without ``setup_context`` and a vmap rule, which most
        hand-written ones are, though their forward is plain tensor code.
        """
        n = len(self.inputs)
        with self.rng():
            if self.module is not None:
                dtype = self.working_dtype(tensors)
                _, kept = self.twin(dtype)
                state = dict(zip(self.parameters, tensors[n:]))
                state.update(zip(self.buffers, buffers if buffers is not None else [b.clone() for b in kept]))
                with self.borrowed(dtype) as module:
                    if self.tied:  # untying is per call and costly; only a module that shares a tensor needs it
                        out = functional_call(module, state, tuple(tensors[:n]), tie_weights=True)
                    else:
                        out = _called_with(module, state, tuple(tensors[:n]))
            elif _autograd_function(self.obj) and forward_only:
                out = _forward_of(self.obj, tensors)
            elif _autograd_function(self.obj):
                out = self.obj.apply(*tensors)
            else:
                out = self.obj(*tensors)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{self.name} returned {type(out).__name__}, not one tensor (return a single tensor)")
        return out

    @staticmethod
    def working_dtype(tensors):
        """The dtype a module's copy runs in: its first real or complex argument's, not a label's."""
        return next((t.dtype for t in tensors if t.is_floating_point() or t.is_complex()), torch.float64)

    def tensors(self, arrays, grad=False) -> list:
        """Fresh tensors (copies) of numpy arrays, on the device, in the arrays' own dtype."""
        out = []
        for a in arrays:
            a = np.asarray(a)
            if a.dtype in TORCH_DTYPES:  # a numpy copy, wrapped: a third of torch.tensor's time
                t = torch.from_numpy(np.array(a, order="C")).to(self.device)
            else:
                t = torch.tensor(a, dtype=torch.float64, device=self.device)
            out.append(t.requires_grad_() if grad and (t.is_floating_point() or t.is_complex()) else t)
        return out

    def evaluate(self, arrays) -> np.ndarray:
        with torch.no_grad():
            return numpy_of(self.apply(self.tensors(arrays)))

    # -- what gradrun calls

    def forward(self, *arrays) -> np.ndarray:
        """The output at one point; raises NondeterministicError when two calls differ."""
        out = self.evaluate(arrays)
        again = self.evaluate(arrays)
        apart = gap(out, again)
        if apart > REPEAT_AGREEMENT * eps_of(out) * scale_of(out):
            where = int(np.argmax(np.abs(out - again))) if out.size else 0
            hint = ("it draws random numbers: declare mode: train to re-seed every call"
                    if self.mode == "eval" else "something besides torch's generator varies between calls")
            raise NondeterministicError(f"{self.name} is not deterministic: two calls at the same point differ "
                                        f"by {apart:.3g} at output element {where} ({hint})")
        return out

    def allocations(self, arrays) -> tuple:
        """(the largest tensor one op of a call at ``arrays`` allocates, all they allocate), in
        bytes, (0, 0) where it cannot be told: what a chunk of perturbations multiplies
        (``BatchedForward.rows``). Measured once per shape and dtype of the arguments, on a
        call of its own (the module's copy made before, its tensors not counted)."""
        key = tuple((np.shape(a), np.asarray(a).dtype.str) for a in arrays)
        if key not in self.allocated:
            tensors = self.tensors(arrays)
            if self.module is not None:  # made here, so its own tensors are not counted
                self.twin(self.working_dtype(tensors))
            with torch.no_grad():
                self.allocated[key] = _allocations(lambda: self.apply(tensors))
        return self.allocated[key]

    def note(self, text):
        """Tell the reader of the report how this code was evaluated (once per text)."""
        text = f"{self.name}: {text}"
        if text not in self.notes:
            self.notes.append(text)

    def vjp(self, cotangent, *arrays) -> tuple:
        """Reverse mode by torch.autograd.grad: one cotangent per input, in the inputs' dtype."""
        leaves = self.tensors(arrays, grad=True)
        with torch.enable_grad():
            out = self.apply(leaves)
            ct = torch.tensor(np.asarray(cotangent), dtype=out.dtype, device=self.device)
            if not out.requires_grad:  # the output does not depend on the inputs through autograd
                return tuple(np.zeros_like(np.asarray(a)) for a in arrays)
            try:
                grads = _grad(out, leaves, ct.reshape(out.shape))
            except Exception as e:
                raise TorchBackwardError(f"the backward of {self.name} raised {type(e).__name__}: {e}") from None
        result = []
        for name, leaf, g in zip(self.params, leaves, grads):
            if g is None:
                result.append(np.zeros(leaf.shape, dtype=numpy_of(leaf.detach()).dtype))
                continue
            if g.shape != leaf.shape:
                raise TorchBackwardError(f"the backward of {self.name} returned a gradient of shape "
                                         f"{tuple(g.shape)} for '{name}' of shape {tuple(leaf.shape)}")
            result.append(numpy_of(g))
        return tuple(result)

    def hvp(self, cotangent, tangents, *arrays) -> tuple:
        """Second order by double backward: d/dt vjp(cotangent, *(arrays + t * tangents)) at t = 0.

        The VJP of <cotangent, f> is its gradient, whose Jacobian (the Hessian of
        <cotangent, f>) is symmetric, so the derivative along the tangents is one
        more backward pass with the tangents as its cotangent.
        """
        leaves = self.tensors(arrays, grad=True)
        with torch.enable_grad():
            out = self.apply(leaves)
            ct = torch.tensor(np.asarray(cotangent), dtype=out.dtype, device=self.device).reshape(out.shape)
            try:
                grads = _grad(out, leaves, ct, create_graph=True)
                pairs = [(g, t) for g, t in zip(grads, self.tensors(tangents)) if g is not None and g.requires_grad]
                second = _grad([g for g, _ in pairs], leaves, [t.to(g.dtype) for g, t in pairs]) \
                    if pairs else (None,) * len(leaves)
            except Exception as e:
                raise TorchBackwardError(f"the double backward of {self.name} raised {type(e).__name__}: {e}") from None
        return tuple(np.zeros(np.shape(a), dtype=np.asarray(a).dtype) if h is None else numpy_of(h)
                     for a, h in zip(arrays, second))

    def jvp(self, tangents, *arrays) -> np.ndarray:
        """Forward mode: the output's tangent (see ``torch_jacobian``)."""
        return self.jacobian.apply(tangents, arrays)

    def jvp_batch(self, tangents, *arrays) -> np.ndarray:
        """Forward mode along a chunk of tangents (see ``torch_jacobian``)."""
        return self.jacobian.batch(tangents, arrays)

    def jvp_basis(self, moving, at, *arrays) -> np.ndarray:
        """Forward mode along a chunk of one-hot tangents (see ``torch_jacobian``)."""
        return self.jacobian.basis(moving, at, arrays)

    @property
    def has_forward_mode(self) -> bool:
        """An autograd.Function has forward mode only when it defines ``jvp``."""
        if _autograd_function(self.obj):
            return self.obj.jvp is not torch.autograd.Function.jvp
        return True


def _called_with(module, state: dict, args: tuple):
    """``module(*args)`` with its parameters and buffers replaced by ``state`` (name ->
    tensor) for the call, then put back: what ``functional_call`` does for a module
    that ties no tensors, without its per-call lookups (a third of a small vmapped
    call's fixed cost). The slots are found once per module copy."""
    slots = module.__dict__.setdefault("_gradrun_slots", {})
    saved = []
    try:
        for name, tensor in state.items():
            if name not in slots:
                owner, _, leaf = name.rpartition(".")
                sub = module.get_submodule(owner)
                slots[name] = (sub._parameters if leaf in sub._parameters else sub._buffers, leaf)
            table, leaf = slots[name]
            saved.append((table, leaf, table[leaf]))
            table[leaf] = tensor
        return module(*args)
    finally:
        for table, leaf, old in reversed(saved):
            table[leaf] = old


class _Allocations(TorchDispatchMode):
    """The largest tensor an op allocates while the mode is on, and all they allocate: outputs
    sharing storage with an input (views, in-place ops) allocate nothing."""

    def __init__(self):
        super().__init__()
        self.largest = self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        held = {_storage(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and _storage(t) not in held:
                size = t.numel() * t.element_size()
                self.largest, self.total = max(self.largest, size), self.total + size
        return out


def _storage(t) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # a tensor without storage (sparse, say): never taken for a view
        return -1


def _allocations(call) -> tuple:
    """(the largest tensor one op of ``call()`` allocates, all they allocate), in bytes;
    (0, 0) where it cannot be told."""
    try:
        with _Allocations() as seen:
            call()
        return seen.largest, seen.total
    except Exception:  # the code's own errors come from the calls that follow
        return 0, 0


def _ties_tensors(module) -> bool:
    """Whether two names of the module share one parameter or buffer (tied weights)."""
    names = [n for n, _ in module.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in module.named_buffers(remove_duplicate=False)]
    return len(names) > len(dict(module.named_parameters())) + len(dict(module.named_buffers()))


def numpy_of(t) -> np.ndarray:
    """A tensor's values as a numpy array on the CPU."""
    return t.detach().cpu().resolve_conj().numpy()


def eps_of(a) -> float:
    """The rounding unit of an array's dtype (0 for integers)."""
    a = np.asarray(a)
    return float(np.finfo(a.dtype).eps) if np.issubdtype(a.dtype, np.inexact) else 0.0


def scale_of(a) -> float:
    """The largest finite magnitude in an array, at least 1."""
    a = np.abs(np.asarray(a))
    return max(float(np.max(np.where(np.isfinite(a), a, 0), initial=0.0)), 1.0)


def gap(a, b) -> float:
    """The largest difference between two outputs; NaN in the same places counts as agreement."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    same_nan = np.isnan(a) & np.isnan(b)
    d = np.where(same_nan, 0.0, np.abs(a - b))
    return float(np.max(np.nan_to_num(d, nan=np.inf), initial=0.0))


def _grad(outputs, leaves, cotangents, create_graph=False) -> tuple:
    """``torch.autograd.grad`` over the leaves that take a gradient, None for the others
    (integer labels, which cannot require one)."""
    taking = [leaf for leaf in leaves if leaf.requires_grad]
    found = iter(torch.autograd.grad(outputs, taking, cotangents, create_graph=create_graph, allow_unused=True)
                 if taking else ())
    return tuple(next(found) if leaf.requires_grad else None for leaf in leaves)

