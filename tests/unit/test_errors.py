"""The exception hierarchy: one root, every class defined in ``aqueue._errors``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import aqueue
from aqueue import _errors


def _package_modules() -> list[str]:
    names = ["aqueue"]
    for info in pkgutil.walk_packages(aqueue.__path__, "aqueue."):
        if info.name != "aqueue.__main__":  # importing it runs the CLI
            names.append(info.name)
    return names


def test_every_aqueue_exception_is_defined_in_errors() -> None:
    elsewhere = []
    for name in _package_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and name != "aqueue._errors"
                and not attr.startswith("_")  # private control-flow signals
            ):
                elsewhere.append(f"{name}.{attr}")
    assert elsewhere == []


def test_public_errors_share_one_root() -> None:
    exported = [getattr(aqueue, n) for n in aqueue.__all__]
    errors = [e for e in exported if inspect.isclass(e) and issubclass(e, BaseException)]
    assert errors
    for e in errors:
        assert e.__module__ == "aqueue._errors", e
        assert issubclass(e, aqueue.AqueueError) or issubclass(e, aqueue.Retry), e
    defined = {
        v
        for v in vars(_errors).values()
        if inspect.isclass(v) and issubclass(v, aqueue.AqueueError)
    }
    internal = {_errors.UnsupportedMessageError}
    assert defined - internal == {e for e in errors if not issubclass(e, aqueue.Retry)}


def test_families() -> None:
    assert issubclass(aqueue.JobExpiredError, aqueue.JobError)
    assert issubclass(aqueue.ResultTimeoutError, aqueue.JobError)
    assert issubclass(aqueue.EnqueueOutcomeUnknownError, aqueue.StoreError)
    assert issubclass(aqueue.EmbeddedServerError, aqueue.BackendError)
    assert issubclass(_errors.UnsupportedMessageError, aqueue.SerializationError)
    assert not issubclass(aqueue.Retry, aqueue.AqueueError)
    err = aqueue.JobExpiredError("j1", "job j1 was not started before its deadline")
    assert err.job_id == "j1"


def test_current_job_outside_a_job_raises_a_named_error() -> None:
    with pytest.raises(aqueue.NoCurrentJobError, match="outside a running aqueue job"):
        aqueue.current_job()
    assert issubclass(aqueue.NoCurrentJobError, aqueue.AqueueError)
    assert issubclass(aqueue.NoCurrentJobError, LookupError)
