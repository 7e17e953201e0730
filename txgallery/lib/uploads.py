"""Reading uploaded files safely: one place that turns every way a CSV can be wrong into a clear message."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from txgallery.limits import MAX_UPLOAD_BYTES, InputError


def read_csv_rows(path: str | Path, max_bytes: int = MAX_UPLOAD_BYTES) -> list[dict[str, str]]:
    """The rows of an uploaded UTF-8 CSV as dicts, or an `InputError` for a file that is too big, binary, not
    UTF-8 or not a CSV."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"The file is {size / 1e6:.1f} MB; the upload limit is {max_bytes / 1e6:.0f} MB.")
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise InputError(f"{path.name} looks like a binary file, not a CSV text file.")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV.") from None
    try:
        return list(csv.DictReader(io.StringIO(content)))
    except csv.Error as exc:
        raise InputError(f"{path.name} is not a readable CSV: {exc}.") from None


def find_column(rows: list[dict[str, str]], candidates: tuple[str, ...]) -> str | None:
    """The header of the first column named like one of `candidates` (case and spaces ignored), or None."""
    columns = header_names(rows)
    return next((columns[c] for c in candidates if c in columns), None)


def header_names(rows: list[dict[str, str]]) -> dict[str, str]:
    """Normalised name -> the header as written, for the CSV's columns."""
    return {name.strip().lower(): name for name in (rows[0].keys() if rows else []) if name}
