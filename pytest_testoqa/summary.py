"""The plugin's section of pytest's terminal summary."""

from __future__ import annotations

import shlex
from typing import Any

from pytest_testoqa.settings import Settings

FATAL_HINTS = {
    401: "the token was rejected: check TESTOQA_TOKEN (missing, mistyped or revoked)",
    403: "the token's role may not report results: create a token with --role reporter",
    404: "the project was not found on the server, or the token belongs to another project",
}


def upload_command(settings: Settings) -> str:
    return f"TESTOQA_TOKEN=... testoqa upload --url {shlex.quote(settings.url)} " + shlex.quote(
        str(settings.spool_dir)
    )


def write_summary(terminal: Any, stats: Any, settings: Settings) -> None:
    """Write one short section: where the report is, or what went wrong and how to recover."""
    delivered = stats.accepted + stats.duplicate
    if stats.fatal:
        terminal.write_sep("=", "TestoQA: results NOT delivered", red=True, bold=True)
        hint = FATAL_HINTS.get(stats.fatal_status or 0, "the server rejected the request")
        terminal.write_line(f"{hint} (server response: {stats.fatal})", red=True)
    elif stats.spool_files:
        terminal.write_sep("-", "TestoQA")
        reason = stats.error or "the final flush deadline passed"
        terminal.write_line(f"results not delivered: {reason}")
    else:
        terminal.write_sep("-", "TestoQA")
        where = stats.report_url or settings.url
        terminal.write_line(f"{delivered} executions sent to project {settings.project}: {where}")
    for problem in stats.problems[:10]:
        terminal.write_line(f"warning: {problem}", yellow=True)
    if len(stats.problems) > 10:
        terminal.write_line(f"warning: and {len(stats.problems) - 10} more problems", yellow=True)
    if stats.rejected:
        terminal.write_line(f"{stats.rejected} executions were rejected by the server as invalid")
    if stats.rejection:
        terminal.write_line(f"first rejection: {stats.rejection}")
    if stats.spool_files:
        terminal.write_line(
            f"{stats.pending} executions and the run's events are kept in "
            f"{settings.spool_dir}; send them later with:"
        )
        terminal.write_line(f"  {upload_command(settings)}")
