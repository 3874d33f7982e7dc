"""Every row of README's troubleshooting table, reproduced.

Each case provokes one bad input and returns the message a user sees. The
message must contain the row's excerpt and no traceback, and the README
table must list exactly these rows, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph.checkpoint import load_checkpoint, save_checkpoint
from lightnet_graph.cli import main
from lightnet_graph.errors import LightnetError
from lightnet_graph.models import load_model

README = Path(__file__).resolve().parent.parent / "README.md"


def _error(action: Callable[[], object]) -> str:
    """Run ``action`` and return the message of the LightnetError it raises."""
    try:
        action()
    except LightnetError as error:
        return str(error)
    raise AssertionError("no error was raised")


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    return capsys.readouterr().err


def _graph() -> lg.Graph:
    return lg.Graph("model", dtype="float64")


def _program() -> lg.Executable:
    g = _graph()
    x = g.input("x", (2, 3))
    w = g.parameter("w", (3,), init=1.0)
    return lg.compile(lg.sum(x * w))


def _mlp_program(hidden: int = 4) -> lg.Executable:
    model = load_model("mlp", dtype="float64", batch=2, hidden=hidden)
    return lg.compile(loss=model.loss)


def shape_mismatch(tmp_path, capsys):
    g = _graph()
    return _error(lambda: lg.matmul(g.input("a", (3, 4)), g.input("b", (5, 2))))


def no_broadcast(tmp_path, capsys):
    g = _graph()
    return _error(lambda: g.input("a", (3, 4)) + g.input("b", (5,)))


def mixed_dtypes(tmp_path, capsys):
    g = _graph()
    return _error(lambda: g.input("a", (2,), "float32") * g.input("b", (2,), "float64"))


def float_labels(tmp_path, capsys):
    g = _graph()
    return _error(lambda: lg.softmax_cross_entropy(g.input("z", (2, 3)), g.input("y", (2,))))


def labels_out_of_range(tmp_path, capsys):
    g = _graph()
    loss = lg.softmax_cross_entropy(g.input("z", (2, 3)), g.input("y", (2,), "int64"))
    program = lg.compile(loss)
    return _error(lambda: program.run(z=np.zeros((2, 3)), y=np.array([0, 3])))


def unbound_input(tmp_path, capsys):
    return _error(lambda: _program().run())


def wrong_input_shape(tmp_path, capsys):
    return _error(lambda: _program().run(x=np.ones((3, 2))))


def wrong_input_dtype(tmp_path, capsys):
    g = _graph()
    program = lg.compile(lg.one_hot(g.input("y", (2,), "int64"), 3))
    return _error(lambda: program.run(y=np.array([0.5, 1.0])))


def unknown_input(tmp_path, capsys):
    return _error(lambda: _program().run(x=np.ones((2, 3)), z=1))


def cycle(tmp_path, capsys):
    g = _graph()
    x = g.input("x", (2,))
    a = lg.tanh(x)
    b = lg.exp(a)
    g.nx.add_edge(b.node, a.node, key=1)
    return _error(lambda: lg.compile(b))


def unknown_op(tmp_path, capsys):
    return _error(lambda: lg.get_op("conv2d"))


def unknown_backend(tmp_path, capsys):
    g = _graph()
    return _error(lambda: lg.compile(lg.sum(g.input("x", (2,))), backend="cuda"))


def mixed_graphs(tmp_path, capsys):
    return _error(lambda: _graph().input("x", (2,)) + lg.Graph("other").input("y", (2,)))


def duplicate_name(tmp_path, capsys):
    g = _graph()
    g.parameter("w", (2,))
    return _error(lambda: g.parameter("w", (2,)))


def grad_of_vector(tmp_path, capsys):
    g = _graph()
    x = g.input("x", (2,))
    return _error(lambda: lg.grad(lg.tanh(x), [x]))


def zero_steps(tmp_path, capsys):
    g = _graph()
    xs = g.input("xs", (0, 2, 3))
    return _error(lambda: lg.cells.lstm(xs, 4))


def wrong_parameter_shape(tmp_path, capsys):
    return _error(lambda: _program().set_parameters({"w": np.ones(4)}))


def nan_op(tmp_path, capsys):
    g = _graph()
    x = g.input("x", (2,))
    program = lg.compile(lg.sum(lg.log(x)), check_numerics=True)
    return _error(lambda: program.run(x=np.array([1.0, -1.0])))


def empty_batch(tmp_path, capsys):
    return _cli(["train", "char-lstm", "--batch", "0"], capsys)


def bad_learning_rate(tmp_path, capsys):
    return _cli(["train", "mlp-digits", "--lr", "-1"], capsys)


def unknown_model(tmp_path, capsys):
    return _cli(["gradcheck", "resnet"], capsys)


def missing_model_file(tmp_path, capsys):
    return _cli(["gradcheck", str(tmp_path / "absent.py") + ":build"], capsys)


def unknown_job(tmp_path, capsys):
    return _cli(["train", "imagenet"], capsys)


def missing_data_file(tmp_path, capsys):
    return _cli(["train", "char-lstm", "--data", str(tmp_path / "absent.txt")], capsys)


def empty_data_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    return _cli(["train", "char-lstm", "--data", str(tmp_path / "empty.txt")], capsys)


def binary_data_file(tmp_path, capsys):
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return _cli(["train", "char-lstm", "--data", str(tmp_path / "image.txt")], capsys)


def latin1_data_file(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("café crème ".encode("latin-1") * 100)
    return _cli(["train", "char-lstm", "--data", str(tmp_path / "latin1.txt")], capsys)


def short_data_file(tmp_path, capsys):
    (tmp_path / "short.txt").write_text("tiny text")
    return _cli(["train", "char-lstm", "--data", str(tmp_path / "short.txt")], capsys)


def resume_without_folder(tmp_path, capsys):
    return _cli(["train", "mlp-digits", "--resume"], capsys)


def truncated_checkpoint(tmp_path, capsys):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _mlp_program())
    path.write_bytes(path.read_bytes()[:100])
    return _error(lambda: load_checkpoint(path, _mlp_program()))


def foreign_checkpoint(tmp_path, capsys):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.ones(2))
    return _error(lambda: load_checkpoint(path, _mlp_program()))


def other_model_checkpoint(tmp_path, capsys):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _mlp_program(hidden=4))
    return _error(lambda: load_checkpoint(path, _mlp_program(hidden=5)))


def tampered_checkpoint(tmp_path, capsys):
    path = tmp_path / "checkpoint.npz"
    program = _mlp_program()
    save_checkpoint(path, program)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["param/fc1.bias"] = arrays["param/fc1.bias"] + 1.0
    np.savez(path, **arrays)
    return _error(lambda: load_checkpoint(path, program))


def sample_from_digits_checkpoint(tmp_path, capsys):
    main(["train", "mlp-digits", "--steps", "2", "--no-progress",
          "--checkpoint-dir", str(tmp_path)])
    capsys.readouterr()
    return _cli(["sample", str(tmp_path / "checkpoint.npz")], capsys)


#: README row -> (case, excerpt of the message)
CASES: dict[str, tuple[Callable, str]] = {
    "Operand shapes that do not fit an op": (shape_mismatch, "matmul: shapes (3, 4) and (5, 2) do not match"),
    "Shapes that do not broadcast": (no_broadcast, "do not broadcast"),
    "Operands of different float dtypes": (mixed_dtypes, "have different dtypes; cast one"),
    "Float labels for cross-entropy": (float_labels, "labels have dtype float64; use int32 or int64"),
    "A label outside the classes": (labels_out_of_range, "label 3 at index (1,) is out of range for 3 classes"),
    "An input left out of run()": (unbound_input, "input 'x' (float64[2, 3]) was given no value"),
    "An input of the wrong shape": (wrong_input_shape, "input 'x' has shape (3, 2), expected (2, 3)"),
    "Floats fed to an integer input": (wrong_input_dtype, "input 'y' has dtype float64, expected int64"),
    "A value that is not an input": (unknown_input, "'z' is not an input of 'model'"),
    "A graph with a cycle": (cycle, "graph 'model' has a cycle"),
    "An op name that is not registered": (unknown_op, "unknown op 'conv2d'; registered ops are"),
    "A backend that is not installed": (unknown_backend, "unknown backend 'cuda'; installed backends are"),
    "Values from two graphs in one op": (mixed_graphs, "operands come from different graphs"),
    "Two values with one name": (duplicate_name, "already has a value named 'w'"),
    "The gradient of a non-scalar": (grad_of_vector, "reduce it to a scalar"),
    "A recurrence over T = 0 steps": (zero_steps, "so there are no time steps; its axis 0 is time and needs T >= 1"),
    "Weights of the wrong shape": (wrong_parameter_shape, "parameter 'w' has shape (4,), expected (3,)"),
    "An op that makes NaN (--check-numerics)": (nan_op, "log 'log', declared at"),
    "An empty batch": (empty_batch, "argument --batch: 0 must be at least 1"),
    "A learning rate of 0 or less": (bad_learning_rate, "argument --lr: -1.0 must be greater than 0"),
    "A model name that is not built in": (unknown_model, "unknown model 'resnet'"),
    "A model file that does not exist": (missing_model_file, "absent.py' not found"),
    "A job name that is not built in": (unknown_job, "unknown job 'imagenet'; built-in jobs are"),
    "A data file that does not exist": (missing_data_file, "absent.txt' not found"),
    "An empty data file": (empty_data_file, "empty.txt' is empty"),
    "A binary data file": (binary_data_file, "image.txt' looks binary"),
    "A data file that is not UTF-8": (latin1_data_file, "latin1.txt' is not UTF-8 text"),
    "A text shorter than one batch": (short_data_file, "fewer than one batch of 32 x 64"),
    "--resume without --checkpoint-dir": (resume_without_folder, "--resume needs --checkpoint-dir"),
    "A truncated checkpoint": (truncated_checkpoint, "checkpoint.npz' is truncated or corrupt"),
    "An .npz file that is not a checkpoint": (foreign_checkpoint, "is not a lightnet-graph checkpoint"),
    "A checkpoint of another model": (other_model_checkpoint, "belongs to another model: 'fc1.bias' is float64[4] there but float64[5] here"),
    "A checkpoint changed after writing": (tampered_checkpoint, "does not match its SHA-256 digest"),
    "Sampling from a checkpoint of a non-text job": (sample_from_digits_checkpoint, "is not from a character job"),
}


@pytest.mark.parametrize("row", list(CASES))
def test_bad_input_gives_one_clear_message(row: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    case, excerpt = CASES[row]
    message = case(tmp_path, capsys)
    assert excerpt in message, message
    assert "Traceback" not in message


def _readme_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and line.startswith("|") and not set(cells[0]) <= {"-", " "}:
            rows[cells[0]] = cells[1]
    rows.pop("Input", None)
    return rows


def test_readme_table_lists_every_case() -> None:
    rows = _readme_rows()
    assert len(rows) >= 30
    assert set(rows) == set(CASES)
    for row, (_, excerpt) in CASES.items():
        shown = re.sub(r"`", "", rows[row])
        assert excerpt in shown, f"{row}: README shows {shown!r}, the test expects {excerpt!r}"
