"""Options of the ``run`` command: durations (``3600``, ``30m``, ``12h``, ``7d``,
``forever``) and the options that set a ``RunnerConfig`` field, which default to the
field's default so that the two never disagree."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._runner.config import RunnerConfig

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str, *, forever: bool) -> float | None:
    """A duration in seconds (``3600``, ``30m``, ``12h``, ``7d``), or None for
    ``forever`` where that is allowed."""
    text = value.strip().lower()
    if forever and text in ("forever", "never", "none"):
        return None
    scale = _UNITS.get(text[-1:])
    try:
        seconds = float(text[:-1] if scale else text) * (scale or 1.0)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a duration (e.g. 3600, 30m, 12h, 7d)"
            + (" or 'forever'" if forever else "")
        ) from None
    if not 0 <= seconds < float("inf"):  # also NaN
        raise click.BadParameter(f"{value!r}: a duration must be finite and >= 0")
    return seconds


def duration_or_forever(_ctx: click.Context, _param: click.Parameter, value: str) -> float | None:
    """A duration in seconds (``3600``, ``30m``, ``12h``, ``7d``) or ``forever``."""
    return parse_duration(value, forever=True)


def duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """A finite duration in seconds (``3600``, ``30m``, ``12h``, ``7d``)."""
    seconds = parse_duration(value, forever=False)
    assert seconds is not None  # forever=False never gives None
    return seconds


def shown(seconds: float | None) -> str:
    """A duration as ``--lookback``/``--keep-results`` read it (``7d``, ``forever``)."""
    if seconds is None:
        return "forever"
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}"


DEFAULT: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RunnerConfig)}
"""RunnerConfig's defaults: the ``run`` command's options default to them."""


def config_option(
    *decls: str, field: str | None = None, type: Any = float, **kwargs: Any
) -> Callable[[F], F]:
    """A ``run`` option for a RunnerConfig field (named like the flag unless ``field``
    says), defaulting to the field's default, shown in the help. Durations are shown as
    ``7d``/``forever``, and an off switch (None) as 0."""
    default = DEFAULT[field or decls[-1].removeprefix("--").replace("-", "_")]
    if type is str:
        default = shown(default)
    elif default is None:
        default = 0
    return click.option(*decls, type=type, default=default, show_default=True, **kwargs)
