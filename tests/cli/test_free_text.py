"""Free text on the command line: prompts, run and experiment names, paths, as one argument.

``'prompt=forsooth, this maketh no sense'``, ``mlflow.run_name=恐竜`` and
``"prompt=it's (not) fine"`` are taken literally (no Hydra quoting needed); where Hydra's grammar
still refuses an override, the error says how to quote it, without a caret.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.cli.overrides import FREE_TEXT_KEYS, hydra_quote, quote_free_text
from framework.data.vocab import Vocab
from framework.errors import ConfigError
from tests.cli.test_commands import _one_line, _run
from tests.conftest import needs_data
from tests.helpers import QUICK, data_env, run_config, sqlite_store
from tests.tracking.test_pyfunc import make_checkpoint

PROMPTS = ["forsooth, this maketh no sense", "it's (not) fine", "恐竜", "a=b", "[x]", "{a: 1}",
           "back\\slash\\", "it's 'quoted' here", 'a "double" one', "tab\there", "~tilde",
           "50% off!", "a,b,c"]
TEXT = "".join(sorted(set("".join(PROMPTS) + "abcdefghijklmnopqrstuvwxyz .")))


def _parsed(override: str) -> object:
    return OverridesParser.create().parse_override(override).value()


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
def test_fuzz_hydra_quote_round_trips_any_text(text):
    for quote in ("'", '"'):
        assert str(_parsed(f"prompt={hydra_quote(text, quote)}")) == text


@settings(max_examples=30, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="$"), min_size=1,
               max_size=30))
def test_fuzz_free_text_survives_hydra_and_omegaconf(text):
    """The whole way: rewritten argv -> Hydra compose -> OmegaConf -> the validated config."""
    if text.lower() == "null" or (len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]):
        return  # these keep Hydra's meaning (see test_quoting_rules)
    (arg,) = quote_free_text([f"mlflow.run_name={text}"])
    assert run_config([arg]).mlflow.run_name == text


def test_quoting_rules():
    assert quote_free_text(["prompt=a, b", "seed=3", "+prompt=x y"]) == [
        "prompt='a, b'", "seed=3", "+prompt='x y'"]
    keep = ["prompt=", "prompt=null", "prompt='already'", 'prompt="already"', "~prompt",
            "--cfg", "job", "cell.hidden_size=1,2", "seed=1"]
    assert quote_free_text(keep) == keep
    # In a sweep a comma still separates values (quote to keep one); other text is literal.
    assert quote_free_text(["-m", "mlflow.run_name=a,b", "mlflow.experiment_name=x (y)"]) == [
        "-m", "mlflow.run_name=a,b", "mlflow.experiment_name='x (y)'"]
    assert quote_free_text(["mlflow.run_name=choice(a,b)"]) == [
        "mlflow.run_name='choice(a,b)'"]  # without -m a name, not a sweep
    assert {"prompt", "mlflow.run_name", "mlflow.experiment_name", "dataset.path", "checkpoint",
            "resume", "text"} <= FREE_TEXT_KEYS


def test_an_interpolation_stays_an_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_TEST_NAME", "from-env")
    (arg,) = quote_free_text(["mlflow.run_name=run ${oc.env:RNNLAB_TEST_NAME}"])
    assert run_config([arg]).mlflow.run_name == "run from-env"


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory):
    vocab = Vocab.from_text(TEXT)  # a stream vocabulary with punctuation and non-ASCII letters
    return make_checkpoint(tmp_path_factory.mktemp("free") / "c.npz", vocab=vocab,
                           hidden_size=4, num_layers=1)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_takes_any_prompt_as_one_argument(text_checkpoint, prompt):
    code, lines, out = _run("framework.generate", [f"checkpoint={text_checkpoint}",
                                                   f"prompt={prompt}", "num_samples=1",
                                                   "length=3", "seed=1"])
    assert (code, lines) == (0, [])
    assert out.startswith(prompt) and len(out) == len(prompt) + 3 + 1


@pytest.mark.parametrize("arg, needles", [
    ("seed=é", ["cannot read the override 'seed=é'", "'é' at position 6 is not allowed",
                "quote the value for Hydra: 'seed=\"é\"'"]),
    ("train.steps=(3)", ["cannot read the override 'train.steps=(3)'", "extraneous input '('",
                         "'train.steps=\"(3)\"'"]),
    ("cell.hidden_size=1,2", ["a comma separates sweep values", "'cell.hidden_size=\"1,2\"'",
                              "add -m to sweep"]),
    ("seed=[1,2", ["cannot read the override 'seed=[1,2'"]),
])
def test_grammar_errors_say_how_to_quote_without_a_caret(arg, needles):
    code, lines, _ = _run("framework", [arg])
    _one_line(code, lines, *needles)
    assert "^" not in lines[0] and "expecting" not in lines[0]


def test_a_quoted_value_that_is_still_bad_names_the_key():
    with pytest.raises(ConfigError, match="seed"):
        run_config(["seed='é'"])


@needs_data("dinos.txt")
def test_real_process_run_and_experiment_names_are_free_text(tmp_path):
    db = tmp_path / "m.db"
    proc = subprocess.run(
        [sys.executable, "-m", "framework", *QUICK[:-1], "train.steps=2", "mlflow.log_model=false",
         "mlflow.run_name=恐竜", "mlflow.experiment_name=it's (not) fine, ok",
         f"mlflow.tracking_uri={sqlite_store(db)}", "hydra.run.dir=run"],
        cwd=tmp_path, env=data_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select r.name, e.name from runs r join experiments e "
                            "on r.experiment_id = e.experiment_id").fetchall()
    assert rows == [("恐竜", "it's (not) fine, ok")]
