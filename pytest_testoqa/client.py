"""A small HTTP client of the ingest API, on the standard library only."""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pytest_testoqa import __version__

USER_AGENT = f"pytest-testoqa/{__version__}"
MAX_RETRY_AFTER = 120.0


class DeliveryError(Exception):
    """A request that failed; ``retryable`` is whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


def parse_retry_after(value: str | None) -> float | None:
    """Return the seconds a Retry-After header requests to wait (delta or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))


def _error_message(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return f"{status} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


class ApiClient:
    """Send JSON requests to one project of one server with a bearer token."""

    def __init__(self, url: str, project: str, token: str | None, timeout: float) -> None:
        self.base = f"{url}/api/v1/projects/{quote(project, safe='')}"
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any]) -> Response:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return self.request_raw(method, path, data)

    def request_raw(self, method: str, path: str, data: bytes) -> Response:
        """Send data, a JSON document already encoded, and return the decoded response."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # The URL's scheme is limited to http and https when settings are read.
        url = self.base + path
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return Response(answer.status, json.loads(answer.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"server unreachable: {reason}", retryable=True) from None
        except ValueError as exc:
            raise DeliveryError(
                f"invalid response from the server: {exc}", retryable=True
            ) from None

    @staticmethod
    def _http_error(exc: urllib.error.HTTPError) -> DeliveryError:
        raw = exc.read() if exc.fp is not None else b""
        message = _error_message(exc.code, raw)
        retryable = exc.code >= 500 or exc.code in (408, 429)
        return DeliveryError(
            message,
            retryable=retryable,
            status=exc.code,
            retry_after=parse_retry_after(exc.headers.get("Retry-After")),
        )

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/runs", body).body

    def put_cases(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/runs/{run_id}/cases", body).body

    def post_executions(self, run_id: str, executions: list[bytes]) -> dict[str, Any]:
        """Post a batch of executions, each already encoded as JSON."""
        data = b'{"executions":[' + b",".join(executions) + b"]}"
        return self.request_raw("POST", f"/runs/{run_id}/executions", data).body

    def finish_run(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/runs/{run_id}/finish", body).body
