"""Looking up an upload on behalf of a user: another user's upload is simply not found."""

from __future__ import annotations

from protocol.errors import Gone, NotFound
from store.record import UploadRecord, is_upload_id

from .services import Services


def owned(record: UploadRecord | None, user: str, upload_id: str) -> UploadRecord:
    """``record`` if it exists and is the user's; 404 otherwise (never 403: no probing)."""
    if record is None or record.owner != user:
        raise NotFound(f"no upload {upload_id!r}")
    return record


def refuse_expired(record: UploadRecord) -> None:
    if record.is_expired:
        raise Gone(f"upload {record.id} expired and is being removed")


async def owned_record(services: Services, user: str, upload_id: str) -> UploadRecord:
    record = await services.store.get(upload_id) if is_upload_id(upload_id) else None
    return owned(record, user, upload_id)
