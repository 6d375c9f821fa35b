"""What a request to a trained model may hold: its bounds and the checks of its values, shared
by every task's ``predict`` (command line) and ``serve`` (the pyfunc model)."""

from __future__ import annotations

import math
from typing import Any

from framework.errors import ConfigError, RnnlabError

# A served model must not be asked for unbounded work: each row is bounded, and so is the whole
# request (rows x samples x (prompt + length) characters); beyond them the answer is a 400.
MAX_LENGTH = 10_000  # per sample, text or history
MAX_SAMPLES = 100  # per row
MAX_PROMPT = 10_000  # characters per prompt
MAX_ROWS = 1_000
MAX_REQUEST_CHARS = 1_000_000
DEFAULT_LENGTH = 200
# python -m framework.predict: texts per call and characters per text.
MAX_TEXTS = 10_000
MAX_TEXT_CHARS = 10_000


def missing(value: Any) -> bool:
    """Is a request cell empty (None, NaN or pandas' NA)?"""
    import pandas as pd

    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # pd.isna of a list-like
        return False


def number(value: Any) -> float | None:
    """A request cell as a float (None when empty); anything else is one line."""
    if missing(value):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RnnlabError(f"expected a number, got {value!r}") from None
    return None if math.isnan(out) else out


def decoder_node(row: dict[str, Any], default: str) -> dict[str, Any]:
    """The decoder a served request's row asks for, as a config node: its ``decoder`` cell
    (empty: ``default``) and its ``width`` and ``length_penalty`` cells when set (checked when
    the node is built, :func:`framework.nn.decoding.build_decoder`)."""
    name = row.get("decoder")
    node: dict[str, Any] = {"name": default if missing(name) else str(name)}
    for key in ("width", "length_penalty"):
        value = number(row.get(key))
        if value is not None:
            node[key] = int(value) if key == "width" and value == int(value) else value
    return node


def flag(row: dict[str, Any], key: str) -> bool:
    """``row[key]`` as a yes/no option (False when empty): a boolean, 0/1 or true/false."""
    value = row.get(key)
    if missing(value):
        return False
    if hasattr(value, "item"):  # a NumPy scalar from the DataFrame
        value = value.item()
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
        return bool(value)
    raise RnnlabError(f"{key} must be true or false, got {value!r}")


def int_option(row: dict[str, Any], key: str, default: int | None, lo: int,
               hi: int | None) -> int | None:
    """``row[key]`` as an integer in ``[lo, hi]`` (``default`` when empty)."""
    value = number(row.get(key))
    if value is None:
        return default
    if value != int(value) or value < lo or (hi is not None and value > hi):
        bound = f" and <= {hi}" if hi is not None else ""
        raise RnnlabError(f"{key} must be an integer >= {lo}{bound}, got {row.get(key)!r}")
    return int(value)


def as_frame(model_input: Any, column: str) -> Any:
    """A served model's input as a DataFrame; a bare string or list of strings fills
    ``column``."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, str):
        return pd.DataFrame({column: [model_input]})
    if isinstance(model_input, dict):
        return pd.DataFrame([model_input])
    if isinstance(model_input, (list, tuple)):
        if all(isinstance(x, str) for x in model_input):
            return pd.DataFrame({column: list(model_input)})
        return pd.DataFrame(list(model_input))
    raise RnnlabError(f"model input must be a DataFrame with a '{column}' column, got "
                      f"{type(model_input).__name__}")


# The inputs of ``python -m framework.predict`` other than ``text=``, and the models that read them.
OTHER_INPUTS = {"sequence": "a classifier of vector sequences", "history": "a forecaster"}


def text_request(cfg: Any, purpose: str) -> list[str]:
    """The texts of a ``python -m framework.predict`` call to a model that reads text:
    :func:`command_texts` of its ``text=``; another task's input given instead (``sequence=``,
    ``history=``) is named. ``purpose`` ends the message ("to translate")."""
    if cfg.get("text") is None:
        for key, reader in OTHER_INPUTS.items():
            if cfg.get(key) is not None:
                raise ConfigError(f"{key}= is the input of {reader}; this model reads text: "
                                  f"pass text=<a text> or text=[a,b,...] {purpose}")
    return command_texts(cfg.get("text"), purpose)


def command_texts(value: Any, purpose: str = "to classify") -> list[str]:
    """``text=`` of ``python -m framework.predict``: one text or a list, bounded."""
    from omegaconf import ListConfig

    if value is None:
        raise ConfigError(f"pass text=<a text> or text=[a,b,...] {purpose}")
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        value = [t.strip() for t in value[1:-1].split(",")]  # text=[a,b] arrives as free text
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    texts = [str(t) for t in items]
    if not texts or len(texts) > MAX_TEXTS:
        raise ConfigError(f"pass between 1 and {MAX_TEXTS} texts, got {len(texts)}")
    long = [t for t in texts if len(t) > MAX_TEXT_CHARS]
    if long:
        raise ConfigError(f"a text is {len(long[0])} characters long; at most {MAX_TEXT_CHARS}")
    return texts


def served_texts(frame: Any, column: str = "text") -> list[str]:
    """A served request's texts (column ``column``), bounded."""
    if column not in frame.columns:
        raise RnnlabError(f"this model's input needs a '{column}' column")
    texts = ["" if missing(t) else str(t) for t in frame[column]]
    if len(texts) > MAX_SAMPLES * 100 or any(len(t) > MAX_LENGTH for t in texts):
        raise RnnlabError(f"at most {MAX_SAMPLES * 100} texts of at most {MAX_LENGTH} "
                          f"characters per request")
    return texts


def example_letters(vocab: Any) -> str:
    """The first two letters of a vocabulary: a request that every model of it accepts."""
    return "".join(c for c in getattr(vocab, "chars", ()) if len(c) == 1 and c.isalpha())[:2]


def positive_int(value: Any, name: str) -> int:
    """A command option that must be a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


__all__ = ["DEFAULT_LENGTH", "MAX_LENGTH", "MAX_PROMPT", "MAX_REQUEST_CHARS", "MAX_ROWS",
           "MAX_SAMPLES", "MAX_TEXTS", "MAX_TEXT_CHARS", "as_frame", "command_texts",
           "example_letters", "int_option", "missing", "number", "positive_int", "served_texts",
           "text_request"]
