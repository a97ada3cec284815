"""Which KBase importer apps fit which files, from the operator's mappings file.

The file is KBase's ``supported_apps_w_extensions.json``: ``{"types": {suffix:
{"file_ext_type": [FILETYPE, ...], "mappings": [{"id": APP, "title": ..., "app_weight":
...}, ...]}, ...}, ...}``. It is checked once, at start, and answered from memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MappingsFileError(ValueError):
    """The mappings file cannot be used; the message says where and why, in one line."""


@dataclass(frozen=True)
class ImporterMappings:
    types: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> ImporterMappings:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise MappingsFileError(f"{path}: cannot be read as JSON: {error}") from None
        types = document.get("types") if isinstance(document, dict) else None
        if not isinstance(types, dict):
            raise MappingsFileError(f"{path}: needs a 'types' object")
        for suffix, entry in types.items():
            if not _valid_type(entry):
                raise MappingsFileError(
                    f"{path}: types[{suffix!r}] needs 'file_ext_type' (a non-empty list of "
                    "strings) and 'mappings' (a list of objects with a string 'id')"
                )
        return cls(types)

    def filetypes(self) -> dict[str, dict[str, list[str]]]:
        """``/importer_filetypes/``: importer → file types, file type → suffixes."""
        datatypes: dict[str, set[str]] = {}
        extensions: dict[str, set[str]] = {}
        for suffix, entry in self.types.items():
            filetype = entry["file_ext_type"][0]
            extensions.setdefault(filetype, set()).add(suffix)
            for mapping in entry["mappings"]:
                datatypes.setdefault(mapping["id"], set()).add(filetype)
        return {
            "datatype_to_filetype": {k: sorted(v) for k, v in datatypes.items()},
            "filetype_to_extensions": {k: sorted(v) for k, v in extensions.items()},
        }

    def mappings(self, file_names: list[str]) -> dict[str, list[Any]]:
        """``/importer_mappings/``: for each name, its importers and what was matched."""
        found = [self._importers(name) for name in file_names]
        return {"mappings": [apps for apps, _ in found], "fileinfo": [info for _, info in found]}

    def _importers(self, name: str) -> tuple[list[Any] | None, dict[str, Any]]:
        # The longest suffix that has a mapping wins ("reads.fq.gz": "fq.gz" before "gz").
        for dots in range(1, name.count(".") + 1):
            parts = name.split(".", dots)
            entry = self.types.get(parts[-1].lower())
            if entry is not None:
                info = {
                    "prefix": ".".join(parts[:dots]),
                    "suffix": parts[-1],
                    "file_ext_type": entry["file_ext_type"],
                }
                return entry["mappings"], info
        return None, {"prefix": name, "suffix": None, "file_ext_type": []}


def _valid_type(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    filetypes, mappings = entry.get("file_ext_type"), entry.get("mappings")
    return (
        isinstance(filetypes, list)
        and bool(filetypes)
        and all(isinstance(item, str) for item in filetypes)
        and isinstance(mappings, list)
        and all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in mappings)
    )
