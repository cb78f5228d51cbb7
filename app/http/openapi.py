"""``/openapi.json``, generated from the same pydantic models that validate requests.

Only the vector length is filled in at run time: it is the loaded model's dimension.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.http import models
from app.http.auth import API_KEY_HEADER
from app.http.latest import MAX_LIMIT
from streamvec import __version__

_REF = "#/components/schemas/{model}"
_REFUSED = ("Refused by the HTTP server before streamvec reads it (text/plain): the request line or a header "
            "is over 8,190 bytes, or the request is not HTTP")
_PLAIN = {"text/plain": {"schema": {"type": "string"}}}
_MODELS: tuple[type[BaseModel], ...] = (
    models.SearchBody, models.BatchSearchBody, models.SearchResponse, models.BatchSearchResponse,
    models.Document, models.DocumentsBody, models.Documents, models.Error, models.Health, models.Readiness,
    models.Stats, models.DeadLetters, models.Alerts, models.WatchlistCheckBody, models.WatchlistCheckResponse,
    models.Recommendations)


def build_openapi(dim: int, protected: bool) -> dict[str, Any]:
    """The API description for a model of ``dim`` dimensions; ``protected``: an API key is set."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    schemas = {name: _tidy(schema) for name, schema in defs["$defs"].items()}
    for body in ("SearchBody", "WatchlistCheckBody"):
        schemas[body]["properties"]["vector"].update(minItems=dim, maxItems=dim)
    error = _response(f"What is wrong and how to fix it (JSON). {_REFUSED}", "Error")
    auth = {"401": _response("API key missing or wrong", "Error")} if protected else {}
    search_answers = {"400": error, "404": _response("The `id` asked for is not stored", "Error"),
                      "413": _response("The body is larger than the server accepts", "Error"),
                      "503": _response("The `id` asked for was not found and some partitions did not answer", "Error"),
                      **auth}
    number = {"type": "integer", "minimum": 1}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "streamvec", "version": __version__,
                 "description": "Real-time vector search over a Kafka topic. Every worker answers for the whole group."},
        "paths": {
            "/search": {
                "post": _operation("Similarity search by text, vector or document id", auth,
                                   body="SearchBody", answers={"200": _response("Top-k documents, best first", "SearchResponse"),
                                                               **search_answers}),
                "get": _operation("Similarity search by text", auth, parameters=[
                    _query("q", {"type": "string", "minLength": 1, "maxLength": models.MAX_QUERY_PARAM}, required=True),
                    _query("k", {**number, "maximum": models.MAX_K}),
                    _query("ef", {**number, "maximum": models.MAX_EF})],
                    answers={"200": _response("Top-k documents, best first", "SearchResponse"), **search_answers}),
            },
            "/search/batch": {"post": _operation(
                "Several searches answered with one fan-out", auth, body="BatchSearchBody",
                answers={"200": _response("One result list per query", "BatchSearchResponse"), **search_answers})},
            "/documents/{id}": {"get": _operation(
                "One document's metadata, version, timestamp and text", auth,
                parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}],
                answers={"200": _response("The document", "Document"), "404": _response("Not stored", "Error"),
                         "503": _response("Not found, and some partitions did not answer", "Error"), **auth})},
            "/documents/batch": {"post": _operation(
                "Several documents by id (up to 1,000)", auth, body="DocumentsBody",
                answers={"200": _response("The documents, null where an id is not stored", "Documents"),
                         "400": error, "413": _response("The body is larger than the server accepts", "Error"),
                         **auth})},
            "/watchlist/check": {"post": _operation(
                "Which watchlist patterns a text or vector matches now (this worker's copy of the watchlist)", auth,
                body="WatchlistCheckBody", answers={"200": _response("Matching patterns, best first",
                                                                     "WatchlistCheckResponse"),
                                                    "400": error, "413": search_answers["413"], **auth})},
            "/recommendations/{user}": {"get": _operation(
                "Documents for a user, searched with their activity profile; their recent items left out", auth,
                parameters=[{"name": "user", "in": "path", "required": True,
                             "schema": {"type": "string", "minLength": 1, "maxLength": models.MAX_ID}},
                            _query("k", {**number, "maximum": models.MAX_K}),
                            _query("ef", {**number, "maximum": models.MAX_EF}),
                            _query("filter", {"type": "string", "maxLength": models.MAX_QUERY_PARAM},
                                   description="Metadata filter as JSON, as in /search")],
                answers={"200": _response("Top-k documents for the user, best first", "Recommendations"),
                         "400": error, "404": _response("The user has no profile", "Error"),
                         "503": _response("No profile found, and some partitions did not answer", "Error"), **auth})},
            "/health": {"get": _operation("The process is alive (never needs the API key)", {},
                                          answers={"200": _response("Alive", "Health")})},
            "/ready": {"get": _operation("Recovered and serving; 503 while recovering or rebalancing", auth, answers={
                "200": _response("Ready", "Readiness"), "503": _response("Not ready yet", "Readiness"), **auth})},
            "/stats": {"get": _operation("Documents and event outcomes per partition, for the whole group", auth,
                                         answers={"200": _response("Counts", "Stats"), **auth})},
            "/dead-letters": {"get": _operation(
                "The latest events the workers refused, with their reasons", auth,
                parameters=[_query("limit", {**number, "maximum": MAX_LIMIT})],
                answers={"200": _response("Newest first", "DeadLetters"), "400": error,
                         "503": _response("The broker could not be read", "Error"), **auth})},
            "/alerts": {"get": _operation(
                "The latest alerts (watchlist matches, novel documents, drift) of the whole group", auth,
                parameters=[_query("limit", {**number, "maximum": MAX_LIMIT})],
                answers={"200": _response("Newest first", "Alerts"), "400": error,
                         "503": _response("The broker could not be read", "Error"), **auth})},
            "/": {"get": _operation("The search page (HTML; never needs the API key)", {}, answers={
                "200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}})},
            "/metrics": {"get": _operation("Prometheus metrics of this worker", auth, answers={
                "200": {"description": "Prometheus text format", "content": _PLAIN},
                **auth})},
            "/openapi.json": {"get": _operation("This description", auth, answers={
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
                **auth})},
        },
        "components": {"schemas": schemas},
    }
    if protected:
        spec["components"]["securitySchemes"] = {"apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}}
    return spec


def _operation(summary: str, auth: dict[str, Any], *, answers: dict[str, Any], body: str | None = None,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    refused = answers.get("400", {"description": _REFUSED, "content": {}})
    answers = {**answers, "400": {**refused, "content": {**refused["content"], **_PLAIN}}}
    operation: dict[str, Any] = {"summary": summary, "responses": answers}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": _REF.format(model=body)}}}}
    if parameters:
        operation["parameters"] = parameters
    if auth:
        operation["security"] = [{"apiKey": []}]
    return operation


def _response(description: str, model: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}}


def _query(name: str, schema: dict[str, Any], required: bool = False, description: str | None = None) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": required, "schema": schema}
    return parameter if description is None else {**parameter, "description": description}


def _tidy(schema: Any) -> Any:
    """Drop ``"default": null`` and titles: optional request fields are omitted, never null."""
    if isinstance(schema, dict):
        return {key: _tidy(value) for key, value in schema.items()
                if key != "title" and not (key == "default" and value is None)}
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    return schema
