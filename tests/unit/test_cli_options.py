"""Runner options given on the command line: parsed, or refused with a clear error."""

from __future__ import annotations

import gc

import pytest
from click.testing import CliRunner

from aqueue import ConfigurationError, RunnerConfig
from aqueue._cli import _duration_or_forever, cli
from aqueue._runner import gctune


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600.0),
        ("0", 0.0),
        ("30m", 1800.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        ("forever", None),
        ("NEVER", None),
    ],
)
def test_keep_results_durations(text: str, seconds: float | None) -> None:
    assert _duration_or_forever(None, None, text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-results", "soon"], "not a duration"),
        (["--keep-results", "-5m"], "must be finite and >= 0"),
        (["--keep-results", "inf"], "must be finite and >= 0"),
        (["--prefetch", "-1"], "--prefetch"),
        (["--gc-threshold", "-1"], "--gc-threshold"),
    ],
)
def test_bad_runner_options_are_refused_before_anything_runs(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["run", "nosuchmodule:queue", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    "kwargs",
    [{"prefetch": -1}, {"keep_results": -1.0}, {"lookback": -1.0}, {"gc_threshold": 0}],
)
def test_runner_config_refuses_negative_amounts(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RunnerConfig(**kwargs)  # type: ignore[arg-type]


def test_prefetch_default_and_override() -> None:
    assert RunnerConfig(concurrency=10).prefetch_count == 10
    assert RunnerConfig(concurrency=1000).prefetch_count == 100
    assert RunnerConfig(concurrency=10, prefetch=0).prefetch_count == 0


def test_gc_tuning_is_undone_by_the_last_runner_to_stop() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert gctune.tune(None) is False  # off: nothing changes, nothing to restore
    assert gc.get_threshold() == before
    assert gctune.tune(7000) and gctune.tune(9000)  # two runners in one process
    try:
        assert gc.get_threshold() == (7000, *before[1:])
        assert gc.get_freeze_count() > frozen
        gctune.restore()
        assert gc.get_threshold() == (7000, *before[1:])  # the other one still runs
    finally:
        gctune.restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
