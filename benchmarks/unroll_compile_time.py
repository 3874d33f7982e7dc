"""Time the unroll pass and the whole compile of an LSTM as T grows.

The model is the built-in char-lstm (hidden 256, batch 32, vocabulary 65,
float32): forward and backward, compiled for the NumPy backend. The unroll
pass is timed on its own, on a copy of the declared graph, and compile()
is timed from the declared graph to the executable. Both should grow
linearly in T, so the T=1024/T=256 ratio should be close to 4.

    python benchmarks/unroll_compile_time.py [--lengths 16 64 256 1024] [--profile T]

``--profile T`` prints the slowest functions of one compile at that T.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import lightnet_graph as lg
from lightnet_graph.models_recurrent import char_lstm
from lightnet_graph.passes.unroll import unroll


def measure(steps: int) -> tuple[float, float, int]:
    """Return (unroll seconds, compile seconds, nodes after unrolling) at T = steps."""
    model = char_lstm(hidden=256, batch=32, seq_len=steps)
    graph = model.graph.copy()
    start = time.perf_counter()
    unroll(graph)
    unroll_seconds = time.perf_counter() - start
    start = time.perf_counter()
    lg.compile(loss=model.loss, backend="numpy")
    compile_seconds = time.perf_counter() - start
    return unroll_seconds, compile_seconds, graph.nx.number_of_nodes()


def profile(steps: int) -> None:
    model = char_lstm(hidden=256, batch=32, seq_len=steps)
    profiler = cProfile.Profile()
    profiler.enable()
    lg.compile(loss=model.loss, backend="numpy")
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=[16, 64, 256, 1024],
        help="sequence lengths T to time (default 16 64 256 1024)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="T",
        help="profile one compile at this T instead of timing",
    )
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return

    print("LSTM char model, hidden 256, batch 32, vocab 65, float32, NumPy backend")
    print(
        f"{'T':>6}  {'nodes':>8}  {'unroll s':>9}  {'compile s':>10}  {'compile ms/step':>15}"
    )
    times = {}
    for steps in args.lengths:
        unroll_seconds, compile_seconds, nodes = measure(steps)
        times[steps] = (unroll_seconds, compile_seconds)
        print(
            f"{steps:>6}  {nodes:>8}  {unroll_seconds:>9.3f}  {compile_seconds:>10.3f}  "
            f"{1000 * compile_seconds / steps:>15.2f}"
        )
    if 256 in times and 1024 in times:
        unroll_ratio = times[1024][0] / times[256][0]
        compile_ratio = times[1024][1] / times[256][1]
        print(
            f"T=1024/T=256: unroll {unroll_ratio:.2f}x, compile {compile_ratio:.2f}x "
            "(linear is 4x)"
        )


if __name__ == "__main__":
    main()
