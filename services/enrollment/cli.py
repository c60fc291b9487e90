"""Bulk enrolment from the command line, through the enrollment API, with progress bars.

    python -m services.enrollment.cli enrol PROGRAM_ID enrolments.csv [--url http://127.0.0.1:18081]
    python -m services.enrollment.cli org-chart org.csv

The file is checked row by row locally first (the same rules the server applies to each row), so a
bad file is reported whole without a round trip; then it is uploaded as ONE request, which the server
stores all or nothing. Without ``--token`` a development admin token for the local stack is used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
from tqdm import tqdm

from runtime.auth import issue_token, jwt_config_from_env
from services.enrollment.domain.model import EnrolmentRequest, OrgPerson
from services.enrollment.domain.uploads import parse_rows

CHUNK = 64 * 1024


def _dev_token() -> str:
    """A short-lived admin token signed with the enrollment service's own JWT settings (env or defaults)."""
    config = jwt_config_from_env("enrollment")
    return issue_token(config, "cli-admin", ["admin"], ttl_seconds=3600)


def _content_type(path: Path) -> str:
    return "text/csv" if path.suffix.lower() == ".csv" else "application/json"


def _chunks(data: bytes, bar: tqdm) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        piece = data[start : start + CHUNK]
        bar.update(len(piece))
        yield piece


def _server_errors(response: httpx.Response) -> list[str]:
    """The API's errors as ``row N: field: message`` lines (loc is ``["body", row, field...]``)."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return [response.text[:4000]]
    if not isinstance(detail, list):
        return [str(detail)]
    lines = []
    for item in detail:
        loc = [str(p) for p in item.get("loc", [])[1:]]
        where = f"row {loc[0]}: {'.'.join(loc[1:]) or '-'}" if loc and loc[0].isdigit() else ".".join(loc) or "upload"
        lines.append(f"{where}: {item.get('msg')}")
    return lines


def upload(url: str, token: str, path: Path, model: type[EnrolmentRequest] | type[OrgPerson]) -> int:
    data = path.read_bytes()
    content_type = _content_type(path)
    rows, errors = parse_rows(data, content_type, model)
    with tqdm(total=len(rows) + len(errors), unit="row", desc="checked", file=sys.stderr) as bar:
        bar.update(len(rows) + len(errors))
    if errors:
        for e in errors[:50]:
            print(f"row {e.row}: {e.field or '-'}: {e.message}", file=sys.stderr)
        print(f"{len(errors)} bad row(s): nothing uploaded", file=sys.stderr)
        return 1
    with tqdm(total=len(data), unit="B", unit_scale=True, desc="uploading", file=sys.stderr) as bar:
        response = httpx.post(
            url,
            content=_chunks(data, bar),
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            timeout=600,
        )
    if response.status_code >= 400:
        print(f"the server refused the upload ({response.status_code}), nothing stored:", file=sys.stderr)
        for line in _server_errors(response)[:50]:
            print(line, file=sys.stderr)
        return 1
    print(response.text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.enrollment.cli", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:18081", help="the enrollment service")
    parser.add_argument("--token", help="bearer token of an admin (default: a local development token)")
    sub = parser.add_subparsers(dest="command", required=True)
    enrol = sub.add_parser("enrol", help="bulk-enrol a CSV or JSON file into a program")
    enrol.add_argument("program_id")
    enrol.add_argument("file", type=Path)
    org = sub.add_parser("org-chart", help="import an org chart (CSV or JSON)")
    org.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    token = args.token or _dev_token()
    if args.command == "enrol":
        return upload(f"{args.url}/programs/{args.program_id}/enrolments/bulk", token, args.file, EnrolmentRequest)
    return upload(f"{args.url}/org-chart", token, args.file, OrgPerson)


if __name__ == "__main__":
    sys.exit(main())
