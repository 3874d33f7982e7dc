"""Building OpenCL programs once: in memory per process, on disk across processes.

A model's distinct kernels are built as one program, because drivers
such as PoCL link their kernel library into every program they build: the
char-LSTM training step's 20 kernels build in 0.7 s as one program on PoCL
3.1 (2-core AMD EPYC). A built program's binary is stored
under the cache directory, keyed by a hash of the source, the build
options and the device, platform and driver versions. A second process
that compiles the same model therefore loads binaries and compiles
nothing from source. PoCL's programs are not stored by default, because
PoCL keeps a cache of its own and exporting a binary costs it more than
the build. Files are written to a temporary name and renamed
into place, so processes sharing the directory never read a partial
binary.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .device import import_pyopencl
from .errors import KernelBuildError
from .kernels.common import KernelSource, program_source

logger = logging.getLogger(__name__)

CACHE_ENV = "LIGHTNET_CACHE_DIR"
POCL_PLATFORM = "Portable Computing Language"

#: Counts of programs built from source, loaded from disk and found in memory.
BUILD_COUNTS = {"source": 0, "disk": 0, "memory": 0}


def default_cache_dir() -> Path:
    """$LIGHTNET_CACHE_DIR, else the user's cache folder, with "opencl" appended."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        try:
            import platformdirs

            root = platformdirs.user_cache_dir("lightnet-graph")
        except ImportError:
            root = os.path.join(os.path.expanduser("~"), ".cache", "lightnet-graph")
    return Path(root) / "opencl"


class ProgramCache:
    """Builds programs for one context and device, reusing earlier builds."""

    def __init__(
        self,
        context: Any,
        device: Any,
        directory: Path | None = None,
        options: str = "",
        store_binaries: bool | None = None,
    ) -> None:
        self.cl = import_pyopencl()
        if store_binaries is None:
            # Asked for a binary, PoCL compiles every kernel for any
            # work-group size: 5.8 s for the char-LSTM step's 20 kernels,
            # against 0.7 s to build them. PoCL also caches its own builds
            # by source in POCL_CACHE_DIR, where a second process finds the
            # program in about 0.04 s.
            store_binaries = device.platform.name != POCL_PLATFORM
        self.store_binaries = store_binaries
        self.context = context
        self.device = device
        self.directory = directory if directory is not None else default_cache_dir()
        self.options = options
        self._built: dict[str, Any] = {}
        self._device_key = "\n".join(
            [
                device.name,
                device.vendor,
                device.version,
                device.driver_version,
                device.platform.name,
                device.platform.version,
            ]
        )

    def key(self, source: str) -> str:
        text = "\n".join([source, self.options, self._device_key])
        return hashlib.sha256(text.encode()).hexdigest()

    def build_programs(self, kernels: Sequence[KernelSource]) -> dict[str, Any]:
        """Build ``kernels`` as one program; return it under each kernel's name.

        When that program fails to build, each kernel is built alone: the
        first that fails raises its own error, naming the kernel and its
        offending lines. If every kernel builds alone, the program failed
        for a reason that no single kernel has (two different helpers of one
        name, or a driver's limit on program size), and the separate
        programs are used.
        """
        if not kernels:
            return {}
        source = program_source(kernels)
        try:
            program = self.build(f"program of {len(kernels)} kernels", source)
        except KernelBuildError as error:
            programs = {
                kernel.name: self.build(kernel.name, kernel.source)
                for kernel in kernels
            }
            logger.warning(
                "one program of %d kernels failed to build, so each kernel was "
                "built as its own program: %s",
                len(kernels),
                error,
            )
            return programs
        return dict.fromkeys((kernel.name for kernel in kernels), program)

    def build(self, name: str, source: str) -> Any:
        """Return the built program of ``source``; errors call it ``name``."""
        key = self.key(source)
        program = self._built.get(key)
        if program is not None:
            BUILD_COUNTS["memory"] += 1
            return program
        path = self.directory / f"{key}.bin"
        program = self._load(path)
        if program is None:
            program = self._build_source(name, source)
            if self.store_binaries:
                self._store(path, program)
        self._built[key] = program
        return program

    def _load(self, path: Path) -> Any:
        try:
            binary = path.read_bytes()
        except OSError:
            return None
        cl = self.cl
        try:
            program = cl.Program(self.context, [self.device], [binary]).build(
                self.options
            )
        except (cl.LogicError, cl.RuntimeError) as error:
            # A binary from another driver build, or a damaged file: rebuild it.
            logger.warning("ignoring cached OpenCL binary %s: %s", path, error)
            return None
        BUILD_COUNTS["disk"] += 1
        return program

    def _build_source(self, name: str, source: str) -> Any:
        cl = self.cl
        program = cl.Program(self.context, source)
        try:
            program.build(self.options)
        except (cl.LogicError, cl.RuntimeError) as error:
            log = _build_log(program, self.device) or str(error)
            lines = _offending_lines(source, log)
            if lines:
                advice = (
                    "This is a bug in lightnet-graph's code generation; please report "
                    "it with this message."
                )
            else:
                advice = (
                    "The log names no line of the kernel, so the OpenCL compiler may be "
                    "unable to build for this device at all; choose another device with "
                    "LIGHTNET_OPENCL_DEVICE or device=."
                )
            raise KernelBuildError(
                f"OpenCL kernel {name} failed to build on {self.device.name.strip()!r}.\n"
                f"Build log:\n{log.strip()}\n{lines}{advice}"
            ) from None
        BUILD_COUNTS["source"] += 1
        logger.debug("built OpenCL kernel %s from source", name)
        return program

    def _store(self, path: Path, program: Any) -> None:
        cl = self.cl
        try:
            (binary,) = program.get_info(cl.program_info.BINARIES)
        except (cl.LogicError, cl.RuntimeError, ValueError) as error:
            logger.debug("no binary to cache for %s: %s", path.name, error)
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                dir=self.directory, prefix=".tmp-", suffix=".bin"
            )
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(binary)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as error:
            logger.warning(
                "cannot write the OpenCL program cache %s: %s", self.directory, error
            )


def _build_log(program: Any, device: Any) -> str:
    cl = import_pyopencl()
    try:
        return program.get_build_info(device, cl.program_build_info.LOG)
    except (cl.LogicError, cl.RuntimeError, AttributeError):
        return ""


def _offending_lines(source: str, log: str) -> str:
    """Return the source lines that the build log names, numbered, with a caret."""
    lines = source.splitlines()
    shown = []
    # Clang-based compilers (PoCL, most GPU drivers) write FILE:LINE:COLUMN
    # before or after the word "error".
    for text in log.splitlines():
        if "error" not in text.lower():
            continue
        match = re.search(r":(\d+):(\d+):", text)
        if match is None:
            continue
        number, column = int(match.group(1)), int(match.group(2))
        if 1 <= number <= len(lines) and number not in [n for n, _ in shown]:
            shown.append((number, column))
    if not shown:
        return ""
    text = ["Offending source lines:"]
    for number, column in shown:
        text.append(f"{number:5d} | {lines[number - 1]}")
        text.append("      | " + " " * (column - 1) + "^")
    return "\n".join(text) + "\n"
