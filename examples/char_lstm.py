"""Train a character-level LSTM on the Python documentation and sample from it.

This is what `lightnet-graph train char-lstm` runs, written out with the
library's pieces: the corpus and its batches, a model whose recurrent state
carries from one window to the next, a training step compiled with its
optimizer, and a sampler compiled for one character at a time.

    python examples/char_lstm.py [--steps 100] [--backend numpy]
"""

from __future__ import annotations

import argparse
import math
import time

import lightnet_graph as lg
from lightnet_graph import optim
from lightnet_graph.data import CharBatches, Vocabulary, default_corpus, split_text
from lightnet_graph.jobs import Sampler, declare_char_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    parser.add_argument("--backend", default="numpy", help="numpy or opencl (default numpy)")
    args = parser.parse_args()

    train_text, valid_text = split_text(default_corpus())
    vocab = Vocabulary.from_text(train_text)
    batch, seq_len = 32, 64
    train = CharBatches(vocab.encode(train_text), batch, seq_len)
    valid = CharBatches(vocab.encode(valid_text), batch, seq_len)
    print(f"{len(train_text):,} training characters, vocabulary {len(vocab)}")

    # The training step: loss, gradients and the Adam update in one program.
    _, loss, _ = declare_char_model("lstm", len(vocab), args.hidden, batch, seq_len,
                                    "float32", seed=0)
    step = lg.compile(loss=loss, optimizer=optim.Adam(2e-3, clip_norm=5.0),
                      backend=args.backend)
    # A forward-only program with the same parameter names, for validation.
    _, valid_loss, _ = declare_char_model("lstm", len(vocab), args.hidden, batch, seq_len,
                                          "float32", seed=0)
    evaluate = lg.compile({"loss": valid_loss}, backend=args.backend)

    started = time.perf_counter()
    for index in range(args.steps):
        tokens, targets = train.window(index)
        value = float(step.run(tokens=tokens, targets=targets)["loss"])
        if (index + 1) % 25 == 0:
            print(f"step {index + 1}: training loss {value:.3f}")
    print(f"{args.steps} steps in {time.perf_counter() - started:.1f} s")

    evaluate.set_parameters(step.get_parameters())
    total = 0.0
    for index in range(len(valid)):
        tokens, targets = valid.window(index)
        total += float(evaluate.run(tokens=tokens, targets=targets)["loss"])
    nats = total / len(valid)
    print(f"validation loss {nats:.3f} nats, {nats / math.log(2):.3f} bits per character")

    sampler = Sampler("lstm", vocab, args.hidden, backend=args.backend)
    sampler.load(step.get_parameters())
    print(sampler.sample(200, temperature=0.8, prime="The "))


if __name__ == "__main__":
    main()
