"""Baselines a trained model must beat, computed on the same split as the model.

Classification: the majority class, and multinomial naive Bayes over character n-grams (word
n-grams for word datasets); for vector sequences a 1-nearest-neighbour on each sequence's
per-channel mean and standard deviation.
Forecasting (one step ahead, with the true history, in the series' original units): persistence
(the next value is the last one) and a least-squares AR(p) with intercept fitted on the training
part.  The AR model regresses each of the D columns on the last p rows of all columns (a VAR
for D > 1; plain AR for one column).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from framework.data.corpora.labelled import LabelledCorpus
from framework.data.corpora.sequences import SequenceCorpus
from framework.data.corpora.series import SeriesCorpus
from framework.data.tokenizers.rules import split_words
from framework.errors import ConfigError, DataError
from framework.memory import check_buffers
from framework.tasks.metrics import accuracy, macro_f1, mae, rmse

# Boundary markers around each text: control characters that do not occur in names.
BOS, EOS = "\x02", "\x03"

# ------------------------------------------------------------------------------ classification


def majority_class(train_labels: np.ndarray, n_classes: int) -> int:
    """The most frequent training label (the lowest index on a tie)."""
    return int(np.argmax(np.bincount(np.asarray(train_labels), minlength=n_classes)))


class NaiveBayesNGrams:
    """Multinomial naive Bayes over character n-grams with additive smoothing.

    Each text is wrapped in one begin and one end marker and cut into its overlapping n-grams
    (texts shorter than n give one shorter gram).  P(gram | class) = (count + alpha) /
    (total_class + alpha * V), V the number of distinct training grams; the prior is the class
    frequency.  Grams never seen in training have count 0 in every class.
    """

    def __init__(self, n: int = 3, alpha: float = 1.0, lower: bool = True) -> None:
        if n < 1:
            raise ConfigError(f"n-gram order must be >= 1, got {n}")
        if not alpha > 0:
            raise ConfigError(f"smoothing alpha must be > 0, got {alpha}")
        self.n, self.alpha, self.lower = int(n), float(alpha), bool(lower)

    def grams(self, text: str) -> list[str]:
        t = BOS + (text.lower() if self.lower else text) + EOS
        if len(t) <= self.n:
            return [t]
        return [t[i : i + self.n] for i in range(len(t) - self.n + 1)]

    def fit(self, texts: Sequence[str], labels: np.ndarray, n_classes: int) -> NaiveBayesNGrams:
        labels = np.asarray(labels, dtype=np.int64)
        index: dict[str, int] = {}
        rows, cols = [], []
        for text, label in zip(texts, labels.tolist(), strict=True):
            for g in self.grams(text):
                cols.append(index.setdefault(g, len(index)))
                rows.append(label)
        # counts, counts + alpha and the log-likelihoods: three (C, grams) float64 arrays.
        check_buffers("the naive Bayes baseline", 3 * 8 * n_classes * len(index),
                      f"{n_classes:,} classes x {len(index):,} distinct grams, float64",
                      "it is skipped")
        counts = np.zeros((n_classes, len(index)), dtype=np.float64)
        np.add.at(counts, (np.array(rows), np.array(cols)), 1.0)
        denom = counts.sum(axis=1, keepdims=True) + self.alpha * len(index)
        self.index = index
        self.log_likelihood = np.log(counts + self.alpha) - np.log(denom)  # (C, V)
        self.log_unseen = np.log(self.alpha) - np.log(denom[:, 0])  # (C,)
        with np.errstate(divide="ignore"):  # a class without examples: prior -inf
            self.log_prior = np.log(np.bincount(labels, minlength=n_classes) / len(labels))
        return self

    def log_joint(self, texts: Sequence[str]) -> np.ndarray:
        """log P(class) + sum log P(gram | class), (N, C)."""
        C = len(self.log_prior)
        check_buffers("the naive Bayes baseline", 8 * len(texts) * C,
                      f"{len(texts):,} texts x {C:,} classes, float64", "it is skipped")
        out = np.tile(self.log_prior, (len(texts), 1))
        for i, text in enumerate(texts):
            ids = [self.index.get(g, -1) for g in self.grams(text)]
            known = [j for j in ids if j >= 0]
            out[i] += self.log_likelihood[:, known].sum(axis=1)
            out[i] += (len(ids) - len(known)) * self.log_unseen
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.argmax(self.log_joint(texts), axis=1)


def classify_baselines(corpus: LabelledCorpus, *, n: int = 3, alpha: float = 1.0,
                       lower: bool = True) -> dict[str, float]:
    """Validation accuracy of the majority class and of n-gram naive Bayes, and NB macro-F1."""
    return nb_baselines(corpus, NaiveBayesNGrams(n, alpha, lower))


class NaiveBayesWords(NaiveBayesNGrams):
    """Naive Bayes over word unigrams and adjacent word pairs (the word tokenizer's rule).

    A text's grams are its words (:func:`~framework.data.tokenizers.rules.split_words`,
    lower-cased by default) and, with ``bigrams``, every adjacent pair ``"w1 w2"`` (a space never
    occurs inside a word, so a pair cannot collide with a word).  With ``binary`` (the default)
    each gram counts once per text, whatever its repeats: Bernoulli-style presence features in
    the multinomial model, which suits short snippets.  Smoothing and priors are those of
    :class:`NaiveBayesNGrams`.
    """

    def __init__(self, alpha: float = 1.0, lower: bool = True, *, bigrams: bool = True,
                 binary: bool = True) -> None:
        super().__init__(1, alpha, lower)
        self.bigrams, self.binary = bool(bigrams), bool(binary)

    def grams(self, text: str) -> list[str]:
        words = split_words(text, lower=self.lower)
        grams = words + ([f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
                         if self.bigrams else [])
        return list(dict.fromkeys(grams)) if self.binary else grams


def nb_baselines(corpus: LabelledCorpus, nb: NaiveBayesNGrams) -> dict[str, float]:
    """Validation accuracy of the majority class and of the naive-Bayes model ``nb`` (fitted on
    the training texts here), and its macro-F1: the keys of :func:`classify_baselines`."""
    if corpus.n_val == 0:
        raise DataError(f"'{corpus.name}' has no validation texts; set dataset.val_fraction > 0 "
                        f"to compare with the baselines")
    C = corpus.n_classes
    major = majority_class(corpus.train_labels, C)
    majority = {"baseline_majority_accuracy": accuracy(corpus.val_labels,
                                                       np.full(corpus.n_val, major))}
    try:
        pred = nb.fit(corpus.train_texts, corpus.train_labels, C).predict(corpus.val_texts)
    except ConfigError as exc:  # too large for this machine: the run goes on without it
        print(f"rnnlab: warning: {exc}", file=sys.stderr)
        return majority
    return {
        **majority,
        "baseline_nb_accuracy": accuracy(corpus.val_labels, pred),
        "baseline_nb_macro_f1": macro_f1(corpus.val_labels, pred, C),
    }


def classify_word_baselines(corpus: LabelledCorpus, *, alpha: float = 1.0, lower: bool = True,
                            bigrams: bool = True) -> dict[str, float]:
    """:func:`classify_baselines` with naive Bayes on word unigrams (+ adjacent pairs): the
    baseline of a classifier whose tokenizer is ``words``."""
    return nb_baselines(corpus, NaiveBayesWords(alpha, lower, bigrams=bigrams))


def summary_statistics(seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Each (timesteps, D) sequence as its per-channel mean and standard deviation, (N, 2D)."""
    return np.array([np.concatenate([x.mean(axis=0), x.std(axis=0)]) for x in seqs])


