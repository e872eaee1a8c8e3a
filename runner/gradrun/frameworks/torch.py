"""PyTorch code as a gradrun function: the ``torch:`` kind of a spec.

``function(name, code, ...)`` turns an ``autograd.Function`` subclass (called
through ``.apply``), an ``nn.Module`` (a subclass, built with ``init`` under
the seed, or an instance) or any callable on tensors into a
``PythonFunction`` over numpy arrays; ``check(code, inputs, ...)`` checks it
from Python as a spec would. The pieces, one concern each:

- ``torch_code``: the code built and called (forward in the arguments' dtype,
  run twice for determinism; reverse mode by ``torch.autograd.grad``; double
  backward for Hessian-vector products);
- ``torch_batch``: a chunk of perturbations per ``torch.func.vmap`` call;
- ``torch_jacobian``: forward mode (``torch.func.jvp``), many tangents per call;
- ``torch_threads``: the intra-op thread count of every call.

A module's parameters are inputs after the forward's own, under their
``named_parameters`` names; their values at the seed are the function's
``defaults``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..tree import PythonFunction
from .torch_batch import BatchedForward
from .torch_code import (MODES, NondeterministicError, TorchBackwardError, TorchCode,
                         TorchDeclarationError)
from .torch_threads import confined


def function(name: str, obj, *, init=None, mode="eval", seed=0, device="cpu",
             complex_safe=False, source="") -> PythonFunction:
    """A ``torch:`` declaration as a PythonFunction; raises TorchDeclarationError."""
    if mode not in MODES:
        raise TorchDeclarationError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if not callable(obj):
        raise TorchDeclarationError(f"'{source}' is not callable")
    try:
        torch.device(device)
    except RuntimeError as e:
        raise TorchDeclarationError(f"device {device!r}: {e}", "use cpu, cuda or cuda:N", key="device") from None
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise TorchDeclarationError(f"device {device!r} is not available here", "use device: cpu", key="device")
    code = TorchCode(name, obj, init, mode, seed, device)
    if not code.params:
        raise TorchDeclarationError(f"'{source}' takes no positional inputs")
    forward_mode = code.has_forward_mode
    batch = BatchedForward(code)
    return PythonFunction(
        name, code.params, confined(code.forward), confined(code.vjp), confined(code.jvp if forward_mode else None),
        bool(complex_safe), source, confined(batch), defaults=code.defaults(), notes=code.notes,
        jvp_batch=confined(code.jvp_batch if forward_mode else None), hvp=confined(code.hvp),
        forward_moved=confined(batch.moved), jvp_basis=confined(code.jvp_basis if forward_mode else None),
        concurrent=mode != "train", chunk_rows=confined(batch.rows))  # train mode re-seeds torch's one generator at every call


def check(code, inputs: dict, *, wrt=None, init=None, mode="eval", device="cpu", complex_safe=False,
          name=None, **settings):
    """Check PyTorch code from Python, as a spec's ``torch:`` function is checked.

    ``inputs`` are the forward's inputs (a module's parameters default to
    their values at the seed); ``wrt`` names inputs and parameters, ``params``
    meaning every parameter (default: the inputs given). ``settings`` are the
    spec's keys (dtype, method, seed, reduce, ...). Returns an ExperimentResult.
    """
    from ..labels import label_names
    from ..model import Experiment, Point, Settings
    from ..runner import run_experiment
    from ..tree import Call, Var

    name = name or getattr(code, "__name__", type(code).__name__)
    fn = function(name, code, init=init, mode=mode, seed=settings.get("seed", 0), device=device,
                  complex_safe=complex_safe, source=name)
    values = {**fn.defaults, **{k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}}
    missing = [p for p in fn.params if p not in values]
    if missing:
        raise ValueError(f"{name} needs inputs {', '.join(missing)}")
    integers = label_names(inputs, wrt)
    chosen = [w for n in (wrt or [k for k in inputs if k not in integers])
              for w in (list(fn.defaults) if n == "params" else [n])]
    exp = Experiment(name, Call(name, tuple(Var(p) for p in fn.params)), {name: fn}, [Point(0, values)],
                     chosen, Settings().updated(**settings), integers=integers)
    return run_experiment(exp)


__all__ = ["function", "check", "TorchCode", "TorchDeclarationError", "TorchBackwardError", "NondeterministicError", "MODES"]
