#!/usr/bin/env bash
# Set up TestoQA in .venv and start the demo: a server with the project DEMO,
# a user to sign in with, and the example suite's runs. Arguments go to
# testoqa-quickstart, for example: bash quickstart.sh --port 8090
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "quickstart.sh: error: $python not found: install Python 3.11 or later," \
        "or set PYTHON to its path" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "quickstart.sh: error: $("$python" --version 2>&1) is too old: TestoQA needs" \
        "Python 3.11 or later; set PYTHON to such an interpreter" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "Creating the virtual environment .venv"
    if ! "$python" -m venv .venv; then
        echo "quickstart.sh: error: '$python -m venv' failed; on Debian and Ubuntu" \
            "install the python3-venv package" >&2
        exit 1
    fi
fi

# Installing takes a while, so it runs again only when pyproject.toml changed.
stamp=.venv/.testoqa-quickstart-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/testoqa-quickstart ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "Installing TestoQA with the server and the example suite's packages into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[server,examples]'
    echo "$wanted" >"$stamp"
fi

exec .venv/bin/testoqa-quickstart "$@"
