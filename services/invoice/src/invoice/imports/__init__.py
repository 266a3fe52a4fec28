"""Bulk import of ERP exports (CSV): customers, open invoices and payments.

`mapping` says how a file's columns become duewise fields (the built-in `sage100`, or a YAML /
TOML file such as `mappings/generic-example.yaml`); `parse` reads rows into the service's
Create models; `runner.import_rows` writes them through the service's use cases, idempotent by
external id; `commands.import_app` is the `invoice import` CLI and `invoice.api.imports` the
`POST /v1/imports/{kind}` endpoint.
"""

from invoice.imports.mapping import KINDS, Kind, Mapping, MappingError, load_mapping
from invoice.imports.parse import FileError, RowError, read_csv
from invoice.imports.runner import ImportReport, RejectedRow, import_rows

__all__ = [
    "KINDS",
    "FileError",
    "ImportReport",
    "Kind",
    "Mapping",
    "MappingError",
    "RejectedRow",
    "RowError",
    "import_rows",
    "load_mapping",
    "read_csv",
]
