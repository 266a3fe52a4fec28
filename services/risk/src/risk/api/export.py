"""Tables as JSON or CSV: `?format=csv` or `Accept: text/csv` gives a CSV download."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response

Format = Literal["json", "csv"]


def wants_csv(request: Request, fmt: Format | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def table(
    request: Request,
    fmt: Format | None,
    name: str,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    meta: dict[str, Any] | None = None,
) -> Response:
    """`rows` (each with `columns`) as CSV, or as JSON `{**meta, "rows": rows}`."""
    if not wants_csv(request, fmt):
        return JSONResponse({**(meta or {}), "rows": list(rows)})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
