"""Inspect what the compiler made, stage by stage.

Stages, in pipeline order: ``declared`` (the graph as the model declared
it), ``unrolled`` (after verify and unroll), ``backward`` (after autodiff),
``optimized`` (after simplify), ``kernels`` (the generated code),
``memory`` (the buffer plan) and ``profile`` (timed runs). Each view is a
function of a compiled program::

    program = lg.compile(loss=loss, backend="opencl")
    print(stage_text(program, "optimized"))
    print(stage_text(program, "kernels"))
    document = stage_json(program, "memory")
    write_stages(program, "out/", feeds=feeds)

``lightnet-graph inspect MODEL --stage STAGE --format text|dot|json`` prints
the same views for a built-in model's training step.

JSON structure
--------------
Every document is an object with these keys::

    format    "lightnet-graph-inspect"
    version   1
    stage     the stage name
    graph     the graph's name
    backend   "numpy", "opencl" or another backend's name

Graph stages (declared, unrolled, backward, optimized) add::

    values        every value in topological order, each an object:
                  id (int, the node id), name (str, unique in the graph),
                  kind ("input", "parameter", "state", "constant" or "op"),
                  op (the op's name, or null for other kinds),
                  attrs (object: attribute name -> repr() text; {} for leaves),
                  shape (list of int), dtype (str),
                  inputs (list of value names, in operand order),
                  location ("file.py:LINE" of the declaring user code, or null),
                  section (str, the heading the text view lists it under),
                  step (int t for a value unrolled from step t, else null)
    outputs       object: output name -> value name (only outputs whose value
                  exists at this stage)
    updates       object: state or parameter name -> name of its new value
    recurrences   the folded step graphs of the recurrence values (declared
                  stage only; [] afterwards), each an object: name (str),
                  T (int), inputs (placeholder names: x_t, the states, the
                  parameters), values (value objects as above, without
                  section and step), returns (object: state name or "y" ->
                  value name)

``kernels`` adds::

    device            the device the program was planned for, or null
    launches_per_run  int: the kernel launches of one run
    kernels           each distinct kernel once, in order of first launch:
                      name, launches (int, per run), launch_sizes (list of
                      objects global (list of int), local (list of int or
                      null: chosen by the driver), launches (int); empty on
                      NumPy, whose one kernel is the generated module run on
                      the host), nodes (names of the values it computes),
                      source (str)

``memory`` adds::

    peak_bytes                int: bytes of all buffers, with reuse
    peak_bytes_without_reuse  int: bytes if no buffer were shared
    buffers                   objects: name, shape (list of int, of the
                              largest value it holds), dtype, nbytes (int),
                              values (names of the values it holds)

``profile`` adds::

    runs       int: timed runs, after one warm-up run
    timing     what was timed (OpenCL profiling events per kernel, or the
               wall clock per generated NumPy statement, summed per op)
    estimates  a sentence saying how FLOPs and bytes are estimated
    total_s    float: seconds per run
    rows       slowest first, objects: name (kernel or op), launches (int,
               per run), total_s (float, over all runs), mean_s (float, per
               launch), flops (int, per run, estimated), bytes (int, per
               run, estimated), gflops_per_s, gb_per_s (floats from the
               estimates)
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LightnetError
from .executable import Executable
from .inspect_graph import StageGraph, graph_dot, graph_json, graph_text
from .inspect_profile import ProfileReport, profile_program
from .inspect_program import (
    ProgramListing,
    kernels_cl,
    kernels_json,
    kernels_text,
    memory_json,
    memory_text,
    program_listing,
    schedule_json,
)

logger = logging.getLogger(__name__)

GRAPH_STAGES = ("declared", "unrolled", "backward", "optimized")
STAGES = (*GRAPH_STAGES, "kernels", "memory", "profile")
FORMATS = ("text", "dot", "json")
FORMAT_NAME = "lightnet-graph-inspect"
FORMAT_VERSION = 1
DEFAULT_REPEAT = 5
GRAPHVIZ_INSTALL = "apt-get install graphviz"

__all__ = [
    "FORMATS",
    "GRAPH_STAGES",
    "STAGES",
    "ProfileReport",
    "ProgramListing",
    "kernels_cl",
    "profile_program",
    "program_listing",
    "render_svg",
    "schedule_json",
    "source_files",
    "stage_dot",
    "stage_json",
    "stage_text",
    "write_stages",
]


def stage_graph(program: Executable, stage: str) -> StageGraph:
    """Return a graph stage of ``program`` with its outputs marked."""
    _check_stage(stage, GRAPH_STAGES)
    if stage not in program.stages:
        raise LightnetError(
            f"the program has no {stage!r} stage; its stages are "
            f"{', '.join(program.stages)}"
        )
    graph = program.stages[stage]
    unrolled = program.stages.get("unrolled")
    added_after = stage in ("backward", "optimized") and unrolled is not None
    return StageGraph(
        stage,
        graph,
        {name: node for name, node in program.outputs.items() if node in graph.nx},
        frozenset(unrolled.nx) if added_after else None,
    )


def stage_text(
    program: Executable,
    stage: str,
    *,
    feeds: Mapping[str, Any] | None = None,
    repeat: int = DEFAULT_REPEAT,
) -> str:
    """Return one stage of ``program`` as text; ``profile`` runs it on ``feeds``."""
    _check_stage(stage, STAGES)
    if stage in GRAPH_STAGES:
        return graph_text(stage_graph(program, stage))
    if stage == "kernels":
        return kernels_text(program_listing(program))
    if stage == "memory":
        return memory_text(
            program.memory_plan(), program.graph.name, program.backend_name
        )
    return _profile(program, feeds, repeat).text()


def stage_json(
    program: Executable,
    stage: str,
    *,
    feeds: Mapping[str, Any] | None = None,
    repeat: int = DEFAULT_REPEAT,
) -> dict[str, Any]:
    """Return one stage of ``program`` as the JSON-ready object described above."""
    _check_stage(stage, STAGES)
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "stage": stage,
        "graph": program.graph.name,
        "backend": program.backend_name,
    }
    if stage in GRAPH_STAGES:
        document.update(graph_json(stage_graph(program, stage)))
    elif stage == "kernels":
        document.update(kernels_json(program_listing(program)))
    elif stage == "memory":
        document.update(memory_json(program.memory_plan()))
    else:
        document.update(_profile(program, feeds, repeat).json())
    return document


def stage_dot(program: Executable, stage: str) -> str:
    """Return a graph stage as DOT text (networkx's writer, through pydot)."""
    _check_stage(stage, GRAPH_STAGES, "--format dot shows graph stages only")
    return graph_dot(stage_graph(program, stage))


def source_files(program: Executable) -> dict[str, str]:
    """Return the generated source as files: name -> text.

    NumPy: ``program.py``. OpenCL: ``kernels.cl`` (every distinct kernel,
    buildable on its own) and ``schedule.json`` (the host schedule). Other
    backends: ``source.txt`` with ``program.source``.
    """
    if program.backend_name == "numpy":
        return {"program.py": program.source}
    if hasattr(program, "host_schedule"):
        listing = program_listing(program)
        return {
            "kernels.cl": kernels_cl(listing),
            "schedule.json": schedule_json(listing),
        }
    return {"source.txt": program.source}


@dataclass
class WrittenStages:
    """Paths of the files that :func:`write_stages` wrote, and why others are missing."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_stages(
    program: Executable,
    directory: str | Path,
    *,
    feeds: Mapping[str, Any] | None = None,
    repeat: int = DEFAULT_REPEAT,
) -> WrittenStages:
    """Write every stage of ``program`` into ``directory``.

    Writes the generated source (see :func:`source_files`), then per graph
    stage STAGE.txt, STAGE.dot and STAGE.json, then kernels.txt,
    kernels.json, memory.txt and memory.json, profile.txt and profile.json
    when ``feeds`` are given, and graph.svg of the optimized stage when
    Graphviz's ``dot`` program is installed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = WrittenStages()

    def save(name: str, text: str) -> None:
        path = directory / name
        path.write_text(text, encoding="utf-8")
        logger.debug("wrote %s", path)
        written.files.append(path)

    for name, text in source_files(program).items():
        save(name, text)
    for stage in GRAPH_STAGES:
        if stage not in program.stages:
            continue
        save(f"{stage}.txt", stage_text(program, stage))
        save(f"{stage}.dot", stage_dot(program, stage))
        save(f"{stage}.json", _dumps(stage_json(program, stage)))
    stages = ["kernels", "memory"] + (["profile"] if feeds is not None else [])
    for stage in stages:
        save(f"{stage}.txt", stage_text(program, stage, feeds=feeds, repeat=repeat))
        document = stage_json(program, stage, feeds=feeds, repeat=repeat)
        save(f"{stage}.json", _dumps(document))
    if feeds is None:
        written.notes.append("profile not written: it needs feeds to run the program")

    svg = directory / "graph.svg"
    if "optimized" in program.stages:
        note = render_svg(stage_dot(program, "optimized"), svg)
    else:
        note = f"{svg.name} not written: the program has no optimized stage"
    if note is None:
        written.files.append(svg)
    else:
        written.notes.append(note)
    return written


def render_svg(dot_text: str, path: Path) -> str | None:
    """Render DOT text to an SVG file with Graphviz; return why not, or None."""
    program = shutil.which("dot")
    if program is None:
        return (
            f"{path.name} not written: Graphviz's dot program was not found on PATH; "
            f"install it with `{GRAPHVIZ_INSTALL}` (or your system's package manager)"
        )
    try:
        result = subprocess.run(
            [program, "-Tsvg", "-o", str(path)],
            input=dot_text,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return f"{path.name} not written: dot timed out after 120 s"
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        return f"{path.name} not written: dot failed: {result.stderr.strip()}"
    return None


def _profile(
    program: Executable, feeds: Mapping[str, Any] | None, repeat: int
) -> ProfileReport:
    if feeds is None:
        raise LightnetError(
            "the profile stage runs the program, so it needs feeds: a value for "
            f"every input ({', '.join(program.input_types) or 'none'})"
        )
    return profile_program(program, feeds, repeat)


def _check_stage(stage: str, allowed: tuple[str, ...], limit: str = "") -> None:
    if stage not in allowed:
        reason = f" ({limit})" if limit else ""
        raise LightnetError(
            f"stage {stage!r} is invalid{reason}; use one of: {', '.join(allowed)}"
        )


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"
