"""Feeds of text corpora (registry FEEDS, chosen by ``train.feed``): names, streams, windows.

Arrays are time-major int64 ``(T, B)``.  Input id -1 is the zero input vector (the course's
``None`` first input); target id -1 is ignored (padding, or positions with no target).
``Batch.reset`` tells the trainer to start from a zero hidden state before this batch.

Feeds:

- ``auto``: ``names`` for a dataset of lines, ``stream`` for continuous text.

- ``example``: the course's Dinosaurus loop -- one name per step, names shuffled once with
  ``RandomState(shuffle_seed).shuffle`` (as the course's ``np.random.seed(0)``), hidden state
  carried across names (reset only at step 0).
- ``names``: padded mini-batches of names, reshuffled every epoch, reset every batch.
- ``stream``: truncated BPTT over B parallel contiguous tracks, ``seq_len`` chunks, reset at every
  epoch start; with B=1 this is min-char-rnn's pointer walk.
- ``windows``: the course's Shakespeare ``build_data`` windows (length ``seq_len``, every
  ``stride`` chars), target only the char after the window (``"last"``) or every position
  (``"all"``); shuffled per epoch, reset every batch.

"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.data.corpora.text import KINDS as TEXT_KINDS
from framework.data.corpora.text import Corpus
from framework.data.feeds.base import (
    Batch,
    Feed,
    check_corpus,
    check_step,
    positive,
)
from framework.errors import ConfigError
from framework.registry import FEEDS

WINDOW_TARGETS = ("last", "all")


def pad_names(names: Sequence[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Course layout for each name: inputs ``[-1] + ids``, targets ``ids + [eos]``, padded with -1.

    Padding comes after each name's end, so (the model being causal, and padded targets ignored)
    it changes neither the loss nor the gradients of the real positions.
    """
    T = max(len(a) for a in names) + 1
    inputs = np.full((T, len(names)), -1, dtype=np.int64)
    targets = np.full((T, len(names)), -1, dtype=np.int64)
    for b, ids in enumerate(names):
        n = len(ids)
        inputs[1 : n + 1, b] = ids
        targets[:n, b] = ids
        targets[n, b] = eos_id
    return inputs, targets


def as_stream(corpus: Corpus, split: str) -> np.ndarray:
    """The train or val split as one id array; names are joined, each followed by its eos."""
    data = getattr(corpus, split)
    if corpus.kind == "stream":
        return np.asarray(data, dtype=np.int64)
    eos = np.array([corpus.vocab.eos_id], dtype=np.int64)
    if not data:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([part for ids in data for part in (ids, eos)])


def _check_run(batch_size: int, seq_len: int, seed: int) -> tuple[int, int]:
    """The batch shape and seed every feed is built with, checked."""
    shape = positive("train.batch_size", batch_size), positive("train.seq_len", seq_len)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0 for the feeds, got {seed}")
    return shape


def _needs_text(corpus: Corpus, feed: str) -> None:
    check_corpus(feed, corpus, TEXT_KINDS, "choose a text dataset")


def _needs_lines(corpus: Corpus, feed: str) -> None:
    _needs_text(corpus, feed)
    if corpus.kind != "lines":
        raise ConfigError(
            f"feed '{feed}' needs a dataset of one example per line, but '{corpus.name}' is "
            f"continuous text; use train.feed=stream or train.feed=windows")


@dataclass
class ExampleFeedConfig:
    shuffle_seed: int | None = None  # the course shuffles with its own seed (null: use seed)

    def __post_init__(self) -> None:
        if self.shuffle_seed is not None and not 0 <= self.shuffle_seed < 2**32:
            raise ValueError(f"train.shuffle_seed must be in [0, 2**32), got {self.shuffle_seed}")


