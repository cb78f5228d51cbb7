"""The OpenAPI description of the public HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from app.requests import MAX_EF, MAX_K

_ERROR = {"description": "The request is wrong; `error` says how",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_COVERAGE = {
    "partial": {"type": "boolean", "description": "true when some partitions did not answer"},
    "partitions": {"type": "object", "properties": {
        "answered": {"type": "array", "items": {"type": "integer"}},
        "missing": {"type": "array", "items": {"type": "integer"}}}},
}
_SEARCH_RESPONSE = {"200": {"description": "Top-k documents, best first", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/SearchResponse"}}}}, "400": _ERROR, "404": _ERROR, "503": _ERROR}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "streamvec", "version": "0.1.0",
             "description": "Real-time vector search over a Kafka topic. Every worker answers for the whole group."},
    "paths": {
        "/search": {
            "post": {"summary": "Similarity search by text, vector or document id",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/SearchRequest"}}}},
                     "responses": _SEARCH_RESPONSE},
            "get": {"summary": "Similarity search by text",
                    "parameters": [
                        {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K}},
                        {"name": "ef", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_EF}}],
                    "responses": _SEARCH_RESPONSE},
        },
        "/documents/{id}": {"get": {
            "summary": "One document's metadata, version and timestamp",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object"}), "404": _ERROR, "503": _ERROR}}},
        "/health": {"get": {"summary": "The process is alive", "responses": {"200": _json({"type": "object"})}}},
        "/ready": {"get": {"summary": "Recovered and serving; 503 while recovering or rebalancing",
                           "responses": {"200": _json({"type": "object"}), "503": _json({"type": "object"})}}},
        "/stats": {"get": {"summary": "Documents per partition and event outcomes, for the whole group",
                           "responses": {"200": _json({"type": "object"})}}},
        "/metrics": {"get": {"summary": "Prometheus metrics of this worker",
                             "responses": {"200": {"description": "Prometheus text format"}}}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "SearchRequest": {
            "type": "object", "additionalProperties": False,
            "description": "Exactly one of text, vector and id.",
            "properties": {
                "text": {"type": "string"},
                "vector": {"type": "array", "items": {"type": "number"}},
                "id": {"type": "string", "description": "Find documents similar to this one (it is left out)"},
                "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
                "ef": {"type": "integer", "minimum": 1, "maximum": MAX_EF},
                "filter": {"type": "object", "description": 'Metadata filter, e.g. {"lang": "en", "year": {"$gte": 2020}}'},
            }},
        "SearchResponse": {"type": "object", "properties": {
            "results": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "score": {"type": "number"}, "metadata": {"type": "object"}}}},
            **_COVERAGE,
            "took_ms": {"type": "number"}}},
    }},
}
