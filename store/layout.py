"""Where things live on disk: staging area, metadata sidecars, partial uploads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .paths import ensure_dir, resolve_inside, user_root


@dataclass(frozen=True)
class DataLayout:
    staging_dir: Path  # staging/<user>/... : what users see
    metadata_dir: Path  # metadata/<user>/... : one JSON sidecar per staged file, same path
    upload_dir: Path  # partial files, named by upload id

    @classmethod
    def under(
        cls,
        data_dir: Path,
        *,
        staging_dir: Path | None = None,
        metadata_dir: Path | None = None,
        upload_dir: Path | None = None,
    ) -> DataLayout:
        return cls(
            staging_dir=(staging_dir or data_dir / "staging").absolute(),
            metadata_dir=(metadata_dir or data_dir / "metadata").absolute(),
            upload_dir=(upload_dir or data_dir / "uploads").absolute(),
        )

    def create_dirs(self) -> None:
        for path in (self.staging_dir, self.metadata_dir, self.upload_dir):
            ensure_dir(path)

    def user_home(self, user: str) -> Path:
        return user_root(self.staging_dir, user)

    def staged_path(self, user: str, relative: PurePosixPath | str) -> Path:
        """The staging path of ``relative``; raises UnsafePath if it would leave the area."""
        return resolve_inside(self.user_home(user), relative)

    def metadata_home(self, user: str) -> Path:
        """The user's folder of sidecars (``sidecar_path`` of the home, without the walk)."""
        return user_root(self.metadata_dir, user)

    def sidecar_path(self, user: str, relative: PurePosixPath | str) -> Path:
        return resolve_inside(self.metadata_home(user), relative)
