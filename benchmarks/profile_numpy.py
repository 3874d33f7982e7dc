"""Time every statement of a generated NumPy training step and total the times.

    python benchmarks/profile_numpy.py {lstm,gru,mlp} [--quick] [--repeat N] [--top N]

Compiles the benchmark's training step (SGD included) for the NumPy
backend, rewrites the generated ``run`` function so that each statement
adds its own time to a counter, and prints the time by called function
(np.matmul, k.sigmoid, ...) and the slowest statements.
"""

from __future__ import annotations

import argparse
import ast
import collections
import re
import time

import numpy as np
import workloads


def statement_times(program, feeds: dict, repeat: int) -> list[tuple[str, float]]:
    """Return (statement source, mean seconds per run) for each statement of run()."""
    from lightnet_graph.ops import kernels

    source = program.source
    tree = ast.parse(source)
    run = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"
    )
    statements = [ast.get_source_segment(source, s) for s in run.body]
    timed = []
    for index, statement in enumerate(run.body):
        timed += ast.parse("_start = _clock()").body
        timed.append(statement)
        timed += ast.parse(f"_totals[{index}] += _clock() - _start").body
    run.body = timed
    ast.fix_missing_locations(tree)
    totals = [0.0] * len(statements)
    namespace = {"np": np, "k": kernels, "_clock": time.perf_counter, "_totals": totals}
    exec(compile(tree, "<profiled program>", "exec"), namespace)  # noqa: S102
    buffers = namespace["allocate"]()
    bound = program.bind_inputs(feeds)
    arguments = (
        bound,
        program.parameters,
        program.states,
        program.module.constants,
        buffers,
    )
    namespace["run"](*arguments)
    totals[:] = [0.0] * len(statements)
    for _ in range(repeat):
        namespace["run"](*arguments)
    return [(s, t / repeat) for s, t in zip(statements, totals, strict=True)]


def callee(statement: str) -> str:
    """The function a generated statement calls first, or "view" for indexing."""
    match = re.search(r"=\s*((?:np|k)\.\w+)", statement)
    if match:
        return match.group(1)
    return "view" if "[" in statement else "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("lstm", "gru", "mlp"))
    parser.add_argument("--quick", action="store_true", help="use the small sizes")
    parser.add_argument(
        "--repeat", type=int, default=5, help="profiled runs (default 5)"
    )
    parser.add_argument(
        "--top", type=int, default=15, help="slowest statements to list"
    )
    args = parser.parse_args()

    import lightnet_graph as lg

    workload = workloads.workloads(args.quick)[args.workload]
    _, loss = workloads.lightnet_model(workload)
    program = lg.compile(loss=loss, optimizer=lg.optim.SGD(workloads.LEARNING_RATE))
    times = statement_times(program, workload.feeds(), args.repeat)
    total = sum(t for _, t in times)

    by_callee: dict[str, list[float]] = collections.defaultdict(list)
    for statement, seconds in times:
        by_callee[callee(statement)].append(seconds)
    print(
        f"{workload.describe()}: {total * 1e3:.1f} ms per step in {len(times)} statements"
    )
    print(f"{'function':<26} {'calls':>6} {'ms':>9} {'share':>6}")
    for name, values in sorted(by_callee.items(), key=lambda item: -sum(item[1])):
        share = sum(values) / total
        print(f"{name:<26} {len(values):>6} {sum(values) * 1e3:>9.2f} {share:>6.1%}")
    print(f"\nslowest {args.top} statements:")
    for statement, seconds in sorted(times, key=lambda item: -item[1])[: args.top]:
        print(f"{seconds * 1e3:8.2f} ms  {' '.join(statement.split())[:140]}")


if __name__ == "__main__":
    main()
