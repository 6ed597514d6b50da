"""The OpenAPI 3.1 document of the HTTP API, written by hand (three operations do not
need a generator)."""

from __future__ import annotations

from typing import Any

from .._models import JobStatus

OPTIONS: dict[str, dict[str, Any]] = {
    "delay": {"type": "number", "minimum": 0, "description": "Seconds before it may start."},
    "run_at": {"type": "number", "description": "UNIX time (s) it may start; over delay."},
    "priority": {"type": "integer", "description": "Higher runs first."},
    "job_id": {"type": "string", "maxLength": 36, "description": "Idempotent id."},
    "unique_key": {"type": "string", "maxLength": 160, "description": "Deduplication key."},
    "retries": {"type": "integer", "minimum": 0},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds per attempt."},
    "expires": {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": "Seconds: not started by then, it fails.",
    },
}

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}

_TIME = {"type": ["integer", "null"], "description": "UNIX microseconds"}

_JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "queue": {"type": "string"},
        "task": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
        "args": {"type": "array"},
        "kwargs": {"type": "object"},
        "options": {"type": "object"},
        "priority": {"type": "integer"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "stalls": {"type": "integer"},
        "lease_owner": {"type": ["string", "null"]},
        "result": {"description": "The handler's return value (JSON), when done."},
        "error": {
            "type": ["object", "null"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "traceback": {"type": "string"},
            },
        },
        "unique_key": {"type": ["string", "null"]},
        "progress": {
            "type": ["number", "null"],
            "description": "From 0 to 1, as the handler last reported it.",
        },
        "progress_message": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        **{
            name: _TIME
            for name in ("run_at", "leased_until", "created_at", "updated_at", "finished_at")
        },
    },
    "required": ["id", "queue", "task", "status", "args", "kwargs", "attempts"],
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Not JSON",
        401: "No or wrong token",
        403: "The token may only read",
        404: "No such job (or task)",
        413: "Arguments too large",
        422: "Invalid request",
        429: "Queue full",
        503: "Store or Redis unavailable",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _job_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }


def document(server: str, queue: str) -> dict[str, Any]:
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"aqueue HTTP API (queue {queue})",
            "version": "1",
            "description": "Enqueue jobs, read them and cancel them from any language.",
        },
        "servers": [{"url": server or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/jobs": {
                "post": {
                    "operationId": "enqueue",
                    "summary": "Enqueue a job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/NewJob"}}
                        },
                    },
                    "responses": {
                        "201": _job_response("The job, as stored"),
                        **_errors(400, 401, 403, 404, 413, 422, 429, 503),
                    },
                }
            },
            "/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "Read a job: status, result, error",
                    "parameters": [job_id],
                    "responses": {"200": _job_response("The job"), **_errors(401, 404, 503)},
                }
            },
            "/jobs/{job_id}/cancel": {
                "post": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a job that has not finished",
                    "parameters": [job_id],
                    "responses": {
                        "200": {
                            "description": "cancelled: false when it had already finished",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "cancelled": {"type": "boolean"},
                                            "job": {"$ref": "#/components/schemas/Job"},
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(401, 403, 404, 503),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "NewJob": {
                    "type": "object",
                    "properties": {
                        "task": {"type": "string", "description": "Registered task name"},
                        "args": {"type": "array", "default": []},
                        "kwargs": {"type": "object", "default": {}},
                        "options": {
                            "type": "object",
                            "properties": OPTIONS,
                            "additionalProperties": False,
                        },
                    },
                    "required": ["task"],
                    "additionalProperties": False,
                },
                "Job": _JOB,
                "Error": _ERROR,
            },
        },
    }
