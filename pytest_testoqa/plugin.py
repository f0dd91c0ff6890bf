"""Entry point of the ``testoqa`` pytest plugin, registered through ``pytest11``.

The plugin is inactive until a project is set; inactive, it only adds its
options and marker, and imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_testoqa import settings as settings_module

RECORDER_NAME = "testoqa-recorder"


def pytest_addoption(parser: pytest.Parser) -> None:
    settings_module.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_testoqa import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "testoqa(key): pin the TestoQA case key of a test, such as "
        "@pytest.mark.testoqa(key='CHECKOUT-12'), so renames keep its history",
    )
    if config.option.collectonly or config.getoption("help", False):
        return
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        _configure_worker(config, worker_input)
        return
    if not settings_module.project_requested(config):
        return  # inactive: no CI detection, no git, no imports
    from pytest_testoqa import ci

    info = ci.detect(os.environ, config.rootpath)
    resolved = settings_module.resolve(config, info.build_id)
    if resolved is None:
        return
    from pytest_testoqa.recorder import Recorder, new_identity

    identity = new_identity(config, resolved, info)
    recorder = Recorder(config, resolved, identity, process="main")
    config.pluginmanager.register(recorder, RECORDER_NAME)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(recorder), "testoqa-xdist")


def _configure_worker(config: pytest.Config, worker_input: dict[str, Any]) -> None:
    shared = worker_input.get("testoqa")
    if shared is None:
        return  # the controller has no active TestoQA recorder
    from pytest_testoqa.recorder import Recorder, RunIdentity

    resolved = settings_module.resolve(config, None)
    if resolved is None:
        return
    identity = RunIdentity(shared["client_run_id"], shared["run_body"])
    recorder = Recorder(config, resolved, identity, process=str(worker_input["workerid"]))
    recorder.send_cases = bool(shared.get("send_cases", True))
    config.pluginmanager.register(recorder, RECORDER_NAME)


class XdistHooks:
    """Hooks that exist only when pytest-xdist is installed."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # With workers, this process is the controller: it runs no tests.
        if session.config.pluginmanager.hasplugin("dsession"):
            self.recorder.process = "controller"

    def pytest_configure_node(self, node: Any) -> None:
        """Hand the run's identity to a starting worker as plain data."""
        identity = self.recorder.identity
        node.workerinput["testoqa"] = {
            "client_run_id": identity.client_run_id,
            "run_body": identity.run_body,
            # Every worker collects the same tests, so one of them sends the
            # cases; the others only compute their keys.
            "send_cases": node.gateway.id == "gw0",
        }

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Fold a finished worker's delivery figures into this controller's."""
        output = getattr(node, "workeroutput", None) or {}
        if "testoqa" in output:
            self.recorder.stats.merge(output["testoqa"])


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in (RECORDER_NAME, "testoqa-xdist"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)
