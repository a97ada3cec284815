"""Service configuration: one dataclass, filled by the CLI (flags or TUS_STAGING_* env).

Its defaults are the flags' defaults (the parser leaves an absent flag out); those of the
store's settings are the store's own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from store.layout import DataLayout
from store.locks import LockSettings
from store.quotas import MAX_OPEN_UPLOADS, MAX_RESERVED_BYTES, UserLimits
from store.replication import ReplicaWaitSettings
from store.uploads import StoreSettings

MiB = 1024 * 1024


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 1080
    data_dir: Path = Path("data")
    staging_dir: Path | None = None
    metadata_dir: Path | None = None
    upload_dir: Path | None = None
    redis_url: str | None = None  # None: start an embedded Redis under data_dir/redis
    workers: int = 1
    tokens_file: Path | None = None
    auth_url: str | None = None
    max_size: int | None = None  # bytes; None: no limit
    expire_after: float = StoreSettings.expire_after  # seconds an unfinished upload is kept
    keep_completed: float = StoreSettings.completed_ttl  # seconds a staged upload's record is kept
    max_open_uploads: int = MAX_OPEN_UPLOADS  # per user; 0: no limit
    max_reserved: int = (
        MAX_RESERVED_BYTES  # bytes unfinished uploads of one user may reserve; 0: none
    )
    base_path: str = "/files/"
    sha256: bool = False  # also compute sha256 of every upload
    md5_kernel: str | None = None  # NAME[:N] (store/md5_lanes.py); None: the best here
    no_md5_lanes: bool = False  # md5 on libcrypto only (store/md5_lanes.py off)
    no_direct_io: bool = False  # partial files written through the page cache (store/sinks.py)
    block_size: int = 1 * MiB  # bytes per write + digest hop
    checkpoint_bytes: int = StoreSettings.checkpoint_bytes  # fsync + commit every this many bytes
    network_timeout: float = 60.0  # seconds without a byte from the client mid-body
    # Seconds an idle connection is kept; also bounds how long a client may take to send a
    # complete request head (slow-loris protection: aiohttp counts that time as idle).
    keepalive_timeout: float = 30.0
    lock_wait: float = LockSettings.wait  # seconds a request waits for a busy upload before 423
    # Replicas a record write waits for (where its master has them online); 0: never.
    wait_replicas: int = ReplicaWaitSettings.replicas
    wait_replicas_timeout: float = ReplicaWaitSettings.timeout  # past it: the master only
    janitor_interval: float = 300.0  # seconds between janitor passes (0: never)
    # A finalize older than this is taken as interrupted (its request died) by the janitor.
    stuck_finalize_age: float = 60.0
    behind_proxy: bool = False  # trust Forwarded / X-Forwarded-* for Location URLs
    cors_origins: str = ""  # comma-separated allowed origins, "*" for any, "" for none
    allowed_hosts: str = ""  # comma-separated names the Host header may give (besides local)
    # Open connections one client address may hold per process; None: 64, or no cap behind
    # a proxy (every connection comes from the proxy's address); 0: no cap.
    max_client_connections: int | None = None
    cors_credentials: bool = False  # allow cookies (kbase_session) cross-origin
    hook_pre_create: str | None = None  # URL that may refuse an upload before it is created
    hook_post_finish: str | None = None  # URL told of every finished upload (with retries)
    log_format: str = "text"  # or "json"
    log_level: str = "INFO"
    single_user: str = "local"  # the user in single-user mode (no tokens file, no auth url)
    # KBase's supported_apps_w_extensions.json, for /importer_filetypes/ and
    # /importer_mappings/ (404 without it).
    importer_mappings: Path | None = None
    file_lifetime: int | None = None  # days files are kept, told by /file-lifetime
    decompress_max_bytes: int = 256 * 1024 * MiB  # bytes one archive may expand to
    decompress_max_members: int = 100_000  # entries one archive may hold

    @property
    def layout(self) -> DataLayout:
        return DataLayout.under(
            self.data_dir,
            staging_dir=self.staging_dir,
            metadata_dir=self.metadata_dir,
            upload_dir=self.upload_dir,
        )

    @property
    def lock(self) -> LockSettings:
        return LockSettings(wait=self.lock_wait)

    @property
    def store_settings(self) -> StoreSettings:
        return StoreSettings(
            digest_names=tuple(self.digest_names),
            lock=self.lock,
            expire_after=self.expire_after,
            completed_ttl=self.keep_completed,
            checkpoint_bytes=self.checkpoint_bytes,
            max_size=self.max_size,
            limits=UserLimits(
                max_open_uploads=self.max_open_uploads or None,
                max_reserved_bytes=self.max_reserved or None,
            ),
            replica_wait=ReplicaWaitSettings(self.wait_replicas, self.wait_replicas_timeout),
        )

    @property
    def digest_names(self) -> list[str]:
        return ["md5", "sha256"] if self.sha256 else ["md5"]

    @property
    def embedded_redis_dir(self) -> Path:
        return self.data_dir / "redis"
