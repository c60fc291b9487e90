"""Parsing uploads (CSV or JSON) into validated rows, collecting every row's errors together.

CSV list cells use ``;`` between items (``negotiation;public-speaking``); empty cells are absent.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from services.enrollment.domain.model import RowError

M = TypeVar("M", bound=BaseModel)
MAX_ROWS = 200_000


def _list_fields(model: type[BaseModel]) -> set[str]:
    fields = set()
    for name, info in model.model_fields.items():
        if "list[" in str(info.annotation):
            fields.add(name)
    return fields


def _csv_records(text: str, model: type[BaseModel]) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    known = set(model.model_fields)
    unknown = [c for c in reader.fieldnames or [] if c not in known]
    if unknown:
        raise ValueError(f"unknown CSV columns: {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    lists = _list_fields(model)
    records = []
    for raw in reader:
        record: dict[str, Any] = {}
        for key, value in raw.items():
            if key is None:
                record["__extra__"] = value
                continue
            value = (value or "").strip()
            if value == "":
                continue
            record[key] = [v.strip() for v in value.split(";") if v.strip()] if key in lists else value
        records.append(record)
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


def parse_rows(content: bytes, content_type: str, model: type[M]) -> tuple[list[M], list[RowError]]:
    """All valid rows and all errors; a caller stores nothing unless ``errors`` is empty."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [RowError(0, None, "the upload is not UTF-8 text")]
    if "csv" not in content_type:
        fast = _json_fast_path(content, model)
        if fast is not None:
            return fast, []
    try:
        if "csv" in content_type:
            records = _csv_records(text, model)
        else:
            data = json.loads(text)
            if isinstance(data, dict) and isinstance(data.get("rows"), list):
                data = data["rows"]
            if not isinstance(data, list):
                return [], [RowError(0, None, 'a JSON upload is a list of rows (or {"rows": [...]})')]
            records = data
    except (ValueError, csv.Error) as exc:
        return [], [RowError(0, None, f"unreadable upload: {exc}")]
    if len(records) > MAX_ROWS:
        return [], [RowError(0, None, f"at most {MAX_ROWS} rows per upload")]
    rows: list[M] = []
    errors: list[RowError] = []
    for i, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            errors.append(RowError(i, None, "a row must be an object"))
            continue
        if "__extra__" in record:
            errors.append(RowError(i, None, "more cells than columns"))
            continue
        try:
            rows.append(model.model_validate(record))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or None
                errors.append(RowError(i, field, err["msg"]))
    return rows, errors
