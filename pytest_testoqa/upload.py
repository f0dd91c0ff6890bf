"""``testoqa upload``: send spooled results that a pytest session could not deliver."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pytest_testoqa import spool
from pytest_testoqa.client import ApiClient
from pytest_testoqa.delivery import Delivery, GiveUp
from pytest_testoqa.settings import DEFAULT_SPOOL_DIR, DEFAULT_TIMEOUT, TOKEN_ENV

EXIT_OK = 0
EXIT_UNDELIVERED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testoqa",
        description="Tools of the TestoQA pytest plugin. The token is read from $TESTOQA_TOKEN.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    upload = commands.add_parser(
        "upload", help="send spooled results to the server, then delete what it acknowledged"
    )
    upload.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="SPOOL_DIR_OR_FILE",
        help=f"spool directories or .jsonl files (default: {DEFAULT_SPOOL_DIR})",
    )
    upload.add_argument(
        "--url",
        default=os.environ.get("TESTOQA_URL"),
        help="server URL (default: $TESTOQA_URL, else the URL recorded in each spool file)",
    )
    upload.add_argument("--dry-run", action="store_true", help="show what would be sent")
    upload.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for one server response (default: {DEFAULT_TIMEOUT})",
    )
    return parser


def _describe(path: Path) -> tuple[spool.SpoolHeader, list[spool.Event]]:
    header, events = spool.read(path)
    acked = spool.read_acks(path)
    return header, [e for e in events if e.seq not in acked or e.kind == "run"]


def _upload_file(path: Path, args: argparse.Namespace, token: str | None) -> bool:
    header, pending = _describe(path)
    counts = Counter(e.kind for e in pending if e.kind != "run")
    labels = {"cases": "case batches", "execution": "executions", "finish": "run finish"}
    summary = ", ".join(f"{n} {labels.get(kind, kind)}" for kind, n in sorted(counts.items()))
    summary = summary or "nothing"
    url = (args.url or header.url).rstrip("/")
    if args.dry_run:
        print(f"{path}: would send {summary} to project {header.project} at {url}")
        return True
    if not counts:
        spool.compact(path)
        return True
    client = ApiClient(url, header.project, token, args.timeout)
    with open(path.with_suffix(spool.ACKS_SUFFIX), "a", encoding="ascii") as acks:

        def acknowledge(seqs: list[int]) -> None:
            acks.write("".join(f"{seq}\n" for seq in seqs))
            acks.flush()

        delivery = Delivery(client, acknowledge)
        try:
            delivery.deliver(pending)
        except GiveUp:
            error = delivery.stats.fatal or delivery.stats.last_error
            print(
                f"{path}: not delivered: {error.message if error else 'unknown error'}",
                file=sys.stderr,
            )
    remaining = spool.compact(path)
    stats = delivery.stats
    print(
        f"{path}: {stats.accepted} executions stored, {stats.duplicate} already stored, "
        f"{stats.rejected} rejected; {remaining} left"
    )
    return not path.exists()


def upload(args: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV)
    if not token and not args.dry_run:
        print(
            f"testoqa upload: error: set ${TOKEN_ENV} to a reporter token of the project",
            file=sys.stderr,
        )
        return EXIT_USAGE
    paths = args.paths or [Path(DEFAULT_SPOOL_DIR)]
    try:
        files = list(spool.spool_files(paths))
    except spool.SpoolError as exc:
        print(f"testoqa upload: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print("Nothing to upload: no spool files found in " + ", ".join(map(str, paths)))
        return EXIT_OK
    ok = True
    for path in files:
        try:
            ok = _upload_file(path, args, token) and ok
        except spool.SpoolError as exc:
            print(f"testoqa upload: error: {exc}", file=sys.stderr)
            ok = False
    return EXIT_OK if ok else EXIT_UNDELIVERED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return upload(args)


if __name__ == "__main__":
    sys.exit(main())
