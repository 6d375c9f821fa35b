"""The startup benchmark's table: its rows, the tracking-cost row and the goals."""

from __future__ import annotations

import pytest

from framework.studies import startup


@pytest.mark.parametrize("row, cost", [(startup.TRACKED, startup.TRACKING_ADDS),
                                       (startup.FRESH, startup.FRESH_ADDS)])
def test_tracking_cost_is_the_median_of_paired_differences(row, cost):
    walls = {startup.UNTRACKED: [1.0, 1.2, 3.0], row: [1.5, 2.0, 3.2]}
    cpus = {startup.UNTRACKED: [0.9, 1.0, 1.1], row: [2.0, 2.2, 2.1]}
    name, wall, cpu = startup.tracking_cost(walls, cpus, cost, row)
    assert name == cost
    assert wall == pytest.approx([0.5, 0.8, 0.2]) and cpu == pytest.approx([1.1, 1.2, 1.0])


@pytest.mark.parametrize("markdown", [False, True])
def test_table_shows_each_row_with_its_goal(markdown):
    results = [("--help", [0.4, 0.3, 0.6], [0.3, 0.3, 0.4]),
               (startup.UNTRACKED, [1.0, 1.1, 1.2], [1.0, 1.0, 1.0]),
               (startup.TRACKING_ADDS, [0.5, 0.8, 0.2], [1.1, 1.2, 1.0])]
    lines = startup.table(results, markdown).splitlines()
    assert len(lines) == len(results) + (2 if markdown else 1)
    cells = [[c.strip() for c in line.strip("|").split("|" if markdown else "  ") if c.strip()]
             for line in lines]
    help_row = next(row for row in cells if row[0] == "--help")
    assert help_row[1:] == ["0.40", "0.30", "0.30", "< 0.50"]
    cost_row = next(row for row in cells if row[0] == startup.TRACKING_ADDS)
    assert cost_row[1:] == ["0.50", "0.20", "1.10", "< 1.00"]
    untracked = next(row for row in cells if row[0] == startup.UNTRACKED)
    assert untracked[1:] == ["1.10", "1.00", "1.00"]  # no goal of its own


def test_every_goal_names_a_row_the_benchmark_measures(tmp_path, monkeypatch):
    monkeypatch.setattr(startup, "_checkpoint", lambda cwd, extra: tmp_path / "x.npz")
    monkeypatch.setattr(startup, "_run", lambda args, cwd: (0.0, 0.0))
    rows = set(startup.commands(tmp_path)) | {startup.TRACKING_ADDS, startup.FRESH_ADDS}
    assert set(startup.GOALS) <= rows
    assert {startup.TRACKED, startup.FRESH, startup.UNTRACKED} <= rows
