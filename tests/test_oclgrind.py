"""Every generated kernel runs clean on Oclgrind and matches the NumPy backend.

Oclgrind checks each access against its buffer, looks for data races and
for reads of uninitialized memory. One training step of every built-in
model and a sample of random graphs (from ``graph_strategies``) run on it
with both matrix-multiply variants, and two steps of each optimizer with
one. All run in float32, with sizes that include primes and sizes below
the work-group size, and two of the graphs have axes above it. Any
diagnostic fails the test with Oclgrind's message and the kernel it names,
and every value read back must match NumPy's to rtol 1e-4 and atol 1e-6
per tensor. Planted kernels with known bugs show that each check is on.

The workloads run in parallel subprocesses, one per CPU, all started when
the first test that needs one sets up. Run these tests alone with
``pytest -m oclgrind``.
"""

from __future__ import annotations

import base64
import pickle

import pytest
from graph_recipe import GraphRecipe, build_graph, draw_feeds, kink_margin
from graph_strategies import LARGE, graph_recipes
from hypothesis import given, settings
from oclgrind_harness import (
    REQUIRE_ENV,
    OclgrindRunner,
    assert_clean,
    assert_matches_numpy,
    parse_log,
    require_oclgrind,
    run_on_oclgrind,
)

pytestmark = pytest.mark.oclgrind

# Oclgrind's device reports every device type, GPU included, so the tiled
# variant is its default. Both variants are forced here.
VARIANTS = ("tiled", "blocked")

# Batch 3 and hidden 7 are primes below each work-group size that Oclgrind
# gets. The character models' vocabulary is 65, which leaves a partial tile.
MODELS = {
    "mlp": {"batch": 3, "hidden": 7, "features": 5, "classes": 3},
    "mlp-bn": {"batch": 3, "hidden": 7, "features": 5, "classes": 3},
    "char-rnn": {"batch": 3, "hidden": 7, "seq_len": 2},
    "skip-rnn": {"batch": 3, "hidden": 7, "seq_len": 3},
    "char-gru": {"batch": 3, "hidden": 7, "seq_len": 3},
    "char-lstm": {"batch": 3, "hidden": 7, "seq_len": 3},
}

OPTIMIZERS = {
    "sgd-momentum": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
    "adam": {"name": "Adam", "lr": 0.01},
    "rmsprop": {"name": "RMSProp", "lr": 0.01},
    "adagrad": {"name": "Adagrad", "lr": 0.1},
    # Clipping adds the reductions of the gradients' global norm.
    "adam-clipped": {"name": "Adam", "lr": 0.01, "clip_norm": 0.5},
}

# Values at least this far from a relu kink or a max tie, so that float32
# rounding on either backend cannot take a gradient down the other branch.
KINK_MARGIN = 1e-3


def draw_recipes(strategy, count: int, examples: int) -> list[GraphRecipe]:
    """Pick ``count`` random-graph recipes that together cover the most cases.

    Hypothesis draws ``examples`` recipes, the same ones on every run of a
    given Hypothesis version whichever profile is loaded, and this keeps
    those whose values avoid kinks.
    Each pick is the recipe that adds the most ops and features (see
    ``GraphRecipe.features``) not yet covered, because Hypothesis's first
    examples are its simplest.
    """
    drawn: list[GraphRecipe] = []

    @settings(max_examples=examples, derandomize=True, database=None)
    @given(recipe=strategy)
    def collect(recipe: GraphRecipe) -> None:
        feeds = draw_feeds(recipe, "float32")
        if kink_margin(build_graph(recipe, "float32"), feeds) >= KINK_MARGIN:
            drawn.append(recipe)

    collect()

    def cases(recipe: GraphRecipe) -> set[str]:
        return recipe.features() | {f"op: {op}" for op in recipe.ops()}

    picked: list[GraphRecipe] = []
    covered: set[str] = set()
    for _ in range(count):
        best = max(drawn, key=lambda recipe: len(cases(recipe) - covered))
        picked.append(best)
        covered |= cases(best)
    return picked


# Small recipes have sizes below the work-group sizes. Large ones have axes
# of 67 and 257, which take more than one work-group or loop pass.
RECIPES = {
    **{f"small{i}": r for i, r in enumerate(draw_recipes(graph_recipes(), 8, 200))},
    **{
        f"large{i}": r
        for i, r in enumerate(draw_recipes(graph_recipes(sizes=LARGE), 2, 50))
    },
}

MODEL_STEPS = {
    f"{model}-{variant}": {
        "kind": "model",
        "model": model,
        "sizes": sizes,
        "matmul": variant,
    }
    for model, sizes in MODELS.items()
    for variant in VARIANTS
}

