"""make demo's page server: its default origin is the one the checked-in CORS setting allows."""

from __future__ import annotations

from deploy.demo.page import DEFAULT_PORT, cors_warning, origin, page_url


def test_default_origin_is_the_allowed_one():
    warning = cors_warning(origin("127.0.0.1", DEFAULT_PORT))
    assert warning is None, f"make demo's default origin is not cors_allowed_origin in config.properties: {warning}"


def test_another_origin_is_warned_about():
    warning = cors_warning("http://127.0.0.1:1")
    assert warning and "cors_allowed_origin" in warning and "http://127.0.0.1:1" in warning, warning


def test_page_url_names_a_non_default_api():
    assert page_url("127.0.0.1", 8090, "http://127.0.0.1:8080") == "http://127.0.0.1:8090/", (
        "the default needs no ?api="
    )
    assert page_url("127.0.0.1", 8090, "http://gpu-box:8080") == "http://127.0.0.1:8090/?api=http://gpu-box:8080"
