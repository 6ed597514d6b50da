"""What the public API returns is itself public (exported from ``aqueue``)."""

from __future__ import annotations

import typing

import aqueue


def test_options_return_exported_types() -> None:
    assert typing.get_type_hints(aqueue.Queue.options)["return"] is aqueue.BoundQueue
    assert "BoundQueue" in aqueue.__all__
    hint = typing.get_type_hints(aqueue.Task.options)["return"]
    assert typing.get_origin(hint) is aqueue.BoundTask
    assert "BoundTask" in aqueue.__all__
