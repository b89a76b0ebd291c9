"""Client-input errors: each maps to one HTTP status and a stable machine-readable type."""

from __future__ import annotations


class InputError(ValueError):
    """A request that cannot be served because of what the client sent (a 4xx, never a 5xx)."""

    status: int = 400
    type: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict:
        """The JSON body returned for this request alone."""
        return {"error": self.message, "code": self.status, "type": self.type}


class BadRequest(InputError):
    status, type = 400, "bad_request"


class BadImage(InputError):
    status, type = 400, "bad_image"


class PayloadTooLarge(InputError):
    status, type = 413, "too_large"


class UnsupportedMediaType(InputError):
    status, type = 415, "unsupported_media_type"


class TooCostly(InputError):
    """Within the size limits, but its structure would make decoding cost far more than its pixel count
    (a JPEG with thousands of scans, a PNG of a million chunks), or its decode overran the time budget."""

    status, type = 422, "too_costly"
