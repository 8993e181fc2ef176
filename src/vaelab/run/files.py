"""Writing files whole or not at all (a run's records, checkpoints, exports), rewriting a CSV log without the
rows after a resume point, and values JSON can hold."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, content: bytes | str) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, flushed to disk, renamed over it; a failure (a
    full disk) removes the temporary file and leaves ``path`` as it was."""
    data = content.encode() if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)  # a failed write() names no file: name the one it was for
        raise


def drop_rows_from(path: Path, step: int) -> list[str]:
    """Rewrite the CSV file ``path`` without its rows at ``step`` or later (logged after the checkpoint a run resumes
    from, they would be repeated), whole or not at all; returns its columns ([] without the file)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    kept = [row for row in rows if row.get("step") and int(float(row["step"])) < step]
    if len(kept) != len(rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)
        write_atomic(path, text.getvalue())
    return columns


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity (in dicts and lists) as None, which JSON writes as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
