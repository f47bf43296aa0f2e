"""`GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from the
pydantic models the handlers validate with (voicebot/api/schema.py).

OpenAPI 3.1 uses JSON Schema 2020-12, which is what pydantic emits, so the
model schemas go into `components.schemas` unchanged; only `$ref`s are
pointed there.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from voicebot import __version__
from voicebot.api.schema import OPERATIONS_KEY, ErrorBody, Operation

REF = "#/components/schemas/{model}"


def build_document(operations: list[Operation]) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for op in operations:
        for model in (op.query, op.path_params, op.body, *op.responses.values()):
            if model is not None:
                models.add(model)
    ordered = sorted(models, key=lambda m: m.__name__)
    keys, schemas = models_json_schema(
        [(m, "validation" if _is_input(m, operations) else "serialization") for m in ordered],
        ref_template=REF,
    )
    components: dict[str, Any] = dict(schemas.get("$defs", {}))

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        mode: JsonSchemaMode = "validation" if _is_input(model, operations) else "serialization"
        return keys[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters: list[dict[str, Any]] = []
        for location, model in (("path", op.path_params), ("query", op.query)):
            if model is None:
                continue
            schema = components.get(model.__name__) or model.model_json_schema(ref_template=REF)
            required = set(schema.get("required", []))
            for name, prop in schema.get("properties", {}).items():
                param: dict[str, Any] = {
                    "name": name,
                    "in": location,
                    "required": location == "path" or name in required,
                    "schema": _not_null(prop),
                }
                if "description" in prop:
                    param["description"] = prop["description"]
                parameters.append(param)
        operation: dict[str, Any] = {
            "operationId": op.operation_id or _operation_id(op),
            "summary": op.summary,
            "tags": [op.tag],
            "security": [{"bearer": []}],
            "responses": {},
        }
        if op.description:
            operation["description"] = op.description
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(op.body)}},
            }
        for status, model in sorted(op.responses.items()):
            response: dict[str, Any] = {"description": _reason(status)}
            if model is not None:
                content: dict[str, Any] = {"application/json": {"schema": ref(model)}}
                if op.csv and status == 200:
                    content["text/csv"] = {"schema": {"type": "string"}}
                response["content"] = content
            operation["responses"][str(status)] = response
        operation["responses"]["401"] = {
            "description": "missing or wrong bearer token",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voicebot API",
            "version": __version__,
            "description": "Call journal, categories, reports and PBX call events.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string, never JSON null."""
    schema = {k: v for k, v in prop.items() if k not in ("title", "description")}
    if schema.get("default", 0) is None:
        del schema["default"]
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if "anyOf" in schema:
        del schema["anyOf"]
        if len(options) == 1:
            schema.update(options[0])
        else:
            schema["anyOf"] = options
    return schema


def _is_input(model: type[BaseModel], operations: list[Operation]) -> bool:
    return any(model in (op.query, op.path_params, op.body) for op in operations)


def _operation_id(op: Operation) -> str:
    words = [w for w in op.path.replace("{", "").replace("}", "").split("/") if w]
    return op.method.lower() + "_" + "_".join(words[2:])


def _reason(status: int) -> str:
    return {
        200: "OK",
        201: "Created",
        400: "invalid input; `field` names what",
        404: "no such resource",
        409: "conflicts with what is stored",
        413: "body too large",
        415: "not application/json",
    }.get(status, "response")


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app.get(OPERATIONS_KEY, [])))


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_json)