def nearest_neighbour(train: np.ndarray, train_labels: np.ndarray,
                      query: np.ndarray) -> np.ndarray:
    """The label of each query row's nearest training row (Euclidean, after z-scoring every
    column with the training rows' statistics; a constant column is left unscaled)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    a, q = (train - mean) / std, (query - mean) / std
    # |q - a|^2 without the (N_query, N_train, F) difference array.
    d2 = (q * q).sum(axis=1)[:, None] - 2.0 * q @ a.T + (a * a).sum(axis=1)[None, :]
    return np.asarray(train_labels)[np.argmin(d2, axis=1)]


def sequence_baselines(corpus: SequenceCorpus) -> dict[str, float]:
    """Validation accuracy of the majority class and of a 1-nearest-neighbour on each sequence's
    per-channel mean and standard deviation (original units), and the latter's macro-F1."""
    if corpus.n_val == 0:
        raise DataError(f"'{corpus.name}' has no validation sequences; set dataset.val_fraction "
                        f"> 0 or dataset.test_path to compare with the baselines")
    C = corpus.n_classes
    major = majority_class(corpus.train_labels, C)
    pred = nearest_neighbour(summary_statistics(corpus.train), corpus.train_labels,
                             summary_statistics(corpus.val))
    return {
        "baseline_majority_accuracy": accuracy(corpus.val_labels, np.full(corpus.n_val, major)),
        "baseline_nn_accuracy": accuracy(corpus.val_labels, pred),
        "baseline_nn_macro_f1": macro_f1(corpus.val_labels, pred, C),
    }


