"""The quick benchmark's regression guard (bench/run.py `verdict`): CI fails when a
guarded figure falls below half its target, and only then; a figure left unguarded
(`--unguarded PREFIX`) is still reported with its shortfall."""

from __future__ import annotations

import pytest

from bench.figures import Figure
from bench.run import verdict


def ratio(name: str, value: float) -> Figure:
    """A figure judged by its ratio to a ceiling of 1000 against a target of 0.4."""
    return Figure(name, name, "req/s", [value] * 3, target=0.4, ceiling=1000.0, judged="ratio")


def latency(name: str, ms: float) -> Figure:
    return Figure(name, name, "ms", [ms] * 3, better="lower", target=50.0)


def test_a_figure_below_half_its_target_fails_the_quick_guard(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert verdict([ratio("ingest.counter.sqlite.w1", 250.0), latency("page.p95", 90.0)], True) == 0
    assert verdict([latency("page.p95", 101.0)], True) == 1  # over twice its 50 ms
    assert verdict([ratio("ingest.counter.sqlite.w1", 150.0)], True) == 1
    assert "BELOW HALF ITS TARGET: ingest.counter.sqlite.w1 = 0.15" in capsys.readouterr().out
    assert verdict([ratio("ingest.counter.sqlite.w1", 150.0)], False) == 0  # a full run reports


def test_an_unguarded_figure_is_reported_but_does_not_fail_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    short = [ratio("ingest.counter.sqlite.w1", 50.0), ratio("ingest.phone.postgres.w2", 30.0)]
    assert verdict(short, True, ("ingest.",)) == 0
    out = capsys.readouterr().out
    assert "below half its target, unguarded: ingest.counter.sqlite.w1 = 0.05" in out
    assert "targets not met: ingest.counter.sqlite.w1, ingest.phone.postgres.w2" in out
    # the prefix spares only what it names
    assert verdict([*short, latency("page.p95", 120.0)], True, ("ingest.",)) == 1
