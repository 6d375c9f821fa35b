"""Every Hydra command refuses an option it does not know in one line that names the command as
the user typed it (``python -m framework.generate``), before Hydra prints its usage."""

from __future__ import annotations

import pytest

from framework.cli.overrides import check_flags
from framework.errors import ConfigError
from tests.helpers import cli


@pytest.mark.parametrize("argv", [
    ["--help"], ["--cfg", "job"], ["--cfg=job", "train.steps=3"], ["-m", "cell=rnn,gru"],
    ["-c", "hydra", "--resolve"], ["train.steps=-1"], ["~train.x"], ["--info"],
])
def test_hydra_s_own_options_pass(argv):
    check_flags(argv, "python -m framework")


@pytest.mark.parametrize("argv, bad", [(["--foo"], "'--foo'"), (["train.steps=3", "-x"], "'-x'"),
                                       (["--cfg", "job", "--steps=3"], "'--steps=3'")])
def test_an_unknown_option_is_one_line(argv, bad):
    with pytest.raises(ConfigError) as info:
        check_flags(argv, "python -m framework.generate")
    assert str(info.value) == (f"python -m framework.generate: unknown option {bad}; --help lists "
                               f"the options (and --hydra-help Hydra's); settings are key=value")


def test_the_real_command_names_itself(tmp_path):
    proc = cli("framework.predict", ["--foo"], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("rnnlab: error: python -m framework.predict: unknown option "
                                   "'--foo'; --help lists the options (and --hydra-help Hydra's); "
                                   "settings are key=value")
