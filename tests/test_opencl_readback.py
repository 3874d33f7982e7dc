"""An OpenCL training step reads back only the loss."""

from __future__ import annotations

import numpy as np
import pytest
from opencl_support import import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph import optim
from lightnet_graph.models import load_model

cl = import_pyopencl()


def test_training_step_reads_back_only_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model("char-lstm", dtype="float32", batch=3, hidden=8, seq_len=4)
    program = lg.compile(loss=model.loss, optimizer=optim.Adam(1e-3, clip_norm=5.0),
                         backend=opencl_backend())
    feeds = model.make_feeds(np.random.default_rng(0))
    program.run(feeds)  # the first step uploads parameters and states

    read_back: list[int] = []
    written: list[int] = []
    real_copy = cl.enqueue_copy
    real_map = cl.enqueue_map_buffer

    def counting_copy(queue, dest, src, **kwargs):
        if isinstance(dest, np.ndarray) and isinstance(src, cl.MemoryObjectHolder):
            read_back.append(dest.nbytes)
        elif isinstance(src, np.ndarray):
            written.append(src.nbytes)
        return real_copy(queue, dest, src, **kwargs)

    def counting_map(queue, buffer, flags, offset, shape, dtype, **kwargs):
        read_back.append(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return real_map(queue, buffer, flags, offset, shape, dtype, **kwargs)

    monkeypatch.setattr(cl, "enqueue_copy", counting_copy)
    monkeypatch.setattr(cl, "enqueue_map_buffer", counting_map)
    values = program.run(feeds)

    assert list(values) == ["loss"]
    assert sum(read_back) == values["loss"].nbytes == 4
    assert written, "the step's inputs were expected to be uploaded"
