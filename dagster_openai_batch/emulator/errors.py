"""The emulated service's HTTP errors, shaped like the OpenAI API's."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}` with an HTTP
    status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def not_found(kind: str, object_id: str) -> ApiError:
    """404 for an unknown object, worded like the real API."""
    return ApiError(404, f"No such {kind} object: {object_id}", param="id")


def invalid_value(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """400 for a bad parameter."""
    return ApiError(400, message, param=param, code=code)
