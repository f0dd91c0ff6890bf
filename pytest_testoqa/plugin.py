"""Entry point of the ``testoqa`` pytest plugin.

NOTE: the plugin registers no options or hooks yet; reporting from pytest
is not built. The ingest API it will use is complete and documented in
docs/api.md.
"""

from __future__ import annotations
