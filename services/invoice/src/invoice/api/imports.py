"""/v1/imports/{kind}: bulk import of an ERP's CSV export (customers, invoices, payments).

The CSV comes as a multipart upload (`file`, with `mapping` as a form field or file) or as a
`text/csv` body (with `?mapping=`). `mapping` is a name (`sage100`, `generic-example`) or the
mapping itself as JSON/YAML; server file paths are not accepted. The import is idempotent by
external id, so a retried request creates nothing new (no Idempotency-Key needed). Each batch
of rows commits on its own: a 201 reports what was created, updated, skipped and rejected
(with row, column and reason); a 422 means nothing was written.
"""

from __future__ import annotations

from typing import Annotated, Any

from duewise_service.problems import DomainError
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import UploadFile

from invoice.auth import CanImport
from invoice.imports.mapping import Kind, Mapping, MappingError, load_mapping, mapping_from_text
from invoice.imports.parse import FileError, RowParser, read_csv
from invoice.imports.runner import ImportReport, import_rows

router = APIRouter(prefix="/imports", tags=["imports"])

MAX_BYTES = 50 * 1024 * 1024
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")
#: The write scope a kind needs besides `import:write`.
KIND_SCOPES: dict[str, str] = {
    "customers": "customers:write",
    "invoices": "invoices:write",
    "payments": "payments:write",
}

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "mapping": {
                            "type": "string",
                            "description": "sage100, generic-example, or a mapping as JSON/YAML",
                        },
                    },
                }
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/{kind}",
    status_code=201,
    response_model=ImportReport,
    openapi_extra=_BODY,
    responses={422: {"description": "unreadable file, missing column or bad mapping"}},
)
async def import_csv(
    kind: Kind,
    request: Request,
    principal: CanImport,
    mapping: Annotated[
        str | None, Query(description="sage100, generic-example, or inline JSON")
    ] = None,
) -> JSONResponse:
    """Import a CSV export of `kind`; good rows land even when others are rejected."""
    needed = KIND_SCOPES[kind]
    if needed not in principal.scopes:
        raise DomainError(
            403,
            "Forbidden",
            f"importing {kind} needs the scope {needed!r} as well as 'import:write'",
            code="forbidden",
        )
    data, spec = await _upload(request)
    chosen = _mapping(spec or mapping or "sage100", kind)
    try:
        header, reader = read_csv(data, chosen)
        RowParser(chosen, kind).check_header(header)
        rows = list(reader)
    except FileError as exc:
        title = "Missing column" if exc.column else "Unreadable file"
        raise DomainError(422, title, f"file: {exc.reason}", exc.column or "file") from exc
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    report = await import_rows(session_factory=maker, kind=kind, rows=rows, mapping=chosen)
    return JSONResponse(report.model_dump(mode="json"), status_code=201)


async def _upload(request: Request) -> tuple[bytes, Mapping | str | None]:
    """The CSV bytes and the mapping given with them (a name/JSON, or an uploaded file)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_BYTES:
        raise _too_large()
    if ctype == "multipart/form-data":
        form = await request.form(max_part_size=MAX_BYTES)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise DomainError(
                422, "File required", "file: send the CSV as the multipart part 'file'", "file"
            )
        data = await upload.read()
        given = form.get("mapping")
        spec: Mapping | str | None
        if isinstance(given, UploadFile):
            text = (await given.read()).decode("utf-8", errors="replace")
            spec = _parse_mapping_text(text, given.filename or "uploaded")
        else:
            spec = given
        return _checked(data), spec
    if ctype in CSV_TYPES or not ctype:
        return _checked(await request.body()), None
    raise DomainError(
        415,
        "Unsupported media type",
        f"send multipart/form-data (part 'file') or text/csv, not {ctype}",
        code="unsupported-media-type",
    )


def _checked(data: bytes) -> bytes:
    if len(data) > MAX_BYTES:
        raise _too_large()
    if not data.strip():
        raise DomainError(422, "Unreadable file", "file: the file is empty", "file")
    return data


def _too_large() -> DomainError:
    return DomainError(
        413,
        "File too large",
        f"file: at most {MAX_BYTES // (1024 * 1024)} MB per request; split it or use the "
        "`invoice import` command",
        "file",
    )


def _parse_mapping_text(text: str, origin: str) -> Mapping:
    try:
        return mapping_from_text(text, origin=origin)
    except MappingError as exc:
        raise DomainError(422, "Invalid mapping", f"mapping: {exc}", "mapping") from exc


def _mapping(spec: Mapping | str, kind: Kind) -> Mapping:
    try:
        chosen = spec if isinstance(spec, Mapping) else _load(spec)
        chosen.for_kind(kind)
    except (MappingError, ValueError) as exc:
        raise DomainError(422, "Invalid mapping", f"mapping: {exc}", "mapping") from exc
    return chosen


def _load(spec: str) -> Mapping:
    if spec.lstrip().startswith(("{", "name:")) or "\n" in spec:
        return mapping_from_text(spec)
    return load_mapping(spec, allow_files=False)
