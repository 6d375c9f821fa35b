"""The startup benchmark's ``--against`` rows: another checkout's rows keep their goals and get
their own tracking-cost row."""

from __future__ import annotations

import pytest

from framework.studies import startup


def test_rows_of_the_other_checkout_have_the_goals_and_their_own_tracking_cost():
    tag = " [before]"
    walls = {startup.UNTRACKED + tag: [1.0, 2.0], startup.TRACKED + tag: [2.5, 2.5]}
    cpus = {startup.UNTRACKED + tag: [1.0, 1.0], startup.TRACKED + tag: [3.0, 2.0]}
    name, wall, cpu = startup.tracking_cost(walls, cpus, startup.TRACKING_ADDS, startup.TRACKED,
                                            tag)
    assert name == startup.TRACKING_ADDS + tag
    assert wall == pytest.approx([1.5, 0.5]) and cpu == pytest.approx([2.0, 1.0])
    lines = startup.table([("--help" + tag, [0.4], [0.3]), (name, wall, cpu)], False)
    rows = [line.split("  ")[0].strip() for line in lines.splitlines()[1:]]
    assert rows == ["--help" + tag, startup.TRACKING_ADDS + tag]
    assert all(line.rstrip().endswith(("< 0.50", "< 1.00")) for line in lines.splitlines()[1:])


def test_against_must_be_an_rnnlab_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        startup.main(["--against", str(tmp_path)])
    assert info.value.code == 2
    assert "not an rnnlab checkout" in capsys.readouterr().err
