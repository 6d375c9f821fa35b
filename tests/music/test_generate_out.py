"""``framework.generate ... out=`` is checked before anything is generated: a folder, a missing
or file parent, or an unwritable folder is one line naming the fix."""

from __future__ import annotations

import pytest

from framework.errors import ConfigError
from framework.music.generated import output_paths


def test_out_naming_a_folder_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        output_paths(tmp_path, 1)
    assert str(info.value) == (f"out={tmp_path} is a folder; name a .mid file in it, e.g. "
                               f"out={tmp_path / 'piece.mid'}")


def test_out_whose_folder_is_missing_or_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="its folder .*afile is a file; create the folder"):
        output_paths(tmp_path / "afile" / "piece.mid", 2)
    with pytest.raises(ConfigError, match="its folder .*nowhere does not exist"):
        output_paths(tmp_path / "nowhere" / "piece.mid", 1)


def test_several_samples_get_numbered_files(tmp_path):
    assert output_paths(tmp_path / "p.mid", 2) == [tmp_path / "p_1.mid", tmp_path / "p_2.mid"]
