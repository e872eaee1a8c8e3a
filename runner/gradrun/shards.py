"""``--shard I/N``: a deterministic slice of a run, for CI matrices; ``--merge``: the slices made whole.

Every experiment of the run goes to exactly one of N shards. The slicing
balances an estimate of each experiment's cost (points times input
elements), largest first, each to the shard with least so far; ties go to
the lower shard. It depends only on the specs and ``--only``, so every CI job
computes the same slices.

A shard writes, beside its (partial) reports, ``<stem>.shard-I-of-N.pickle``
per spec file: its results with the spec's hash and the run's options. A
merge reads the N files of every spec, checks they belong together, and
hands back the results in spec order, from which the usual writers make the
same reports as a serial run. The files are read by an unpickler that builds
only gradrun's own result records and numpy arrays, never arbitrary objects.
"""

from __future__ import annotations

import heapq
import io
import itertools
import pickle
import re
from pathlib import Path

from .model import ExperimentResult

FORMAT = 1
SUFFIX = ".pickle"
MISSING_NAMED = 10  # missing shards a message lists
_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)\.pickle$")


class ShardError(Exception):
    """A malformed --shard, or shard files that do not make one whole run."""


def parse(text: str) -> tuple:
    """``"I/N"`` -> ``(I, N)``, 1 <= I <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ShardError(f"{text!r} is not I/N with 1 <= I <= N, e.g. 1/4")
    return int(match[1]), int(match[2])


def cost(exp) -> int:
    """A rough cost of checking an experiment: its points times the elements of its inputs."""
    elements = sum(getattr(v, "size", 1) for v in exp.points[0].inputs.values()) if exp.points else 1
    return max(1, len(exp.points)) * max(1, elements)


def slice_of(chosen, index: int, count: int) -> list:
    """The experiments of shard ``index`` of ``count``, as ``[(spec position, spec, [positions])]``."""
    every = [(spec_no, k, cost(spec.experiments[k])) for spec_no, spec, positions in chosen for k in positions]
    # Each experiment, the costliest first, goes to the least loaded shard (the first of equals).
    # Shards still empty are taken in order before any other (every cost is >= 1): only the loaded
    # ones are kept, so time and memory follow the experiments, not N (--shard 1/100000000).
    loaded, unused, mine = [], 0, set()
    for spec_no, k, c in sorted(every, key=lambda item: -item[2]):  # stable: ties keep spec order
        if unused < count:
            load, shard, unused = 0, unused, unused + 1
        else:
            load, shard = heapq.heappop(loaded)
        heapq.heappush(loaded, (load + c, shard))
        if shard == index - 1:
            mine.add((spec_no, k))
    return [(spec_no, spec, [k for k in positions if (spec_no, k) in mine]) for spec_no, spec, positions in chosen]


def file_name(spec_path, index: int, count: int) -> str:
    return f"{Path(spec_path).stem}.shard-{index}-of-{count}{SUFFIX}"


def shard_bytes(spec, positions, results, index, count, overrides, only) -> bytes:
    """What a shard keeps of one spec file: its results, keyed by experiment position, and how they were made."""
    data = {"format": FORMAT, "spec_sha256": spec.sha256, "shard": (index, count),
            "overrides": dict(overrides or {}), "only": only, "results": list(zip(positions, results))}
    return pickle.dumps(data, protocol=4)


class _ResultsUnpickler(pickle.Unpickler):
    """Builds gradrun's own records, numpy arrays and scalars, and nothing else."""

    NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
             ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
             ("numpy._core.multiarray", "scalar"), ("numpy", "float64"), ("numpy", "float32"),
             ("numpy", "bool_"), ("numpy", "int64")}

    def find_class(self, module, name):
        if (module, name) in self.NUMPY or (module.startswith("numpy.dtypes") and name.endswith("DType")):
            return super().find_class(module, name)
        if module.startswith("gradrun.") and name[:1].isupper() and name.isidentifier():
            found = super().find_class(module, name)
            # A class gradrun defines there: not one a module imported (ProcessPoolExecutor, Path),
            # nor one reached by walking attributes ("Record.__class__" is type).
            if isinstance(found, type) and found.__module__ == module and not issubclass(found, BaseException):
                return found
        raise pickle.UnpicklingError(f"a shard file may not hold {module}.{name}")


def read(path) -> dict:
    try:
        data = _ResultsUnpickler(io.BytesIO(Path(path).read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ShardError(f"{path}: not a gradrun shard file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not _well_formed(data):
        raise ShardError(f"{path}: not a shard file of this gradrun version")
    return data


def _well_formed(data: dict) -> bool:
    """Shard I of N (1 <= I <= N) holding (experiment position, ExperimentResult) pairs."""
    shard, results = data.get("shard"), data.get("results")
    return (isinstance(shard, tuple) and len(shard) == 2 and all(type(n) is int for n in shard)
            and 1 <= shard[0] <= shard[1] and isinstance(results, list)
            and all(isinstance(r, tuple) and len(r) == 2 and type(r[0]) is int and isinstance(r[1], ExperimentResult)
                    for r in results))


def gather(spec, positions, folders, overrides, only) -> list:
    """The results of ``positions`` of ``spec``, in order, from the shard files in ``folders``."""
    pattern = f"{Path(spec.path).stem}.shard-*-of-*{SUFFIX}"
    files = sorted({f for folder in folders for f in Path(folder).glob(pattern) if _NAME.search(f.name)})
    if not files:
        raise ShardError(f"no shard file of {spec.path} ({pattern}) in {', '.join(map(str, folders))}")
    found, counts = {}, set()
    for file in files:
        data = read(file)
        _belongs(file, data, spec, overrides, only)
        index, count = data["shard"]
        counts.add(count)
        if index in found:
            raise ShardError(f"shard {index}/{count} of {spec.path} appears twice: {found[index][0]} and {file}")
        found[index] = (file, dict(data["results"]))
    if len(counts) > 1:
        raise ShardError(f"the shard files of {spec.path} come from runs cut differently: N = {sorted(counts)}")
    count = counts.pop()
    if len(found) < count:  # each index is within 1..count: named the first few missing, not all N
        missing = list(itertools.islice((i for i in range(1, count + 1) if i not in found), MISSING_NAMED))
        more = count - len(found) - len(missing)
        raise ShardError(f"{spec.path}: shard {', '.join(map(str, missing))}{f' and {more} more' if more else ''} "
                         f"of {count} is missing; give every shard's folder with --merge")
    merged = {k: result for _, results in found.values() for k, result in results.items()}
    lost = [spec.experiments[k].name for k in positions if k not in merged]
    if lost:
        raise ShardError(f"no shard of {spec.path} holds {', '.join(lost)}; run the shards again")
    return [merged[k] for k in positions]


def _belongs(file, data, spec, overrides, only) -> None:
    if data["spec_sha256"] != spec.sha256:
        raise ShardError(f"{file} was made from another version of {spec.path}; run that shard again")
    if data["overrides"] != dict(overrides or {}) or data["only"] != only:
        raise ShardError(f"{file} was run with other options ({_options(data['overrides'], data['only'])}); "
                         "merge with the options the shards were run with")


def _options(overrides, only) -> str:
    words = [f"--{k} {v}" for k, v in overrides.items()] + ([f"--only {only}"] if only else [])
    return " ".join(words) or "none"
