"""Runner options given on the command line: parsed, or refused with a clear error."""

from __future__ import annotations

import dataclasses
import gc
import re

import click
import pytest
from click.testing import CliRunner

from aqueue import ConfigurationError, RunnerConfig
from aqueue._cli import cli, worker
from aqueue._cli.options import duration_or_forever, parse_duration
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
    assert duration_or_forever(None, None, text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-results", "soon"], "not a duration"),
        (["--keep-results", "-5m"], "must be finite and >= 0"),
        (["--keep-results", "inf"], "must be finite and >= 0"),
        (["--prefetch", "-1"], "--prefetch"),
        (["--gc-threshold", "-1"], "--gc-threshold"),
        (["--lookback", "forever"], "not a duration"),  # the window must be finite
        (["--lookback", "-1h"], "must be finite and >= 0"),
        (["--reclaim-limit", "0"], "--reclaim-limit"),
        (["--reclaim-limit", "many"], "--reclaim-limit"),
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


class _CapturingQueue:
    """Stands in for the app's queue: records the RunnerConfig the CLI built."""

    def __init__(self) -> None:
        self.configs: list[RunnerConfig] = []

    async def run(self, config: RunnerConfig) -> None:
        self.configs.append(config)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("args", "lookback", "reclaim_limit"),
    [
        ([], 7 * 86400.0, 1000),
        (["--lookback", "90m", "--reclaim-limit", "25"], 5400.0, 25),
        (["--lookback", "0", "--reclaim-limit", "1"], 0.0, 1),
    ],
)
def test_lookback_and_reclaim_limit_reach_the_runner_config(
    monkeypatch: pytest.MonkeyPatch, args: list[str], lookback: float, reclaim_limit: int
) -> None:
    queue = _CapturingQueue()
    monkeypatch.setattr(worker, "load_queue", lambda _path: queue)
    monkeypatch.setattr(worker, "setup_logging", lambda _level: None)
    result = CliRunner().invoke(cli, ["run", "app:queue", *args])
    assert result.exit_code == 0, result.output
    [config] = queue.configs
    assert (config.lookback, config.reclaim_limit) == (lookback, reclaim_limit)


# The run command's options that set a RunnerConfig field, by field name.
_OPTION_FIELDS = {
    "concurrency": "concurrency",
    "lease": "lease",
    "grace": "shutdown_grace",
    "reclaim_period": "reclaim_period",
    "reclaim_limit": "reclaim_limit",
    "sweep_period": "sweep_period",
    "sweep_grace": "sweep_grace",
    "lookback": "lookback",
    "max_stalls": "max_stalls",
    "zombie_destination": "zombie_destination",
    "watchdog": "watchdog",
    "prefetch": "prefetch",
    "gc_threshold": "gc_threshold",
    "keep_results": "keep_results",
}


def test_run_without_options_builds_the_default_runner_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = _CapturingQueue()
    monkeypatch.setattr(worker, "load_queue", lambda _path: queue)
    monkeypatch.setattr(worker, "setup_logging", lambda _level: None)
    result = CliRunner().invoke(cli, ["run", "app:queue"])
    assert result.exit_code == 0, result.output
    assert queue.configs == [RunnerConfig()]


@pytest.mark.parametrize(("option", "field"), sorted(_OPTION_FIELDS.items()))
def test_each_run_option_defaults_to_runner_config_and_shows_it(option: str, field: str) -> None:
    [param] = [p for p in worker.run.params if p.name == option]
    default = param.default
    if option in ("lookback", "keep_results"):
        default = parse_duration(default, forever=option == "keep_results")
    elif option in ("watchdog", "gc_threshold"):
        default = default or None  # 0 on the command line is None in RunnerConfig
    expected = {f.name: f.default for f in dataclasses.fields(RunnerConfig)}[field]
    assert default == expected
    assert isinstance(param, click.Option)
    if param.default is not None:  # None: the help text says what the default is
        help_text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
        flag = "--" + option.replace("_", "-") + " "
        [entry] = [e for e in re.split(r" (?=--[a-z])", help_text) if e.startswith(flag)]
        shown = re.search(r"\[default: ([^;\]]+)", entry)
        assert shown is not None, entry
        assert shown.group(1) == str(param.default)
