"""`tenderpool notices export`: JSON Lines or CSV, one line per notice, streamed."""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import TextIO

from sqlalchemy.orm import Session

from tenderpool.notices.services import EXPORT_KEYS, iter_export

# CSV cells cannot hold lists: these columns carry JSON.
_JSON_COLUMNS = {"departments", "nuts", "cpv", "lots", "awards", "publications", "changes"}


def write_export(session: Session, out: TextIO, *, fmt: str, since: dt.date | None, now: dt.datetime) -> int:
    """Write the export to ``out``; return the number of notices written."""
    count = 0
    if fmt == "jsonl":
        for row in iter_export(session, now=now, since=since):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        return count
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_KEYS))
    writer.writeheader()
    for row in iter_export(session, now=now, since=since):
        writer.writerow(
            {k: json.dumps(v, ensure_ascii=False) if k in _JSON_COLUMNS else v for k, v in row.items()}
        )
        count += 1
    return count
