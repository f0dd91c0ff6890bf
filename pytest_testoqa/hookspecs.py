"""Hooks other plugins and conftest.py files can implement to shape what TestoQA reports."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=False)
def pytest_testoqa_run_metadata(config: pytest.Config) -> dict[str, str] | None:
    """Return extra run metadata, such as a deployment name or feature flags.

    Keys and values are strings; the results of all implementations are
    merged and stored with the run's environment. Example::

        def pytest_testoqa_run_metadata(config):
            return {"deployment": "staging", "feature_flags": "new-checkout"}
    """


@pytest.hookspec(firstresult=True)
def pytest_testoqa_execution(
    execution: dict[str, Any], report: pytest.TestReport
) -> dict[str, Any] | bool | None:
    """Edit or drop an execution before it is spooled and sent.

    ``execution`` is the payload about to be spooled; ``report`` is the
    attempt's last phase report. Return a new payload to replace it,
    ``False`` to drop it, or ``None`` to keep it. Example::

        def pytest_testoqa_execution(execution, report):
            execution["stdout"] = None  # never upload captured output
            return execution
    """


@pytest.hookspec(firstresult=True)
def pytest_testoqa_exclude(item: pytest.Item) -> bool | None:
    """Return True to keep an item out of reporting: neither its case nor its executions.

    Example::

        def pytest_testoqa_exclude(item):
            return item.get_closest_marker("local_only") is not None
    """
