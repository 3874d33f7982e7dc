"""compile(): the pipeline from a declared graph to an Executable.

Each step is a named pass; the name is the stage that
``lightnet-graph inspect --stage`` shows after it.
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import GraphError, UnknownBackendError
from .executable import Executable
from .graph import Graph, Tensor
from .passes.autodiff import grad
from .passes.batch_steps import batch_steps
from .passes.simplify import simplify
from .passes.unroll import unroll
from .passes.verify import verify

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lightnet_graph.backends"

# Backends that ship with the package, used when entry points are not
# installed (running from a source tree without `pip install`).
_BUILTIN_BACKENDS = {
    "numpy": "lightnet_graph.backends.numpy:NumpyBackend",
    "opencl": "lightnet_graph.backends.opencl:OpenCLBackend",
}


def compile(  # noqa: A001 - the name users expect
    outputs: Tensor | Sequence[Tensor] | Mapping[str, Tensor] | None = None,
    *,
    loss: Tensor | None = None,
    wrt: Sequence[Tensor | str] | None = None,
    backend: str = "numpy",
    optimize: bool = True,
    optimizer: Any = None,
    return_gradients: bool | None = None,
    check_numerics: bool = False,
) -> Executable:
    """Compile a graph into a program that computes ``outputs``.

    With ``loss``, the program also returns ``"loss"`` and, for every value
    in ``wrt`` (all parameters by default), its gradient as ``"grad/NAME"``.
    ``wrt`` takes Tensors and value names. Names are looked up after the
    recurrences are unrolled: ``"lstm.h@3"`` is the state that step 3 of the
    recurrence named ``lstm`` produces, and its gradient is ``"grad/lstm.h@3"``.
    With an ``optimizer`` (see :mod:`lightnet_graph.optim`) each run also
    updates the parameters in ``wrt``, and gradients are returned only when
    ``return_gradients`` is true. With ``check_numerics`` every run also
    evaluates the graph op by op, slowly, and raises NumericsError naming
    the first op that produced NaN or Inf and the line that declared it.
    """
    with _cyclic_gc_paused():
        return _compile(
            outputs,
            loss,
            wrt,
            backend,
            optimize,
            optimizer,
            return_gradients,
            check_numerics,
        )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Turn Python's cyclic garbage collector off for the block, then restore it.

    Compiling allocates several objects per node and frees few, so the
    collector's full passes rescan a heap that only grows. With the
    collector on, an LSTM at T = 1024 compiled in 7.2 s instead of 5.0 s
    (benchmarks/run.py's compile row, 2-core AMD EPYC), and the time grew
    faster than T. Reference counting still frees acyclic garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile(
    outputs: Any,
    loss: Tensor | None,
    wrt: Sequence[Tensor | str] | None,
    backend: str | Any,
    optimize: bool,
    optimizer: Any,
    return_gradients: bool | None,
    check_numerics: bool,
) -> Executable:
    named = _named_outputs(outputs)
    if loss is not None:
        if "loss" in named:
            raise GraphError("an output is already named 'loss'; rename it or drop loss=")
        named = {"loss": loss, **named}
    if not named:
        raise GraphError("compile: nothing to compute; pass outputs or loss=")
    source = _common_graph(named.values())
    graph = source.copy()
    nodes = {name: t.node for name, t in named.items()}
    stages = {"declared": source.copy()}

    # verify, unroll, then one product for every step's input projection
    verify(graph, nodes)
    replaced = unroll(graph)
    nodes = {name: replaced.get(node, node) for name, node in nodes.items()}
    if optimize:
        batch_steps(graph, _pinned(graph, nodes, wrt))
    stages["unrolled"] = graph.copy()

    # autodiff
    if loss is not None:
        targets = _gradient_targets(source, graph, wrt, replaced)
        gradients = grad(graph.tensor(nodes["loss"]), list(targets.values()))
        if return_gradients or (return_gradients is None and optimizer is None):
            for target, gradient in zip(targets, gradients, strict=True):
                nodes[f"grad/{target}"] = gradient.node
        if optimizer is not None:
            pairs = list(zip(targets.values(), gradients, strict=True))
            optimizer.apply(graph, pairs)
    elif optimizer is not None:
        raise GraphError("compile: an optimizer needs loss=, the value to minimize")
    stages["backward"] = graph.copy()

    # simplify
    if optimize:
        nodes = simplify(graph, nodes)
    stages["optimized"] = graph.copy()

    # backend lowering
    executable = load_backend(backend).lower(graph, nodes, stages)
    executable.check_numerics = check_numerics
    return executable


def load_backend(name: str | Any) -> Any:
    """Instantiate the backend registered under ``name``; pass backend objects through.

    "auto" is the OpenCL backend on the first OpenCL GPU when one exists and
    NumPy otherwise: CPU OpenCL devices such as PoCL run only when asked
    for by name.
    """
    if not isinstance(name, str):
        if not callable(getattr(name, "lower", None)):
            raise UnknownBackendError(
                f"backend {name!r} is neither a name nor an object with a lower() method"
            )
        return name
    if name == "auto":
        opencl = _backend_class("opencl")
        if opencl is not None and opencl.gpu_available():
            return opencl(gpu_only=True)
        name = "numpy"
    backend = _backend_class(name)
    if backend is not None:
        return backend()
    entry_points = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    known = sorted(entry_points | set(_BUILTIN_BACKENDS) | {"auto"})
    raise UnknownBackendError(
        f"unknown backend {name!r}; installed backends are: {', '.join(known)}"
    )


def _backend_class(name: str) -> Any:
    """The backend class registered as ``name``, or None; imported only when asked for."""
    entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if name in entry_points:
        return entry_points[name].load()
    if name in _BUILTIN_BACKENDS:
        module_name, _, attr = _BUILTIN_BACKENDS[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
    return None


def _gradient_targets(source: Graph, graph: Graph, wrt: Sequence[Tensor | str] | None,
                      replaced: Mapping[int, int]) -> dict[str, Tensor]:
    """Map each ``wrt`` entry's name to its value in the unrolled ``graph``."""
    targets: dict[str, Tensor] = {}
    for target in source.parameters if wrt is None else wrt:
        if isinstance(target, str):
            if target not in graph:
                raise GraphError(
                    f"compile: wrt names {target!r}, which is not a value of graph "
                    f"{graph.name!r} after unrolling. Unrolled states are named "
                    "RECURRENCE.STATE@t, for t from 0 to T - 1"
                )
            targets[target] = graph[target]
        else:
            source.check_owned(target)
            targets[target.name] = graph.tensor(replaced.get(target.node, target.node))
    return targets


def _pinned(graph: Graph, nodes: Mapping[str, int], wrt: Any) -> set[int]:
    """Return the nodes a pass must keep: outputs, state updates and named wrt values."""
    pinned = set(nodes.values()) | set(graph.updates.values())
    for target in wrt or ():
        if isinstance(target, str) and target in graph:
            pinned.add(graph[target].node)
    return pinned


def _named_outputs(outputs: Any) -> dict[str, Tensor]:
    if outputs is None:
        return {}
    if isinstance(outputs, Tensor):
        return {outputs.name: outputs}
    if isinstance(outputs, Mapping):
        return dict(outputs)
    named: dict[str, Tensor] = {}
    for tensor in outputs:
        if tensor.name in named:
            raise GraphError(f"two outputs are named {tensor.name!r}; pass a dict of names")
        named[tensor.name] = tensor
    return named


def _common_graph(tensors: Any) -> Graph:
    tensors = list(tensors)
    for tensor in tensors:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"outputs must be Tensors, got {type(tensor).__name__}")
    graph = tensors[0].graph
    for tensor in tensors[1:]:
        graph.check_owned(tensor)
    return graph
