"""Parsing uploads (CSV or JSON) into validated rows, collecting every row's errors together.

CSV list cells use ``;`` between items (``negotiation;public-speaking``); empty cells are absent.
Row numbers: in a CSV file, the line the row starts on (the header is line 1, so the first data row
is 2), so an error points at the line an editor shows; in a JSON list, the row's 1-based position.
Row 0 means the upload as a whole (not UTF-8, not a list, unknown columns...).
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.base import message
from services.enrollment.domain.model import RowError

M = TypeVar("M", bound=BaseModel)
MAX_ROWS = 200_000


def _list_fields(model: type[BaseModel]) -> set[str]:
    fields = set()
    for name, info in model.model_fields.items():
        if "list[" in str(info.annotation):
            fields.add(name)
    return fields


def _breaks(value: str | list[str] | None) -> int:
    if isinstance(value, list):
        return sum(v.count("\n") for v in value)
    return (value or "").count("\n")


def _csv_records(text: str, model: type[BaseModel]) -> list[tuple[int, dict[str, Any]]]:
    """Each record with the file line it starts on (a quoted cell may span lines)."""
    reader = csv.DictReader(io.StringIO(text))
    known = set(model.model_fields)
    unknown = [c for c in reader.fieldnames or [] if c not in known]
    if unknown:
        raise ValueError(f"unknown CSV columns: {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    lists = _list_fields(model)
    records = []
    for raw in reader:
        # line_num is the record's last line; a quoted cell may hold line breaks, and blank lines
        # before the record were skipped, so count back from the end
        breaks = sum(_breaks(v) for v in raw.values())
        starts = reader.line_num - breaks
        record: dict[str, Any] = {}
        for key, value in raw.items():
            if key is None:
                record["__extra__"] = value
                continue
            value = (value or "").strip()
            if value == "":
                continue
            record[key] = [v.strip() for v in value.split(";") if v.strip()] if key in lists else value
        records.append((starts, record))
    return records


@functools.cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _json_fast_path(content: bytes, model: type[M]) -> list[M] | None:
    """A clean JSON list validated in one pass inside pydantic-core (no Python dicts per row); on any
    problem, None, and the row-by-row path finds and reports every error."""
    try:
        rows: list[M] = _list_adapter(model).validate_json(content)
    except ValidationError:
        return None
    return rows if len(rows) <= MAX_ROWS else None


@dataclass
class Upload(Generic[M]):
    """The valid rows with their row numbers, and every row's errors: store nothing unless ``errors`` is empty."""

    rows: list[M] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    unreadable_keys: set[str] = field(default_factory=set)
    """The ``key`` field's values of rows that failed, so later checks do not call them unknown."""


def parse_rows(content: bytes, content_type: str, model: type[M]) -> tuple[list[M], list[RowError]]:
    """All valid rows and all errors; a caller stores nothing unless ``errors`` is empty."""
    upload = parse_upload(content, content_type, model)
    return upload.rows, upload.errors


def parse_upload(content: bytes, content_type: str, model: type[M], key: str | None = None) -> Upload[M]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Upload(errors=[RowError(0, None, "the upload is not UTF-8 text")])
    if "csv" not in content_type:
        fast = _json_fast_path(content, model)
        if fast is not None:
            return Upload(rows=fast, numbers=list(range(1, len(fast) + 1)))
    try:
        if "csv" in content_type:
            records = _csv_records(text, model)
        else:
            data = json.loads(text)
            if isinstance(data, dict) and isinstance(data.get("rows"), list):
                data = data["rows"]
            if not isinstance(data, list):
                return Upload(errors=[RowError(0, None, 'a JSON upload is a list of rows (or {"rows": [...]})')])
            records = list(enumerate(data, start=1))
    except (ValueError, csv.Error) as exc:
        return Upload(errors=[RowError(0, None, f"unreadable upload: {exc}")])
    except RecursionError:
        return Upload(errors=[RowError(0, None, "unreadable upload: nested too deeply")])
    if len(records) > MAX_ROWS:
        return Upload(errors=[RowError(0, None, f"at most {MAX_ROWS} rows per upload")])
    upload: Upload[M] = Upload()
    for i, record in records:
        if not isinstance(record, dict):
            upload.errors.append(RowError(i, None, "a row must be an object"))
            continue
        if key is not None and record.get(key) is not None:
            upload.unreadable_keys.add(str(record[key]).strip())
        if "__extra__" in record:
            upload.errors.append(RowError(i, None, "more cells than columns"))
            continue
        try:
            row = model.model_validate(record)
        except ValidationError as exc:
            for err in exc.errors():
                name = ".".join(str(p) for p in err["loc"]) or None
                upload.errors.append(RowError(i, name, message(err), err["type"]))
            continue
        if key is not None:
            upload.unreadable_keys.discard(str(record[key]).strip())
        upload.rows.append(row)
        upload.numbers.append(i)
    return upload
