"""Catalog: skipped tests with their reasons, an expected failure and an unexpected pass."""

from __future__ import annotations

import sys

import pytest

PRODUCTS = {"apple": "Apple", "bread": "Bread"}


def test_list_products() -> None:
    assert sorted(PRODUCTS) == ["apple", "bread"]


@pytest.mark.parametrize("slug", ["apple", "bread"])
def test_product_page(slug: str) -> None:
    assert PRODUCTS[slug] == slug.capitalize()


@pytest.mark.skip(reason="the catalog importer is being rewritten")
def test_import_catalog() -> None:
    pass


@pytest.mark.skipif(sys.platform != "win32", reason="checks Windows path handling only")
def test_windows_export_path() -> None:
    pass


def test_image_thumbnails() -> None:
    pytest.skip("no WebP encoder in this build")


@pytest.mark.xfail(reason="prices in JPY have no minor unit yet", raises=AssertionError)
def test_yen_prices() -> None:
    assert f"{1200:.2f}" == "1200"


@pytest.mark.xfail(reason="titles with accents were garbled before the UTF-8 fix")
def test_accented_titles() -> None:
    assert "Crème brûlée".encode().decode() == "Crème brûlée"
