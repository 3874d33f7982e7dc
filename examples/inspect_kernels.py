"""Print every distinct kernel of a character LSTM's training step.

The training step (loss and gradients) is compiled for OpenCL when a
device can build kernels, and for NumPy otherwise. Each kernel is printed
once under a header naming the graph nodes it computes, its launch sizes
and how many times one run launches it.

    python examples/inspect_kernels.py [--hidden 32] [--batch 4] [--seq-len 8]
"""

from __future__ import annotations

import argparse

import lightnet_graph as lg
from lightnet_graph.inspect import stage_text
from lightnet_graph.models import load_model


def compile_step(loss: lg.Tensor) -> lg.Executable:
    """Compile for OpenCL, or for NumPy with a message when OpenCL is unusable."""
    try:
        return lg.compile(loss=loss, backend="opencl")
    except lg.LightnetError as error:
        print(f"OpenCL is not usable here, so the kernels are NumPy's: {error}\n")
        return lg.compile(loss=loss, backend="numpy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hidden", type=int, default=32, help="hidden size (default 32)"
    )
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    parser.add_argument(
        "--seq-len", type=int, default=8, help="time steps T (default 8)"
    )
    args = parser.parse_args()

    model = load_model(
        "char-lstm", batch=args.batch, hidden=args.hidden, seq_len=args.seq_len
    )
    program = compile_step(model.loss)
    print(stage_text(program, "kernels"), end="")


if __name__ == "__main__":
    main()
