"""Where an upload lands, from its Upload-Metadata: pure, through the one path policy.

Names are never trimmed or altered: what the client sent is what lands, or the upload is
refused at creation with the reason (protocol/paths.py says which names are allowed).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from protocol.errors import BadRequest
from protocol.metadata import metadata_text
from protocol.paths import HOME, area_path, check_creatable, child_path


def upload_destination(metadata: dict[str, bytes]) -> PurePosixPath:
    """The upload's path relative to the user's area, from decoded Upload-Metadata.

    File name: ``filename``, else ``name`` (Uppy sends both, tuspy only ``filename``).
    Folder: ``destPath``, else the folder part of Uppy's ``relativePath`` (a dropped
    folder's file as its FileSystemEntry.fullPath, which starts with "/" but is relative
    to the drop; tus-js-client sends the string "null" when the file came from no folder).
    """
    name_key = "filename" if "filename" in metadata else "name"
    filename = metadata_text(metadata, name_key)
    if filename is None:
        raise BadRequest("Upload-Metadata must include 'filename' (or 'name')")

    dest_path = metadata_text(metadata, "destPath")
    relative_path = metadata_text(metadata, "relativePath")
    if dest_path is not None:
        folder = area_path(dest_path, field="destPath")
    elif relative_path is not None and relative_path != "null":
        # The whole relativePath is checked, then its last component (the file's own
        # name, which `filename` carries) is dropped.
        folder = area_path(relative_path, field="relativePath").parent
    else:
        folder = HOME
    destination = child_path(folder, filename, field=name_key, path_field="destination")
    return check_creatable(destination, field="destination")
