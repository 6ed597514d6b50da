"""Runner options given on the command line: parsed, or refused with a clear error."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aqueue import ConfigurationError, RunnerConfig
from aqueue._cli import _duration_or_forever, cli


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
    ],
)
def test_bad_runner_options_are_refused_before_anything_runs(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["run", "nosuchmodule:queue", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    "kwargs",
    [{"prefetch": -1}, {"keep_results": -1.0}, {"lookback": -1.0}],
)
def test_runner_config_refuses_negative_amounts(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RunnerConfig(**kwargs)  # type: ignore[arg-type]


def test_prefetch_default_and_override() -> None:
    assert RunnerConfig(concurrency=10).prefetch_count == 10
    assert RunnerConfig(concurrency=1000).prefetch_count == 100
    assert RunnerConfig(concurrency=10, prefetch=0).prefetch_count == 0
