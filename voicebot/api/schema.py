"""Request/response models at the HTTP edge, and the list of operations the
OpenAPI document is generated from.

Every route under /api/v1 that takes input declares an `Operation`: its
query, path and body models and its responses, through `Routes`, which puts
the handler on the router too. Handlers parse input only through
`parse_query` / `parse_body` / `parse_path`, so what is validated is what is
documented, and a refusal is one 400 naming the field plus one log line
(`api.refused`), never a traceback.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from voicebot.api.request_gate import mark_heavy
from voicebot.logs import get_logger

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 64 * 1024


class ErrorBody(BaseModel):
    """Why a request was refused."""

    error: str
    field: str | None = None


class QueryModel(BaseModel):
    # Query strings carry what browsers and proxies add; only documented
    # names are read, unknown ones are not errors.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    responses: Mapping[int, type[BaseModel] | None]
    query: type[BaseModel] | None = None
    path_params: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    csv: bool = False
    description: str = ""
    operation_id: str = ""


OPERATIONS_KEY = web.AppKey("openapi_operations", list)


def add_operation(app: web.Application, operation: Operation) -> None:
    if OPERATIONS_KEY not in app:
        app[OPERATIONS_KEY] = []
    app[OPERATIONS_KEY].append(operation)


@dataclass(frozen=True)
class Routes:
    """One module's routes under one OpenAPI tag. `add` puts a handler on the
    router and its `Operation` into the document: the summary is the
    handler's docstring, the operationId its name, and the refusals follow
    from its inputs (400 for any; 404 with a path naming a resource; 413 and
    415 with a body; 409 when it says `conflict`). `created`: 201 with the
    new resource, 200 with one that was there."""

    app: web.Application
    tag: str

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        ok: type[BaseModel] | Mapping[int, type[BaseModel]],
        *,
        query: type[BaseModel] | None = None,
        path_params: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        created: bool = False,
        conflict: bool = False,
        csv: bool = False,
        summary: str = "",
        operation_id: str = "",
        heavy: bool = False,
    ) -> None:
        responses: dict[int, type[BaseModel] | None] = (
            dict(ok) if isinstance(ok, Mapping) else {200: ok}
        )
        if created and not isinstance(ok, Mapping):
            responses[201] = ok
        refusals = {
            400: bool(query or path_params or body),
            404: path_params is not None,
            409: conflict,
            413: body is not None,
            415: body is not None,
        }
        responses |= {status: ErrorBody for status, refused in refusals.items() if refused}
        if method == "GET":
            self.app.router.add_get(path, handler)  # HEAD too, as aiohttp does for a GET
        else:
            self.app.router.add_route(method, path, handler)
        if heavy:
            mark_heavy(self.app, handler)
        operation = Operation(
            method,
            path,
            summary or inspect.getdoc(handler) or "",
            self.tag,
            responses,
            query=query,
            path_params=path_params,
            body=body,
            csv=csv,
            operation_id=operation_id or handler.__name__,
        )
        add_operation(self.app, operation)


_FIELD_IN_MESSAGE = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.]*): ")


def first_problem(error: ValidationError) -> tuple[str | None, str]:
    """(field, message) of the first problem, field named even when a
    model-level rule raised it ("ended_at: must not be before started_at")."""
    problem = error.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in problem["loc"])
    message = problem["msg"]
    match = _FIELD_IN_MESSAGE.match(message)
    if match:
        loc = loc or match.group(1)
        message = message[match.end() :]
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return (loc or None), message


def refuse(
    request: web.Request,
    status: int,
    error: str,
    field_name: str | None = None,
    allowed: Sequence[str] = (),
) -> web.HTTPException:
    """The one way a handler says no: a JSON `ErrorBody` and one log line.
    `allowed` is the Allow header of a 405."""
    get_logger().info(
        "api.refused",
        method=request.method,
        path=request.path,
        status=status,
        field=field_name,
        error=error,
    )
    body = ErrorBody(error=error, field=field_name).model_dump_json()
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        413: web.HTTPRequestEntityTooLarge,
        415: web.HTTPUnsupportedMediaType,
    }
    if status == 405:
        return web.HTTPMethodNotAllowed(
            request.method, allowed, text=body, content_type="application/json"
        )
    kind = kinds[status]
    if kind is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY_BYTES, actual_size=0, text=body, content_type="application/json"
        )
    return kind(text=body, content_type="application/json")


def found(request: web.Request, item: T | None, field_name: str, missing: str) -> T:
    """`item`, or a 404 naming the path field that named it ("id: no call 7")."""
    if item is None:
        raise refuse(request, 404, f"{field_name}: {missing}", field_name)
    return item


def _validated(request: web.Request, model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where, message = first_problem(exc)
        raise refuse(request, 400, f"{where}: {message}" if where else message, where) from None


def parse_query(request: web.Request, model: type[M]) -> M:
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        data[key] = values[0] if len(values) == 1 else values
    return _validated(request, model, data)


def parse_path(request: web.Request, model: type[M]) -> M:
    return _validated(request, model, dict(request.match_info))


async def parse_body(request: web.Request, model: type[M]) -> M:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise refuse(request, 413, f"body: larger than {MAX_BODY_BYTES} bytes", "body")
    if request.content_type != "application/json":
        raise refuse(request, 415, "body: send application/json", "body")
    # read(n) returns what has arrived so far: a body in two TCP segments
    # was half-read and refused as "not JSON". Read to the end, bounded.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise refuse(request, 413, f"body: larger than {MAX_BODY_BYTES} bytes", "body")
    raw = b"".join(chunks)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise refuse(request, 400, "body: not JSON", "body") from None
    if not isinstance(data, dict):
        raise refuse(request, 400, "body: expected a JSON object", "body")
    return _validated(request, model, data)


def reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
    )