@FEEDS.register("example", schema=ExampleFeedConfig)
class ExampleFeed(Feed):
    """The course's loop: step j trains on ``examples[j mod N]`` with the state carried over."""


    @classmethod
    def from_config(cls, cfg: ExampleFeedConfig, *, corpus: Corpus, batch_size: int,
                    seq_len: int, seed: int) -> ExampleFeed:
        batch_size, _ = _check_run(batch_size, seq_len, seed)
        _needs_lines(corpus, "example")
        if batch_size != 1:
            raise ConfigError(f"feed 'example' trains on one name per step; set "
                              f"train.batch_size=1 (got {batch_size}) or use train.feed=names")
        shuffle_seed = seed if cfg.shuffle_seed is None else cfg.shuffle_seed
        if not 0 <= shuffle_seed < 2**32:
            raise ConfigError(f"train.shuffle_seed must be in [0, 2**32), got {shuffle_seed}")
        return cls(corpus, shuffle_seed=shuffle_seed)

    def __init__(self, corpus: Corpus, *, shuffle_seed: int) -> None:
        self.batch_size, self.seq_len = 1, None
        self.eos_id = int(corpus.vocab.eos_id)
        self._train = list(corpus.train)
        self._val = list(corpus.val)
        # Shuffle a list of indices: RandomState.shuffle on any list makes the same swaps as the
        # course's shuffle of its list of strings, so the order is the course's order.
        order = list(range(len(self._train)))
        np.random.RandomState(shuffle_seed).shuffle(order)
        self.order = order
        self.steps_per_epoch = len(order)

    def example(self, step: int) -> np.ndarray:
        return self._train[self.order[check_step(step) % self.steps_per_epoch]]

    def batch(self, step: int) -> Batch:
        inputs, targets = pad_names([self.example(step)], self.eos_id)
        return Batch(inputs, targets, reset=step == 0)

    def val_batches(self) -> Iterator[Batch]:
        # Validation names are scored independently (from a zero state), in file order.
        for ids in self._val:
            inputs, targets = pad_names([ids], self.eos_id)
            yield Batch(inputs, targets, reset=True)


