"""Looking up an upload on behalf of a user: another user's upload is simply not found."""

from __future__ import annotations

from protocol.errors import NotFound
from store.record import UploadRecord, is_upload_id

from .services import Services


async def owned_record(services: Services, user: str, upload_id: str) -> UploadRecord:
    record = await services.store.get(upload_id) if is_upload_id(upload_id) else None
    if record is None or record.owner != user:
        raise NotFound(f"no upload {upload_id!r}")
    return record
