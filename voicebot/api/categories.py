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
    ErrorBody,
    Operation,
    QueryModel,
    add_operation,
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
    query = parse_query(request, CategoriesQuery)
    entries = await journal_api(request).catalogue.entries(query.include_deleted)
    return reply(CategoryList(categories=[CategoryOut.of(e) for e in entries]))


async def get_category(request: web.Request) -> web.Response:
    code = parse_path(request, CodePath).code
    entry = await journal_api(request).catalogue.get(code)
    if entry is None:
        raise refuse(request, 404, f"code: no category {code}", "code")
    return reply(CategoryOut.of(entry))


async def create_category(request: web.Request) -> web.Response:
    body = await parse_body(request, CategoryIn)
    try:
        entry = await journal_api(request).catalogue.add(
            body.code, body.name, body.value, body.spam
        )
    except CategoryExists:
        raise refuse(request, 409, f"code: {body.code} exists", "code") from None
    return reply(CategoryOut.of(entry), status=201)


async def update_category(request: web.Request) -> web.Response:
    code = parse_path(request, CodePath).code
    body = await parse_body(request, CategoryFields)
    try:
        entry = await journal_api(request).catalogue.update(code, body.name, body.value, body.spam)
    except CategoryNotFound:
        raise refuse(request, 404, f"code: no category {code}", "code") from None
    return reply(CategoryOut.of(entry))


async def delete_category(request: web.Request) -> web.Response:
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
    app.router.add_get("/api/v1/categories", list_categories)
    app.router.add_post("/api/v1/categories", create_category)
    app.router.add_get("/api/v1/categories/{code}", get_category)
    app.router.add_put("/api/v1/categories/{code}", update_category)
    app.router.add_delete("/api/v1/categories/{code}", delete_category)
    path = "/api/v1/categories/{code}"
    for op in (
        Operation(
            "GET",
            "/api/v1/categories",
            "The category catalogue",
            "categories",
            {200: CategoryList, 400: ErrorBody},
            query=CategoriesQuery,
            operation_id="list_categories",
        ),
        Operation(
            "POST",
            "/api/v1/categories",
            "Add a category (or revive a deleted code)",
            "categories",
            {201: CategoryOut, 400: ErrorBody, 409: ErrorBody, 413: ErrorBody, 415: ErrorBody},
            body=CategoryIn,
            operation_id="create_category",
        ),
        Operation(
            "GET",
            path,
            "One category, deleted or not",
            "categories",
            {200: CategoryOut, 400: ErrorBody, 404: ErrorBody},
            path_params=CodePath,
            operation_id="get_category",
        ),
        Operation(
            "PUT",
            path,
            "Change a category's name, value or spam flag",
            "categories",
            {200: CategoryOut, 400: ErrorBody, 404: ErrorBody, 413: ErrorBody, 415: ErrorBody},
            path_params=CodePath,
            body=CategoryFields,
            operation_id="update_category",
        ),
        Operation(
            "DELETE",
            path,
            "Stop offering a code; calls filed under it keep it",
            "categories",
            {200: CategoryOut, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody},
            path_params=CodePath,
            operation_id="delete_category",
        ),
    ):
        add_operation(app, op)
