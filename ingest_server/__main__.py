"""Run the server's CLI as ``python -m ingest_server``."""

import sys

from ingest_server.cli import main

sys.exit(main())
