"""``framework.predict`` offers Hydra the decoder plugins that come without a YAML file, as
``framework.generate`` does (one owner: framework/cli/compose.py's ``run_reading_command``)."""

from __future__ import annotations

from tests.cli.test_decoders_in_commands import LEAST
from tests.helpers import cli


def test_predict_and_generate_both_take_a_decoder_plugin_without_yaml(tmp_path):
    from tests.tracking.test_pyfunc import make_checkpoint

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "least.py").write_text(LEAST)
    path = make_checkpoint(tmp_path / "c.npz", hidden_size=4, num_layers=1)
    env = {"RNNLAB_PLUGIN_PATH": str(plugins)}
    generated = cli("framework.generate", [f"checkpoint={path}", "decoder=least", "length=6",
                                           "prompt=ab"], tmp_path, env=env)
    predicted = cli("framework.predict", [f"checkpoint={path}", "decoder=least", "length=6",
                                          "text=ab"], tmp_path, env=env)
    assert generated.returncode == 0, generated.stderr
    assert predicted.returncode == 0, predicted.stderr
    # The same decoder from the same prompt: the same text (the least likely id each step).
    assert predicted.stdout.splitlines() == generated.stdout.splitlines()
    assert len(predicted.stdout.splitlines()) == 1


def test_predict_refuses_an_unknown_sampler_in_one_line(tmp_path):
    from tests.tracking.test_pyfunc import make_checkpoint

    path = make_checkpoint(tmp_path / "c.npz", hidden_size=4, num_layers=1)
    proc = cli("framework.predict", [f"checkpoint={path}", "decoder=sample", "sampler=top_kk",
                                     "text=ab"], tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown sampler 'top_kk'" in lines[0], proc.stderr
    assert "did you mean 'top_k'" in lines[0]
