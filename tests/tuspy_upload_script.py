"""Upload one file with tuspy, resumably, reporting progress on stdout (one line per event).

Run as a separate process by tests/test_tuspy_resume.py, which kills it mid-upload:

    python tuspy_upload_script.py FILES_URL TOKEN FILE URL_STORAGE CHUNK_SIZE

Lines printed (flushed at once): ``start OFFSET`` once the uploader knows where to begin
(0 for a new upload, the server's offset for a resumed one), ``send OFFSET LENGTH``
before each PATCH, ``offset OFFSET`` after each, ``done`` at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tusclient.client import TusClient
from tusclient.storage.filestorage import FileStorage


def report(*words: object) -> None:
    print(*words, flush=True)


def main(files_url: str, token: str, path: str, storage_path: str, chunk_size: int) -> int:
    client = TusClient(files_url, headers={"Authorization": f"Bearer {token}"})
    storage = FileStorage(storage_path)
    uploader = client.uploader(
        path,
        chunk_size=chunk_size,
        metadata={"filename": Path(path).name},
        store_url=True,
        url_storage=storage,
    )
    report("start", uploader.offset)
    size = uploader.get_file_size()
    while uploader.offset < size:
        report("send", uploader.offset, min(chunk_size, size - uploader.offset))
        uploader.upload_chunk()
        report("offset", uploader.offset)
    report("done")
    storage.close()
    return 0


if __name__ == "__main__":
    files_url, token, path, storage_path, chunk_size = sys.argv[1:]
    sys.exit(main(files_url, token, path, storage_path, int(chunk_size)))
