"""The staging routes that tell about the service: /test-service, /test-auth,
/file-lifetime, /importer_filetypes/, /importer_mappings/."""

from __future__ import annotations

from importlib import metadata as package_metadata
from urllib.parse import parse_qs

from aiohttp import web

from protocol.errors import BadRequest, NotFound

from .importer_mappings import ImporterMappings
from .services import services_of
from .staging_context import STAGING, caller


def version() -> str:
    try:
        return package_metadata.version("tus-staging")
    except package_metadata.PackageNotFoundError:
        return "unknown"


async def test_service(request: web.Request) -> web.Response:
    return web.Response(text=f"staging service version: {version()}")


async def test_auth(request: web.Request) -> web.Response:
    who = await caller(request)
    return web.Response(text=f"I'm authenticated as {who.user}")


async def file_lifetime(request: web.Request) -> web.Response:
    days = services_of(request).config.file_lifetime
    if days is None:
        raise NotFound("no file lifetime is configured (--file-lifetime)")
    return web.Response(text=str(days))


def _importers(request: web.Request) -> ImporterMappings:
    importers = request.app[STAGING].importers
    if importers is None:
        raise NotFound("no importer mappings are configured (--importer-mappings)")
    return importers


async def importer_filetypes(request: web.Request) -> web.Response:
    return web.json_response(_importers(request).filetypes())


async def importer_mappings(request: web.Request) -> web.Response:
    importers = _importers(request)
    file_list = parse_qs(request.query_string).get("file_list", [])
    if not file_list:
        raise BadRequest(f"must provide file_list field. Your provided qs: {request.query_string}")
    return web.json_response(importers.mappings(file_list))
