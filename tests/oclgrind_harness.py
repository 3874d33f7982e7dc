"""Running workloads on Oclgrind, a simulated OpenCL device that checks kernels.

Oclgrind interprets every work-item and reports out-of-bounds accesses
always, data races with OCLGRIND_DATA_RACES=1 and reads of uninitialized
memory with OCLGRIND_UNINITIALIZED=1. pyopencl's ICD loader reads
OCL_ICD_VENDORS when it first lists platforms, so each workload runs in a
subprocess (``oclgrind_workloads.py``) whose environment points that
variable at a folder holding ``oclgrind.icd``. Oclgrind writes its
diagnostics to the file named by OCLGRIND_LOG, and this module reads them
back, one diagnostic per message, with the kernel each one names.

Oclgrind checks bounds against whole device buffers, and the memory plan
may place a value in a larger buffer that an earlier value freed. An
access past the value's end that stays inside its buffer therefore shows
up only as a difference from NumPy, and only when it changes a value that
is read back. For the same reason, a read of an element that the current
value never wrote counts as uninitialized only where no earlier value in
that buffer wrote it.

The tests skip when Oclgrind is not installed, and fail instead when the
environment sets LIGHTNET_REQUIRE_OCLGRIND=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_ENV = "LIGHTNET_REQUIRE_OCLGRIND"
ICD_LIBRARY = "liboclgrind-rt-icd.so"
INSTALL = "apt-get install oclgrind"
WORKER = Path(__file__).with_name("oclgrind_workloads.py")
# Oclgrind interprets kernels, so one training step of a small model takes
# seconds to tens of seconds. This limit only stops a hung subprocess.
TIMEOUT_S = 600
# NOTE: Oclgrind 21.10 as Debian 12 builds it (on LLVM 14) cannot check
# optimized code for uninitialized reads. The check stops with "Unsupported
# instruction: freeze", which clang emits where a kernel takes the quotient
# and the remainder of the same operands. It also crashes (SIGSEGV) on a
# shufflevector with undefined mask lanes, which clang emits for the
# blocked matmul's horizontal sums (acc.s0 + acc.s1 + acc.s2 + acc.s3).
# Oclgrind adds these options to every build, so kernels are checked
# unoptimized.
BUILD_OPTIONS = "-cl-opt-disable"
# Each subprocess holds up to about 0.5 GB (measured for char-gru with the
# tiled matmul on Oclgrind 21.10), so at most this many run at once,
# however many CPUs there are.
MAX_WORKERS = 8


def find_icd_library() -> Path | None:
    """Return Oclgrind's ICD library, found beside the ``oclgrind`` command."""
    command = shutil.which("oclgrind")
    if command is None:
        return None
    prefix = Path(command).resolve().parent.parent
    # Debian installs the library in lib/oclgrind/, a source build in lib/.
    candidates = [
        prefix / "lib" / "oclgrind" / ICD_LIBRARY,
        prefix / "lib" / ICD_LIBRARY,
    ]
    candidates += sorted(prefix.glob(f"lib/*/{ICD_LIBRARY}"))
    return next((path for path in candidates if path.is_file()), None)


def require_oclgrind() -> Path:
    """Return Oclgrind's ICD library, or skip the test without it (fail if required)."""
    reason = None
    try:
        import pyopencl  # noqa: F401
    except ImportError:
        reason = "pyopencl is not installed; pip install 'lightnet-graph[opencl]'"
    library = find_icd_library()
    if reason is None and library is None:
        reason = f"Oclgrind is not installed ({INSTALL})"
    if reason is None:
        return library
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Diagnostic:
    """One message from Oclgrind's log and the kernel it names."""

    kernel: str
    message: str

    @property
    def summary(self) -> str:
        return self.message.splitlines()[0]

    @property
    def kind(self) -> str:
        """The summary without its address, the same for every element of a value."""
        return re.sub(r" address 0x[0-9a-fA-F]+", "", self.summary)


def parse_log(text: str) -> list[Diagnostic]:
    """Split Oclgrind's log into messages.

    A message starts with an unindented line ("Invalid write of size 4 at
    global memory address ...") and continues with tab-indented lines, one
    of which is "Kernel: NAME". Messages without a kernel (API errors and
    Oclgrind's fatal errors) are kept with the kernel "(none)".
    """
    messages: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("\t") and messages:
            messages[-1].append(line)
        elif line.strip():
            messages.append([line])
    diagnostics = []
    for lines in messages:
        message = "\n".join(lines).rstrip()
        match = re.search(r"^\tKernel: (\S+)", message, re.MULTILINE)
        diagnostics.append(Diagnostic(match.group(1) if match else "(none)", message))
    return diagnostics


