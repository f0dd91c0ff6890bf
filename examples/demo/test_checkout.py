"""Checkout: an error in a fixture, a missing key that fails two tests, and a regression."""

from __future__ import annotations

from typing import Any

import pytest


def order_summary(order: dict[str, Any]) -> str:
    # The bug this demo reports: orders created before currencies existed
    # have no "currency" key.
    return f"{order['total']:.2f} {order['currency']}"


@pytest.fixture
def payment_gateway() -> None:
    # Simulates a service that is down while the suite runs. Every test
    # that needs it ends in an error, not a failure.
    raise ConnectionRefusedError("payment gateway at sandbox.invalid:443 refused the connection")


@pytest.fixture
def legacy_order() -> dict[str, Any]:
    return {"id": 17, "total": 23.5}


def test_pay_by_card(payment_gateway: None) -> None:
    pytest.fail("not reached: the fixture fails first")


def test_order_summary(legacy_order: dict[str, Any]) -> None:
    assert order_summary(legacy_order) == "23.50 EUR"


def test_invoice_lines(legacy_order: dict[str, Any]) -> None:
    lines = [order_summary(legacy_order), "VAT included"]
    assert len(lines) == 2


def test_price_cache_expires(round_number: int) -> None:
    # From round 3 on, a change keeps stale prices in the cache. The new
    # failure is still failing in the next run.
    cached_price = 6.5 if round_number >= 3 else 7.0
    assert cached_price == 7.0, f"cached price is stale: expected 7.0, got {cached_price}"


def test_refund() -> None:
    paid, refunded = 23.5, 23.5
    assert paid - refunded == 0
