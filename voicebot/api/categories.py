"""The category catalogue over HTTP (voicebot/journal/categories.py).

    GET    /api/v1/categories[?include_deleted=true]
    POST   /api/v1/categories            201, 409 when the code is taken
    GET    /api/v1/categories/{code}
    PUT    /api/v1/categories/{code}     name, value, spam
    DELETE /api/v1/categories/{code}     soft: history keeps the code and name

The next menu call reads the catalogue, so a change needs no restart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from voicebot.api.context import journal_api
from voicebot.api.schema import (
    QueryModel,
    Routes,
    found,
    parse_body,
    parse_path,
    parse_query,
    refuse,
    reply,
)
from voicebot.journal.calls import json_number
from voicebot.journal.categories import (
    CatalogueEntry,
    CategoryExists,
    CategoryNotFound,
    LastCategory,
)

Code = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# Values are keyed on a phone: up to 9 digits before the point.
Value = Annotated[Decimal, Field(ge=0, lt=Decimal(10) ** 9, decimal_places=4, allow_inf_nan=False)]


class CategoryFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    value: Value | None = Field(None, description="default value when # alone is keyed")
    spam: StrictBool = Field(False, description="calls filed under it are of type spam")


class CategoryIn(CategoryFields):
    code: Code = Field(description="the digits a manager keys")


class CategoryOut(BaseModel):
    code: str
    name: str
    value: float | None
    spam: bool
    deleted: bool
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, entry: CatalogueEntry) -> CategoryOut:
        return cls(
            code=entry.code,
            name=entry.name,
            value=json_number(entry.value),
            spam=entry.spam,
            deleted=entry.deleted,
            created_at=_iso(entry.created_at),
            updated_at=_iso(entry.updated_at),
        )


class CategoryList(BaseModel):
    categories: list[CategoryOut]


class CategoriesQuery(QueryModel):
    include_deleted: bool = False


class CodePath(BaseModel):
    code: Code


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


async def list_categories(request: web.Request) -> web.Response:
    """The category catalogue"""
    query = parse_query(request, CategoriesQuery)
    entries = await journal_api(request).catalogue.entries(query.include_deleted)
    return reply(CategoryList(categories=[CategoryOut.of(e) for e in entries]))


async def get_category(request: web.Request) -> web.Response:
    """One category, deleted or not"""
    code = parse_path(request, CodePath).code
    entry = found(
        request, await journal_api(request).catalogue.get(code), "code", f"no category {code}"
    )
    return reply(CategoryOut.of(entry))


async def create_category(request: web.Request) -> web.Response:
    """Add a category (or revive a deleted code)"""
    body = await parse_body(request, CategoryIn)
    try:
        entry = await journal_api(request).catalogue.add(
            body.code, body.name, body.value, body.spam
        )
    except CategoryExists:
        raise refuse(request, 409, f"code: {body.code} exists", "code") from None
    return reply(CategoryOut.of(entry), status=201)


async def update_category(request: web.Request) -> web.Response:
    """Change a category's name, value or spam flag"""
    code = parse_path(request, CodePath).code
    body = await parse_body(request, CategoryFields)
    try:
        entry = await journal_api(request).catalogue.update(code, body.name, body.value, body.spam)
    except CategoryNotFound:
        raise refuse(request, 404, f"code: no category {code}", "code") from None
    return reply(CategoryOut.of(entry))


async def delete_category(request: web.Request) -> web.Response:
    """Stop offering a code; calls filed under it keep it"""
    code = parse_path(request, CodePath).code
    try:
        entry = await journal_api(request).catalogue.remove(code)
    except CategoryNotFound:
        raise refuse(request, 404, f"code: no category {code}", "code") from None
    except LastCategory:
        raise refuse(
            request, 409, f"code: {code} is the last category and the menu asks for one", "code"
        ) from None
    return reply(CategoryOut.of(entry))


def register(app: web.Application) -> None:
    routes = Routes(app, "categories")
    many, one = "/api/v1/categories", "/api/v1/categories/{code}"
    routes.add("GET", many, list_categories, CategoryList, query=CategoriesQuery)
    routes.add("POST", many, create_category, {201: CategoryOut}, body=CategoryIn, conflict=True)
    routes.add("GET", one, get_category, CategoryOut, path_params=CodePath)
    routes.add("PUT", one, update_category, CategoryOut, path_params=CodePath, body=CategoryFields)
    routes.add("DELETE", one, delete_category, CategoryOut, path_params=CodePath, conflict=True)