@FEEDS.register("names")
class NamesFeed(Feed):
    """Padded mini-batches of names; the last batch of an epoch may be smaller."""


    @classmethod
    def from_config(cls, cfg: Any, *, corpus: Corpus, batch_size: int, seq_len: int,
                    seed: int) -> NamesFeed:
        batch_size, _ = _check_run(batch_size, seq_len, seed)
        _needs_lines(corpus, "names")
        n = len(corpus.train)
        if batch_size > n:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the {n} training "
                              f"examples of '{corpus.name}'; lower train.batch_size")
        return cls(corpus, batch_size=batch_size, seed=seed)

    def __init__(self, corpus: Corpus, *, batch_size: int, seed: int) -> None:
        self.batch_size, self.seq_len, self.seed = batch_size, None, seed
        self.eos_id = int(corpus.vocab.eos_id)
        self._train = list(corpus.train)
        self._val = list(corpus.val)
        self.steps_per_epoch = math.ceil(len(self._train) / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def indices(self, step: int) -> np.ndarray:
        return self.shuffled(step, len(self._train))

    def batch(self, step: int) -> Batch:
        inputs, targets = pad_names([self._train[j] for j in self.indices(step)], self.eos_id)
        return Batch(inputs, targets, reset=True)

    def val_batches(self) -> Iterator[Batch]:
        for start in range(0, len(self._val), self.batch_size):
            inputs, targets = pad_names(self._val[start : start + self.batch_size], self.eos_id)
            yield Batch(inputs, targets, reset=True)


@FEEDS.register("stream")
class StreamFeed(Feed):
    """Truncated BPTT: B contiguous tracks, chunk k covers ``track[kT : kT+T+1]``.

    The walk follows min-char-rnn: the pointer advances by T and wraps (with a state reset) when
    ``p + T + 1 >= len(track)``; so a last chunk that would fit exactly is skipped, as there.
    """


    @classmethod
    def from_config(cls, cfg: Any, *, corpus: Corpus, batch_size: int, seq_len: int,
                    seed: int) -> StreamFeed:
        batch_size, seq_len = _check_run(batch_size, seq_len, seed)
        _needs_text(corpus, cls.name)
        train, val = as_stream(corpus, "train"), as_stream(corpus, "val")
        need = batch_size * (seq_len + 1)
        if len(train) < need:
            raise ConfigError(
                f"train.batch_size={batch_size} tracks of train.seq_len={seq_len}+1 chars need "
                f"{need} characters but '{corpus.name}' has {len(train)} for training; lower "
                f"train.batch_size or train.seq_len")
        return cls(train, val, batch_size=batch_size, seq_len=seq_len)

    def __init__(self, data: np.ndarray, val: np.ndarray, *, batch_size: int,
                 seq_len: int) -> None:
        self.batch_size, self.seq_len = batch_size, seq_len
        self.track_len = len(data) // batch_size
        self.tracks = np.asarray(data[: self.track_len * batch_size]).reshape(batch_size, -1)
        self.steps_per_epoch = max(1, (self.track_len - 2) // seq_len)
        self._val = np.asarray(val, dtype=np.int64)

    def pointer(self, step: int) -> int:
        return (check_step(step) % self.steps_per_epoch) * self.seq_len

    def batch(self, step: int) -> Batch:
        p, T = self.pointer(step), self.seq_len
        chunk = self.tracks[:, p : p + T + 1].T  # (T+1, B)
        return Batch(np.ascontiguousarray(chunk[:-1]), np.ascontiguousarray(chunk[1:]),
                     reset=step % self.steps_per_epoch == 0)

    def val_batches(self) -> Iterator[Batch]:
        """Every val position once, state carried across chunks (reset before the first)."""
        n = len(self._val)
        if n < 2:
            return
        B = max(1, min(self.batch_size, n // (self.seq_len + 1)))
        tracks = self._val[: (n // B) * B].reshape(B, -1)
        length = tracks.shape[1]
        for p in range(0, length - 1, self.seq_len):
            chunk = tracks[:, p : min(p + self.seq_len + 1, length)].T
            yield Batch(np.ascontiguousarray(chunk[:-1]), np.ascontiguousarray(chunk[1:]),
                        reset=p == 0)


@dataclass
class WindowsFeedConfig:
    stride: int = 3  # distance between window starts
    window_targets: str = "last"  # last (the course: the char after the window) | all

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"train.stride must be >= 1, got {self.stride}")
        if self.window_targets not in WINDOW_TARGETS:
            raise ValueError(f"train.window_targets must be 'last' or 'all', "
                             f"got {self.window_targets!r}")


@FEEDS.register("windows", schema=WindowsFeedConfig)
class WindowsFeed(Feed):
    """Fixed windows ``text[i : i+T]`` for ``i = 0, stride, ...`` while ``i < len - T``."""


    @classmethod
    def from_config(cls, cfg: WindowsFeedConfig, *, corpus: Corpus, batch_size: int,
                    seq_len: int, seed: int) -> WindowsFeed:
        batch_size, seq_len = _check_run(batch_size, seq_len, seed)
        _needs_text(corpus, cls.name)
        train, val = as_stream(corpus, "train"), as_stream(corpus, "val")
        stride = cfg.stride
        n_windows = cls.count(len(train), seq_len, stride)
        name = corpus.name
        if n_windows == 0:
            raise ConfigError(f"train.seq_len={seq_len} is not shorter than the {len(train)} "
                              f"training characters of '{name}'; lower train.seq_len")
        if batch_size > n_windows:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the {n_windows} "
                              f"windows of '{name}'; lower train.batch_size or train.stride")
        return cls(train, val, batch_size=batch_size, seq_len=seq_len, stride=stride,
                   targets=cfg.window_targets, seed=seed)

    def __init__(self, data: np.ndarray, val: np.ndarray, *, batch_size: int, seq_len: int,
                 stride: int, targets: str, seed: int) -> None:
        self.batch_size, self.seq_len, self.stride = batch_size, seq_len, stride
        self.targets, self.seed = targets, seed
        self.data = np.asarray(data, dtype=np.int64)
        self._val = np.asarray(val, dtype=np.int64)
        self.n_windows = self.count(len(self.data), seq_len, stride)
        self.steps_per_epoch = math.ceil(self.n_windows / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    @staticmethod
    def count(n: int, seq_len: int, stride: int) -> int:
        return len(range(0, max(n - seq_len, 0), stride))

    def _make(self, data: np.ndarray, starts: np.ndarray) -> Batch:
        offsets = np.arange(self.seq_len)
        inputs = data[starts[None, :] + offsets[:, None]]  # (T, B)
        if self.targets == "all":
            targets = data[starts[None, :] + offsets[:, None] + 1]
        else:
            targets = np.full_like(inputs, -1)
            targets[-1] = data[starts + self.seq_len]
        return Batch(inputs, targets, reset=True)

    def starts(self, step: int) -> np.ndarray:
        """Text offsets of the windows of batch ``step``."""
        return self.shuffled(step, self.n_windows) * self.stride

    def batch(self, step: int) -> Batch:
        return self._make(self.data, self.starts(step))

    def val_batches(self) -> Iterator[Batch]:
        starts = np.arange(self.count(len(self._val), self.seq_len, self.stride)) * self.stride
        for k in range(0, len(starts), self.batch_size):
            yield self._make(self._val, starts[k : k + self.batch_size])


@FEEDS.register("auto")
def auto_feed(cfg: Any, *, corpus: Corpus, **run: Any) -> Feed:
    """``names`` for a dataset of lines, ``stream`` for continuous text."""
    return FEEDS.build({"name": "names" if corpus.kind == "lines" else "stream"}, corpus=corpus,
                       **run)


__all__ = ["ExampleFeed", "NamesFeed", "StreamFeed", "WindowsFeed", "as_stream", "auto_feed",
           "pad_names"]
