"""The staging area API: the KBase staging service's routes, request and answer shapes.

Every path is relative to the caller's home (a leading ``/`` means the home itself), goes
through staging_paths.py (where the routes apply the one path policy) and is resolved
inside the caller's area only: another user's files do not exist here.
"""

from __future__ import annotations

from aiohttp import web

from . import staging_browse, staging_change, staging_info, staging_metadata, staging_upload
from .config import Config
from .importer_mappings import ImporterMappings, MappingsFileError
from .staging_context import STAGING, StagingState


def setup(app: web.Application, config: Config) -> None:
    """Add the routes and their per-worker state to ``app``; SystemExit for a mappings
    file that cannot be used."""
    importers = None
    if config.importer_mappings is not None:
        try:
            importers = ImporterMappings.load(config.importer_mappings)
        except MappingsFileError as error:
            raise SystemExit(f"--importer-mappings: {error}") from None
    app[STAGING] = StagingState(importers)

    async def stop(app: web.Application) -> None:
        app[STAGING].stopping.set()

    async def close(app: web.Application) -> None:
        app[STAGING].close()

    app.on_shutdown.append(stop)
    app.on_cleanup.append(close)
    add_routes(app.router)


def add_routes(router: web.UrlDispatcher) -> None:
    # Path parameters match every character, line breaks included, so that the one path
    # policy (not the router) refuses a bad name, with its reason.
    router.add_get("/test-service", staging_info.test_service)
    router.add_get("/test-auth", staging_info.test_auth)
    router.add_get("/file-lifetime", staging_info.file_lifetime)
    router.add_get("/importer_filetypes/", staging_info.importer_filetypes)
    router.add_get("/importer_filetypes", staging_info.importer_filetypes)
    router.add_get("/importer_mappings/{query:[\\s\\S]*}", staging_info.importer_mappings)
    router.add_get("/importer_mappings", staging_info.importer_mappings)
    router.add_get("/list/{path:[\\s\\S]*}", staging_browse.list_files)
    router.add_get("/list", staging_browse.list_files)
    router.add_get("/search/{query:[\\s\\S]*}", staging_browse.search)
    router.add_get("/existence/{path:[\\s\\S]*}", staging_browse.existence)
    router.add_get("/similar/{path:[\\s\\S]+}", staging_browse.similar)
    router.add_get("/download/{path:[\\s\\S]+}", staging_browse.download)
    router.add_get("/metadata/{path:[\\s\\S]*}", staging_metadata.metadata)
    router.add_get("/jgi-metadata/{path:[\\s\\S]*}", staging_metadata.jgi_metadata)
    router.add_post("/define-upa/{path:[\\s\\S]+}", staging_metadata.define_upa)
    router.add_delete("/delete/{path:[\\s\\S]*}", staging_change.delete)
    router.add_patch("/mv/{path:[\\s\\S]*}", staging_change.move)
    router.add_post("/mkdir/{path:[\\s\\S]+}", staging_change.mkdir)
    router.add_patch("/decompress/{path:[\\s\\S]+}", staging_change.decompress)
    router.add_post("/upload", staging_upload.upload)
