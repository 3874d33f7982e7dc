"""The ``lightnet-graph`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from .errors import LightnetError


def positive_int(text: str) -> int:
    """Parse a command-line count that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """Parse a command-line value that must be greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a built-in model name or path/to/file.py:function")
    parser.add_argument("--batch", type=positive_int, help="batch size (the model's default if omitted)")
    parser.add_argument("--hidden", type=positive_int, help="hidden size (the model's default if omitted)")
    parser.add_argument("--seq-len", type=positive_int, help="sequence length T of recurrent models")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")


def _parser() -> argparse.ArgumentParser:
    from .inspect import FORMATS, STAGES
    from .models import MODELS

    parser = argparse.ArgumentParser(
        prog="lightnet-graph",
        description="A dataflow-graph compiler for neural networks.",
        epilog=f"built-in models: {', '.join(sorted(MODELS))}",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log compiler passes")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser(
        "gradcheck",
        help="compare compiled gradients with central finite differences",
        description="Compare each parameter's compiled gradient with central finite "
        "differences on a random sample of its entries; exit 1 above the tolerance.",
    )
    _add_model_options(check)
    check.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                       help="dtype of the model (default float64)")
    check.add_argument("--samples", type=positive_int, default=16,
                       help="entries checked per parameter (default 16)")
    check.add_argument("--rtol", type=positive_float,
                       help="relative tolerance (default 1e-6 in float64, 2e-2 in float32)")
    check.add_argument("--backend", default="numpy", help="backend to check (default numpy)")
    check.add_argument("--check-numerics", action="store_true",
                       help="name the first op that produces NaN or Inf (slower)")
    check.add_argument("--device", help="OpenCL device: PLATFORM:DEVICE indices or part of its name "
                       "(sets LIGHTNET_OPENCL_DEVICE)")
    check.set_defaults(handler=_gradcheck)

    compare = commands.add_parser(
        "compare",
        help="compare one training step's loss and gradients across backends",
        description="Run one training step's loss and gradients on each backend, "
        "compare each value with the first backend's per tensor "
        "(||a - b||_2 <= rtol * ||b||_2 + atol * sqrt(n)) and exit 1 above the "
        "tolerance: rtol 1e-4 and atol 1e-6 in float32, 1e-10 and 1e-9 in float64.",
    )
    _add_model_options(compare)
    compare.add_argument("--backends", default="numpy,opencl",
                         help="comma-separated backends; the first is the reference "
                         "(default numpy,opencl)")
    compare.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                         help="dtype of the model (default float32)")
    compare.add_argument("--device", help="OpenCL device: PLATFORM:DEVICE indices or part of its name "
                       "(sets LIGHTNET_OPENCL_DEVICE)")
    compare.set_defaults(handler=_compare)

    inspect = commands.add_parser(
        "inspect",
        help="show what the compiler made for a model's training step",
        description="Compile a model's training step (loss and gradients) and show "
        "one stage of the pipeline: the graph as declared, unrolled, with its "
        "backward pass or optimized; the generated kernels; the memory plan; or "
        "a profile of a few runs. --out writes every stage into a folder.",
    )
    _add_model_options(inspect)
    inspect.add_argument("--backend", default="numpy",
                         help="numpy, opencl or auto (default numpy)")
    inspect.add_argument("--stage", choices=STAGES,
                         help="the stage to print (default: optimized; with --out, none unless given)")
    inspect.add_argument("--format", default="text", choices=FORMATS,
                         help="text, dot (graph stages only) or json (default text)")
    inspect.add_argument("--out", metavar="DIR",
                         help="write every stage, the generated source and graph.svg into DIR")
    inspect.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                         help="dtype of the model (default float32)")
    inspect.add_argument("--repeat", type=positive_int, default=5,
                         help="timed runs of the profile stage (default 5)")
    inspect.add_argument("--device", help="OpenCL device: PLATFORM:DEVICE indices or part of "
                         "its name (sets LIGHTNET_OPENCL_DEVICE)")
    inspect.set_defaults(handler=_inspect)

    train = commands.add_parser(
        "train",
        help="train a built-in job",
        description="Train a built-in job, evaluating and checkpointing as it goes.",
    )
    train.add_argument("job", help="the job to train: char-lstm, char-gru, char-rnn, "
                       "skip-rnn or mlp-digits")
    train.add_argument("--seq-len", type=positive_int, help="sequence length T of character jobs "
                       "(default 64)")
    train.add_argument("--data", help="a UTF-8 text file for character jobs (default: the "
                       "Python documentation text in pydoc_data.topics)")
    train.add_argument("--steps", type=positive_int, help="training steps (the job's default if omitted)")
    train.add_argument("--batch", type=positive_int, help="batch size (the job's default if omitted)")
    train.add_argument("--hidden", type=positive_int, help="hidden size (the job's default if omitted)")
    train.add_argument("--lr", type=positive_float, help="learning rate (the job's default if omitted)")
    train.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                       help="dtype of the model (default float32)")
    train.add_argument("--backend", default="numpy",
                       help="numpy, opencl or auto (an OpenCL GPU if present; default numpy)")
    train.add_argument("--eval-every", type=positive_int,
                       help="evaluate every N steps (default: 10 times per run)")
    train.add_argument("--checkpoint-dir", help="folder for checkpoint.npz")
    train.add_argument("--checkpoint-every", type=int, default=0,
                       help="write a checkpoint every N steps and at the end (default: only at "
                       "the end, when --checkpoint-dir is given)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in --checkpoint-dir")
    train.add_argument("--plot", help="draw the loss curves to this PNG file (needs matplotlib)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--check-numerics", action="store_true",
                       help="name the first op that produces NaN or Inf (slower)")
    train.add_argument("--device", help="OpenCL device: PLATFORM:DEVICE indices or part of its name "
                       "(sets LIGHTNET_OPENCL_DEVICE)")
    train.set_defaults(handler=_train)

    sample = commands.add_parser(
        "sample",
        help="generate text from a character-model checkpoint",
        description="Generate text from a checkpoint of a character job (char-lstm, "
        "char-gru, char-rnn, skip-rnn), running a step compiled for T = 1.",
    )
    sample.add_argument("checkpoint", help="a checkpoint.npz written by lightnet-graph train")
    sample.add_argument("--length", type=int, default=500,
                        help="characters to generate (default 500)")
    sample.add_argument("--temperature", type=positive_float, default=1.0,
                        help="softmax temperature; lower is more conservative (default 1.0)")
    sample.add_argument("--prime", default="\n", help="text fed before sampling (default a newline)")
    sample.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    sample.add_argument("--backend", default="numpy", help="numpy, opencl or auto (default numpy)")
    sample.add_argument("--device", help="OpenCL device: PLATFORM:DEVICE indices or part of its name "
                       "(sets LIGHTNET_OPENCL_DEVICE)")
    sample.set_defaults(handler=_sample)
    return parser


def _inspect(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from .compiler import compile
    from .inspect import stage_dot, stage_json, stage_text, write_stages
    from .models import load_model

    model = load_model(args.model, dtype=args.dtype, batch=args.batch, hidden=args.hidden,
                       seq_len=args.seq_len, seed=args.seed)
    program = compile(loss=model.loss, backend=args.backend)
    feeds = model.make_feeds(np.random.default_rng(args.seed))
    if args.out:
        written = write_stages(program, args.out, feeds=feeds, repeat=args.repeat)
        for path in written.files:
            print(f"wrote {path}")
        for note in written.notes:
            print(note)
        if args.stage is None:
            return 0
    stage = args.stage or "optimized"
    if args.format == "dot":
        print(stage_dot(program, stage), end="")
    elif args.format == "json":
        document = stage_json(program, stage, feeds=feeds, repeat=args.repeat)
        print(json.dumps(document, indent=1))
    else:
        print(stage_text(program, stage, feeds=feeds, repeat=args.repeat), end="")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError, describe_difference, read_checkpoint
    from .data import Vocabulary
    from .jobs import Sampler

    if args.length < 0:
        raise LightnetError(f"--length {args.length} must not be negative")
    header, arrays = read_checkpoint(args.checkpoint)
    settings = header.get("metadata", {}).get("settings", {})
    if "vocab" not in settings or "kind" not in settings:
        raise CheckpointError(
            f"checkpoint {args.checkpoint!r} is not from a character job; sample needs one "
            "written by lightnet-graph train char-lstm (or char-gru, char-rnn, skip-rnn)"
        )
    sampler = Sampler(settings["kind"], Vocabulary(settings["vocab"]), settings["hidden"],
                      settings.get("dtype", "float32"), args.backend)
    parameters = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    expected = {k: ["parameter", list(v.shape), v.dtype.name]
                for k, v in sampler.program.parameters.items()}
    found = {k: ["parameter", list(v.shape), v.dtype.name] for k, v in parameters.items()}
    if found != expected:
        raise CheckpointError(
            f"checkpoint {args.checkpoint!r} does not fit its own model settings: "
            f"{describe_difference(found, expected)}"
        )
    sampler.load(parameters)
    print(sampler.sample(args.length, args.temperature, args.prime, args.seed))
    return 0


def _train(args: argparse.Namespace) -> int:
    from .jobs import JOBS
    from .train import Trainer, plot_history

    if args.job not in JOBS:
        raise LightnetError(f"unknown job {args.job!r}; built-in jobs are: {', '.join(sorted(JOBS))}")
    job_class = JOBS[args.job]
    job = job_class(backend=args.backend, dtype=args.dtype, batch=args.batch,
                    hidden=args.hidden, lr=args.lr, seed=args.seed, seq_len=args.seq_len,
                    data=args.data)
    job.program.check_numerics = args.check_numerics
    steps = args.steps or job_class.default_steps
    for line in job.describe():
        print(line)
    eval_every = args.eval_every or max(steps // 10, 1)
    checkpoint_every = args.checkpoint_every or (steps if args.checkpoint_dir else 0)

    def report(step: int, metrics: dict[str, float]) -> None:
        values = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
        print(f"step {step}: {values}", flush=True)

    trainer = Trainer(job, steps, eval_every=eval_every, checkpoint_dir=args.checkpoint_dir,
                      checkpoint_every=checkpoint_every, progress=not args.no_progress,
                      on_evaluation=report)
    if args.resume:
        trainer.resume()
    history = trainer.run()
    if history.losses:
        print(f"trained steps {trainer.start_step + 1}-{steps} in {history.seconds:.1f} s; "
              f"last training loss {history.losses[-1]:.4f}")
    if args.plot:
        plot_history(history, args.plot, args.job)
        print(f"wrote {args.plot}")
    for line in job.finish():
        print(line)
    return 0


# Per dtype: (rtol, atol) of `compare`, the per-tensor norm convention.
COMPARE_TOLERANCES = {"float32": (1e-4, 1e-6), "float64": (1e-10, 1e-9)}


def _compare(args: argparse.Namespace) -> int:
    import numpy as np

    from .compiler import compile
    from .gradcheck import compare
    from .models import load_model

    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if len(backends) < 2:
        raise LightnetError(
            f"--backends {args.backends!r} names {len(backends)} backend; give at least "
            "two, separated by commas, such as numpy,opencl"
        )
    model = load_model(args.model, dtype=args.dtype, batch=args.batch, hidden=args.hidden,
                       seq_len=args.seq_len, seed=args.seed)
    feeds = model.make_feeds(np.random.default_rng(args.seed))
    results = {name: compile(loss=model.loss, backend=name).run(feeds) for name in backends}
    rtol, atol = COMPARE_TOLERANCES[args.dtype]
    reference = results[backends[0]]
    print(f"compare {args.model}: {args.dtype}, reference {backends[0]}, rtol {rtol:g}, "
          f"atol {atol:g}")
    print("per tensor: ||a - b||_2 <= rtol * ||b||_2 + atol * sqrt(n), b the reference")
    width = max([len("value")] + [len(name) for name in reference])
    backend_width = max(len("backend"), *(len(name) for name in backends[1:]))
    print(f"{'value':<{width}}  {'backend':<{backend_width}}  {'||a - b||_2':>11}  "
          f"{'||b||_2':>10}  {'rel. diff':>10}  status")
    failed = 0
    for name in backends[1:]:
        for value, expected in reference.items():
            actual = results[name][value]
            diff = float(np.linalg.norm(np.asarray(actual, np.float64) - expected))
            scale = float(np.linalg.norm(np.asarray(expected, np.float64)))
            error, passed = compare(actual, expected, rtol, atol)
            failed += not passed
            status = "ok" if passed else "FAILED"
            print(f"{value:<{width}}  {name:<{backend_width}}  {diff:>11.3e}  {scale:>10.3e}  "
                  f"{error:>10.2e}  {status}")
    verdict = "passed" if not failed else f"FAILED ({failed} above the tolerance)"
    others = len(backends) - 1
    print(f"{len(reference)} values, {others} backend{'s' if others > 1 else ''} "
          f"against {backends[0]}: {verdict}")
    return 0 if not failed else 1


def _gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import gradcheck
    from .models import load_model

    model = load_model(args.model, dtype=args.dtype, batch=args.batch, hidden=args.hidden,
                       seq_len=args.seq_len, seed=args.seed)
    report = gradcheck(model, samples=args.samples, seed=args.seed, rtol=args.rtol,
                       backend=args.backend, check_numerics=args.check_numerics)
    print(f"gradcheck {args.model}: {args.dtype}, {args.samples} samples per parameter, "
          f"rtol {report.rtol:g}")
    width = max([len("parameter")] + [len(c.name) for c in report.parameters])
    print(f"{'parameter':<{width}}  {'shape':<14}  {'rel. error':>10}  status")
    for check in report.parameters:
        status = "ok" if check.passed else "FAILED"
        print(f"{check.name:<{width}}  {str(check.shape):<14}  {check.error:>10.2e}  {status}")
    for check in report.ops:
        if not check.passed:
            where = f" declared at {check.location}" if check.location else ""
            print(f"gradient rule of op {check.op!r} (value {check.name!r}{where}) "
                  f"disagrees with finite differences: rel. error {check.error:.2e}")
    verdict = "passed" if report.passed else "FAILED"
    print(f"max rel. error {report.max_error:.2e}: {verdict}")
    return 0 if report.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "device", None):
        os.environ["LIGHTNET_OPENCL_DEVICE"] = args.device
    try:
        return args.handler(args)
    except LightnetError as error:
        print(f"lightnet-graph: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