# Two steps, so that the second reads the moments the first one wrote. The
# update kernels do not depend on the matmul variant, so the faster one
# runs the rest of the step.
OPTIMIZER_STEPS = {
    name: {
        "kind": "model",
        "model": "mlp",
        "sizes": MODELS["mlp"],
        "optimizer": optimizer,
        "steps": 2,
        "matmul": "blocked",
    }
    for name, optimizer in OPTIMIZERS.items()
}

RANDOM_GRAPHS = {
    f"{name}-{variant}": {
        "kind": "recipe",
        "recipe": base64.b64encode(pickle.dumps(recipe)).decode(),
        "matmul": variant,
        "label": f"random graph {name} with the {variant} matmul, {recipe!r}\n",
    }
    for name, recipe in RECIPES.items()
    for variant in VARIANTS
}


@pytest.fixture(scope="session")
def oclgrind(request, tmp_path_factory):
    """Start every selected test's workload on Oclgrind, one subprocess per CPU."""
    require_oclgrind()
    runner = OclgrindRunner(tmp_path_factory.mktemp("oclgrind"))
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not item.get_closest_marker("oclgrind"):
            continue
        if "workload" in callspec.params:
            runner.submit(callspec.params["workload"])
    yield runner
    runner.close()


@pytest.mark.parametrize("workload", MODEL_STEPS.values(), ids=MODEL_STEPS)
def test_model_step(workload: dict, oclgrind: OclgrindRunner):
    result = oclgrind.result(workload)
    assert_clean(result)
    assert_matches_numpy(result)


@pytest.mark.parametrize("workload", OPTIMIZER_STEPS.values(), ids=OPTIMIZER_STEPS)
def test_optimizer_update(workload: dict, oclgrind: OclgrindRunner):
    result = oclgrind.result(workload)
    assert_clean(result)
    assert_matches_numpy(result)


@pytest.mark.parametrize("workload", RANDOM_GRAPHS.values(), ids=RANDOM_GRAPHS)
def test_random_graph(workload: dict, oclgrind: OclgrindRunner):
    result = oclgrind.result(workload)
    assert_clean(result)
    assert_matches_numpy(result)


# Each planted kernel's bug, as Oclgrind reports it with every check on.
PLANTED = {
    "write_past_end": "Invalid write of size 4 at global memory",
    "write_race": "Write-write data race at global memory",
    "read_uninitialized": "Uninitialized value written to global memory",
}


def test_planted_bugs_are_reported(tmp_path):
    result = run_on_oclgrind({"kind": "planted"}, tmp_path)
    found: dict[str, set[str]] = {}
    for diagnostic in result.diagnostics:
        found.setdefault(diagnostic.kernel, set()).add(diagnostic.kind)
    assert found == {kernel: {kind} for kernel, kind in PLANTED.items()}
    with pytest.raises(AssertionError) as failure:
        assert_clean(result)
    for kernel, kind in PLANTED.items():
        assert f"kernel {kernel}: " in str(failure.value)
        assert kind in str(failure.value)
    assert "At line" in str(failure.value)


# Three messages as Oclgrind 21.10 writes them. A race report has lines of
# a single tab inside it.
LOG = (
    "\n"
    "Invalid write of size 4 at global memory address 0x200000000001c\n"
    "\tKernel: write_past_end\n"
    "\tEntity: Global(7,0,0) Local(7,0,0) Group(0,0,0)\n"
    "\tAt line 4 (column 24) of input.cl:\n"
    "\t  if (i <= n) out[i] = 1.0f;\n"
    "\t\n"
    "\n"
    "Write-write data race at global memory address 0x2000000000000\n"
    "\tKernel: race\n"
    "\t\n"
    "\tFirst entity:  Global(1,0,0) Local(1,0,0) Group(0,0,0)\n"
    "\t\n"
    "\tSecond entity: Global(0,0,0) Local(0,0,0) Group(0,0,0)\n"
    "\t\n"
    "\n"
    "OCLGRIND FATAL ERROR (./src/plugins/Uninitialized.cpp:1805)\n"
)


def test_log_splits_into_messages():
    diagnostics = parse_log(LOG)
    assert [d.kernel for d in diagnostics] == ["write_past_end", "race", "(none)"]
    assert diagnostics[0].kind == "Invalid write of size 4 at global memory"
    assert diagnostics[1].message.endswith(
        "Second entity: Global(0,0,0) Local(0,0,0) Group(0,0,0)"
    )


@pytest.mark.parametrize(
    ("required", "outcome"), [("1", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_missing_oclgrind_skips_unless_required(
    required, outcome, monkeypatch, tmp_path
):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(REQUIRE_ENV, required)
    with pytest.raises(outcome, match="Oclgrind is not installed"):
        require_oclgrind()
