"""Cart arithmetic: parametrized tests, and a rounding bug that fails two of them."""

from __future__ import annotations

import pytest

PRICES = {"apple": 0.5, "bread": 2.25, "coffee": 7.0}


def line_total(item: str, quantity: int) -> float:
    return PRICES[item] * quantity


def discounted(total: float, percent: int) -> float:
    # The bug this demo reports: the result is rounded to whole units, not cents.
    return round(total * (1 - percent / 100))


def shipping_cost(total: float, round_number: int) -> float:
    # Round 1 runs the old code, which charged shipping at exactly 50.00.
    # Later rounds run the fix, so the report shows the test as fixed.
    if round_number == 1:
        return 0.0 if total > 50 else 4.95
    return 0.0 if total >= 50 else 4.95


def test_add_item() -> None:
    cart = {"apple": 2}
    cart["bread"] = cart.get("bread", 0) + 1
    assert cart == {"apple": 2, "bread": 1}


def test_remove_item() -> None:
    cart = {"apple": 2, "bread": 1}
    del cart["apple"]
    assert cart == {"bread": 1}


@pytest.mark.parametrize(
    ("item", "quantity", "expected"),
    [("apple", 4, 2.0), ("bread", 2, 4.5), ("coffee", 1, 7.0)],
    ids=["apple", "bread", "coffee"],
)
def test_line_total(item: str, quantity: int, expected: float) -> None:
    assert line_total(item, quantity) == expected


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [(19.99, 10, 17.99), (49.95, 25, 37.46)],
    ids=["10-percent", "25-percent"],
)
def test_discounted_total(total: float, percent: int, expected: float) -> None:
    assert discounted(total, percent) == expected


def test_free_shipping_from_50(round_number: int) -> None:
    assert shipping_cost(50.0, round_number) == 0.0