# ------------------------------------------------------------------------------ forecasting


def _as_2d(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[:, None] if v.ndim == 1 else v


def persistence(values: np.ndarray, start: int) -> np.ndarray:
    """One-step persistence forecasts of ``values[start:]``: ``values[start-1:-1]``."""
    v = _as_2d(values)
    if not 1 <= start <= len(v):
        raise ValueError(f"start must be in [1, {len(v)}], got {start}")
    return v[start - 1 : -1].copy()


def _lags(v: np.ndarray, targets: np.ndarray, p: int) -> np.ndarray:
    """Design matrix [1, v[t-1], ..., v[t-p]] (columns of every lag side by side), (n, 1+pD)."""
    return np.concatenate([np.ones((len(targets), 1))] + [v[targets - k] for k in range(1, p + 1)],
                          axis=1)


class ARModel:
    """Least-squares AR(p) with intercept: v[t] = c + sum_k A_k v[t-k]."""

    def __init__(self, p: int) -> None:
        if p < 1:
            raise ConfigError(f"AR order must be >= 1, got {p}")
        self.p = int(p)

    def check_memory(self, rows: int, features: int, copies: int) -> None:
        """A one-line ConfigError when ``copies`` (rows, 1 + p x features) float64 design
        matrices do not fit in memory."""
        width = 1 + self.p * features
        check_buffers(f"the AR({self.p}) baseline", copies * 8 * rows * width,
                      f"{copies} x {rows:,} rows x {width:,} lags, float64",
                      "lower task.window")

    def fit(self, train: np.ndarray) -> ARModel:
        v = _as_2d(train)
        targets = np.arange(self.p, len(v))
        n_coef = 1 + self.p * v.shape[1]
        if len(targets) < n_coef:
            raise DataError(f"an AR({self.p}) fit needs at least {n_coef + self.p} training "
                            f"values, the series has {len(v)}; lower task.window")
        # The design matrix, and least squares' copy of it and its factors.
        self.check_memory(len(targets), v.shape[1], 3)
        self.coef, *_ = np.linalg.lstsq(_lags(v, targets, self.p), v[targets], rcond=None)
        return self

    def one_step(self, values: np.ndarray, start: int) -> np.ndarray:
        """Forecasts of ``values[start:]``, each from the true previous p values."""
        v = _as_2d(values)
        if not self.p <= start <= len(v):
            raise ValueError(f"start must be in [{self.p}, {len(v)}], got {start}")
        self.check_memory(len(v) - start, v.shape[1], 1)
        return _lags(v, np.arange(start, len(v)), self.p) @ self.coef

    def next(self, history: np.ndarray) -> np.ndarray:
        """The value after ``history`` (at least p rows), (D,)."""
        h = _as_2d(history)
        return (_lags(h, np.array([len(h)]), self.p) @ self.coef)[0]


def forecast_baselines(corpus: SeriesCorpus, window: int) -> dict[str, float]:
    """One-step validation RMSE/MAE of persistence and AR(window), in original units."""
    if corpus.n_val == 0:
        raise DataError(f"'{corpus.name}' has no validation part; set dataset.val_fraction > 0 "
                        f"to compare with the baselines")
    start, truth = corpus.n_train, corpus.val
    pers = persistence(corpus.values, start)
    out = {"baseline_persistence_rmse": rmse(truth, pers),
           "baseline_persistence_mae": mae(truth, pers)}
    ar = ar_one_step(corpus, window)
    if ar is not None:
        out.update({"baseline_ar_rmse": rmse(truth, ar), "baseline_ar_mae": mae(truth, ar)})
    return out


def ar_one_step(corpus: SeriesCorpus, window: int, *, warn: bool = True) -> np.ndarray | None:
    """AR(window)'s one-step forecasts of the validation part; None, after one warning line
    (unless ``warn`` is false: it was given already), when its design matrix does not fit in
    memory (the run goes on without it)."""
    try:
        return ARModel(window).fit(corpus.train).one_step(corpus.values, corpus.n_train)
    except ConfigError as exc:
        if warn:
            print(f"rnnlab: warning: {exc}", file=sys.stderr)
        return None


__all__ = ["ARModel", "NaiveBayesNGrams", "NaiveBayesWords", "ar_one_step", "classify_baselines",
           "classify_word_baselines", "forecast_baselines", "majority_class", "nb_baselines",
           "nearest_neighbour", "persistence", "sequence_baselines", "summary_statistics"]
