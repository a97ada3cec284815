"""The staging routes about files' metadata: /metadata, /define-upa, /jgi-metadata."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from protocol.errors import BadRequest, NotFound
from store.area_listing import jgi_metadata_name
from store.metadata import read_jgi_metadata
from store.paths import UnsafePath

from .staging_context import body_field, caller, requested
from .staging_paths import missing


async def metadata(request: web.Request) -> web.Response:
    who = await caller(request)
    where = who.at(requested(request))
    try:
        record = await who.services.metadata.metadata(where)
    except FileNotFoundError:
        raise missing(where) from None
    return web.json_response(record)


async def define_upa(request: web.Request) -> web.Response:
    """Record the UPA of the workspace object made from a file (form or JSON ``UPA``)."""
    who = await caller(request)
    where = who.at(requested(request))
    if not await asyncio.to_thread(os.path.isfile, where.staged):
        raise NotFound(f"no file found found on path {where.user_path}")  # KBase's words
    upa = await body_field(request, "UPA")
    if upa is None:
        raise BadRequest("must provide UPA field in body")
    await who.services.metadata.define_upa(where, upa)
    return web.Response(text=f"succesfully updated UPA {upa} for file {where.user_path}")


async def jgi_metadata(request: web.Request) -> web.Response:
    """The JGI metadata file beside a file (``.<name>.jgi``), as JSON."""
    who = await caller(request)
    relative = requested(request)
    absent = NotFound(
        f"could not find associated JGI metadata file for {who.at(relative).user_path}"
    )
    if not relative.name:
        raise absent
    try:
        jgi = who.at(relative.parent / jgi_metadata_name(relative.name))
    except (UnsafePath, BadRequest):  # a name too long to have one, a link out of the area
        raise absent from None
    document = await asyncio.to_thread(read_jgi_metadata, jgi)
    if document is None:
        raise absent
    return web.json_response(document)
