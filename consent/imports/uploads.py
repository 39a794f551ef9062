"""The uploaded file kept for the worker: stored in chunks at upload, read back
once by the job, deleted when its batch has run.

The database holds it, not the instance folder: the worker that runs the
import may be on another host (or container) than the web process that
received the file, and the database is the one store both reach. Chunks keep
memory flat both ways (a 200 MiB upload is 200 rows of 1 MiB), and deleting
the rows once the batch has run leaves no copy of the file's personal data.
"""

from __future__ import annotations

import tempfile
from typing import IO

import sqlalchemy as sa

from consent.models import ImportUploadChunk
from extensions import db

UPLOAD_CHUNK_BYTES = 1024 * 1024


def store_upload(batch_id: int, stream: IO[bytes]) -> int:
    """Store ``stream`` (from its start) under the batch; return its non-blank lines.

    Does not commit: the batch row and its file are committed together.
    """
    stream.seek(0)
    lines = 0
    carry = b""
    seq = 0
    while block := stream.read(UPLOAD_CHUNK_BYTES):
        db.session.execute(
            sa.insert(ImportUploadChunk), {"batch_id": batch_id, "seq": seq, "data": block}
        )
        seq += 1
        *whole, carry = (carry + block).split(b"\n")
        lines += sum(1 for line in whole if line.strip())
    if carry.strip():
        lines += 1
    stream.seek(0)
    return lines


def open_upload(batch_id: int) -> IO[bytes]:
    """The stored file as a seekable stream (a temporary file, one chunk in memory
    at a time); empty when nothing is stored."""
    spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    seq = 0
    while True:
        data = db.session.scalar(
            sa.select(ImportUploadChunk.data).where(
                ImportUploadChunk.batch_id == batch_id, ImportUploadChunk.seq == seq
            )
        )
        if data is None:
            break
        spool.write(data)
        seq += 1
    spool.seek(0)
    return spool


def delete_upload(batch_id: int) -> None:
    """Forget the stored file. Does not commit."""
    db.session.execute(sa.delete(ImportUploadChunk).where(ImportUploadChunk.batch_id == batch_id))
