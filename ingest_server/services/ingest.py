"""Execution batches: validate each item, store new ids once, count what happened."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ingest_server import schemas
from ingest_server.db.engine import Database
from ingest_server.db.notify import EventBus
from ingest_server.repositories import cases as case_repo
from ingest_server.repositories import executions as execution_repo
from ingest_server.repositories import results as result_repo
from ingest_server.services.authz import Action
from ingest_server.services.clock import utcnow
from ingest_server.services.context import RequestContext
from ingest_server.services.errors import FieldError, InvalidInput
from ingest_server.services.runs import load_run

_execution_adapter: TypeAdapter[schemas.ExecutionIn] = TypeAdapter(schemas.ExecutionIn)


class BatchTooLarge(InvalidInput):
    """More items in one batch than the server accepts."""

    code = "batch_too_large"


@dataclass
class _Sorted:
    valid: list[schemas.ExecutionIn]
    rejected: list[schemas.RejectedItem]
    repeated_in_batch: int


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Turn pydantic's errors into FieldErrors with dotted paths and plain messages."""
    details = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        details.append(FieldError(path or None, error["msg"]))
    return details


def _sort_items(items: list[Any]) -> _Sorted:
    valid: list[schemas.ExecutionIn] = []
    rejected: list[schemas.RejectedItem] = []
    seen: set[uuid.UUID] = set()
    repeated = 0
    for index, item in enumerate(items):
        try:
            execution = (
                item
                if isinstance(item, schemas.ExecutionIn)
                else _execution_adapter.validate_python(item)
            )
        except ValidationError as exc:
            reason = "; ".join(
                f"{detail.field}: {detail.message}" if detail.field else detail.message
                for detail in describe_validation_error(exc)
            )
            raw_id = item.get("id") if isinstance(item, dict) else None
            rejected.append(
                schemas.RejectedItem(
                    index=index,
                    id=str(raw_id)[:100] if raw_id is not None else None,
                    message=reason,
                )
            )
            continue
        if execution.id in seen:
            repeated += 1
            continue
        seen.add(execution.id)
        valid.append(execution)
    return _Sorted(valid=valid, rejected=rejected, repeated_in_batch=repeated)


def _row(execution: schemas.ExecutionIn, run_id: uuid.UUID, case_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": execution.id,
        "run_id": run_id,
        "case_id": case_id,
        "attempt": execution.attempt,
        "outcome": execution.outcome,
        "phase": execution.phase,
        "duration": execution.duration,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "worker": execution.worker,
        "message": execution.message,
        "traceback": execution.traceback,
        "stdout": execution.stdout,
        "stderr": execution.stderr,
        "log": execution.log,
        "reason": execution.reason,
        "parameters": execution.parameters,
        "phases": {name: phase.model_dump() for name, phase in execution.phases.items()},
    }


class IngestService:
    def __init__(
        self, database: Database, *, max_batch_items: int, events: EventBus | None = None
    ) -> None:
        self._db = database
        self.max_batch_items = max_batch_items
        # Told after each committed batch, so live pages of the run update.
        self._events = events

    async def ingest(
        self, ctx: RequestContext, run_id: uuid.UUID, items: list[Any]
    ) -> schemas.BatchResult:
        """Store the batch's new executions in one transaction before returning.

        Invalid items are rejected one by one; a repeated id, in this batch or
        stored before, counts as a duplicate and is not stored again.
        """
        project = ctx.require(Action.REPORT_RESULTS)
        if len(items) > self.max_batch_items:
            raise BatchTooLarge(
                f"batch of {len(items)} executions is over the limit of "
                f"{self.max_batch_items}: split it into smaller batches",
                details=[FieldError("executions", f"at most {self.max_batch_items} items")],
            )
        sorted_items = _sort_items(items)
        inserted: set[uuid.UUID] = set()
        now = utcnow()
        async with self._db.write() as session:
            run = await load_run(session, project, run_id)
            if sorted_items.valid:
                keys = {e.case_key: e.node_id for e in sorted_items.valid}
                case_ids = await case_repo.ensure_cases(session, project.id, keys, now=now)
                rows = [
                    {**_row(e, run_id, case_ids[e.case_key]), "received_at": now}
                    for e in sorted_items.valid
                ]
                inserted = await execution_repo.insert_new(session, project.id, rows)
            if inserted and run.status != "running":
                # Late executions of a settled run (a spool uploaded afterwards)
                # change its materialized summary.
                await result_repo.summarize_run(session, project.id, run_id, now=now)
        if inserted and self._events is not None:
            await self._events.publish(project.id, run_id, "executions")
        duplicate = len(sorted_items.valid) - len(inserted) + sorted_items.repeated_in_batch
        return schemas.BatchResult(
            accepted=len(inserted),
            duplicate=duplicate,
            rejected=len(sorted_items.rejected),
            rejected_items=sorted_items.rejected,
        )
