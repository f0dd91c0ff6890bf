"""Every report template escapes what it shows: no template may opt out of auto-escaping."""

from __future__ import annotations

import re

import aiohttp_jinja2
import jinja2
import pytest
from aiohttp import web

from ingest_server.web.templating import setup_templates

# Ways a Jinja2 template can print a value without escaping it.
UNESCAPED = re.compile(r"\|\s*safe\b|{%-?\s*autoescape\s+false|\bMarkup\s*\(")


def template_environment() -> jinja2.Environment:
    app = web.Application()
    setup_templates(app)
    return app[aiohttp_jinja2.APP_KEY]


TEMPLATES = template_environment().list_templates(extensions=["html"])


def test_environment_escapes_every_template() -> None:
    environment = template_environment()

    assert environment.autoescape is True
    assert TEMPLATES, "no templates found"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_never_unescapes(name: str) -> None:
    environment = template_environment()
    assert environment.loader is not None
    source, _, _ = environment.loader.get_source(environment, name)

    assert UNESCAPED.search(source) is None, f"{name} prints a value without escaping it"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_compiles(name: str) -> None:
    template_environment().get_template(name)