@dataclass
class Result:
    """The exit status, result and Oclgrind diagnostics of one workload's subprocess."""

    workload: dict
    returncode: int
    stderr: str
    platform: str = ""
    kernels: dict[str, list[str]] = field(default_factory=dict)
    comparisons: list[dict] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def run_on_oclgrind(workload: dict, directory: Path) -> Result:
    """Run ``workload`` in a subprocess on Oclgrind with every check turned on.

    ``directory`` receives the vendors folder, the log, the program cache
    and the result.
    """
    library = require_oclgrind()
    vendors = directory / "vendors"
    vendors.mkdir(parents=True, exist_ok=True)
    (vendors / "oclgrind.icd").write_text(f"{library}\n")
    log = directory / "oclgrind.log"
    spec = directory / "workload.json"
    output = directory / "result.json"
    spec.write_text(json.dumps(workload))
    environment = dict(os.environ)
    environment.pop("LIGHTNET_OPENCL_DEVICE", None)
    environment.update(
        OCL_ICD_VENDORS=str(vendors),
        OCLGRIND_LOG=str(log),
        OCLGRIND_DATA_RACES="1",
        OCLGRIND_UNINITIALIZED="1",
        # Build every kernel from source so that OCLGRIND_BUILD_OPTIONS
        # applies, because neither cache's key contains it.
        LIGHTNET_CACHE_DIR=str(directory / "cache"),
        PYOPENCL_NO_CACHE="1",
        # One interpreter thread each, because OclgrindRunner runs one
        # subprocess per CPU.
        OCLGRIND_NUM_THREADS="1",
        OCLGRIND_BUILD_OPTIONS=BUILD_OPTIONS,
    )
    completed = subprocess.run(
        [sys.executable, str(WORKER), str(spec), str(output)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    result = Result(workload, completed.returncode, completed.stderr)
    if output.is_file():
        values = json.loads(output.read_text())
        result.platform = values["platform"]
        result.kernels = values["kernels"]
        result.comparisons = values["comparisons"]
    if log.is_file():
        result.diagnostics = parse_log(log.read_text(errors="replace"))
    return result


class OclgrindRunner:
    """Runs workloads on Oclgrind, one subprocess per CPU up to MAX_WORKERS.

    Submitting every workload first lets them run in parallel while the
    tests wait for theirs one by one.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if hasattr(os, "sched_getaffinity"):
            cpus = len(os.sched_getaffinity(0))
        else:
            cpus = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(min(cpus, MAX_WORKERS))
        self._futures: dict[str, Future] = {}

    def submit(self, workload: dict) -> None:
        key = json.dumps(workload, sort_keys=True)
        if key not in self._futures:
            folder = self.directory / f"workload-{len(self._futures)}"
            self._futures[key] = self._pool.submit(run_on_oclgrind, workload, folder)

    def result(self, workload: dict) -> Result:
        self.submit(workload)
        return self._futures[json.dumps(workload, sort_keys=True)].result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def describe(workload: dict) -> str:
    """Return the workload's "label" if it has one, else the workload itself."""
    return workload.get("label", str(workload))


def _exit_problem(result: Result) -> str | None:
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        return f"was killed by {name}, so Oclgrind crashed or ran out of memory"
    if result.returncode > 0:
        return f"exited with status {result.returncode}"
    return None


def assert_finished(result: Result) -> None:
    """Fail when the subprocess did not finish the workload on Oclgrind."""
    problem = _exit_problem(result)
    assert problem is None, (
        f"the Oclgrind subprocess for {describe(result.workload)} {problem}; "
        "its stderr ends:\n" + result.stderr[-3000:]
    )
    assert result.platform == "Oclgrind", f"the workload ran on {result.platform!r}"


def assert_clean(result: Result) -> None:
    """Fail with Oclgrind's messages, grouped by kernel, if it reported any."""
    if not result.diagnostics:
        assert_finished(result)
        return
    by_kernel: dict[str, list[Diagnostic]] = {}
    for diagnostic in result.diagnostics:
        by_kernel.setdefault(diagnostic.kernel, []).append(diagnostic)
    lines = [
        f"Oclgrind reported {len(result.diagnostics)} diagnostics in "
        f"{len(by_kernel)} kernels for {describe(result.workload)}:"
    ]
    for kernel, found in by_kernel.items():
        nodes = result.kernels.get(kernel, [])
        computes = f" (computes {', '.join(nodes[:6])})" if nodes else ""
        kinds = sorted({diagnostic.kind for diagnostic in found})
        lines.append(f"\nkernel {kernel}{computes}: {len(found)} x {'; '.join(kinds)}")
        lines.append(found[0].message)
    problem = _exit_problem(result)
    if problem is not None:
        lines.append(f"\nThen the subprocess {problem}.")
    raise AssertionError("\n".join(lines))


def assert_matches_numpy(result: Result) -> None:
    """Fail if any value read back from Oclgrind differs from NumPy's."""
    assert_finished(result)
    assert result.comparisons, f"{describe(result.workload)} compared no values"
    failed = [entry for entry in result.comparisons if not entry["passed"]]
    assert not failed, (
        f"values of {describe(result.workload)} that differ from the NumPy backend:\n"
    ) + "\n".join(
        f"  {entry['value']}: relative error {entry['error']}"
        + (f" ({entry['detail']})" if "detail" in entry else "")
        for entry in failed
    )
