"""Mutation fuzzing of valid images (hypothesis): every request gets a 200 prediction or a 4xx JSON error.

The handler runs in-process with a small fake TorchServe context, so a few dozen examples take seconds;
``tests/integration/test_hostile.py::test_mutated_images_over_http`` sends a handful through the real server.
CI runs a fixed, derandomized set; hunt locally with ``ARTSERVE_FUZZ_EXAMPLES=3000 ARTSERVE_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.art_handler import ArtHandler
from handlers.labels import write_label_map
from loadtests.harness import random_checkpoint
from tests.images import ART5_LABELS
from tests.strategies import SEEDS, mutated_image, request_fields

EXAMPLES = int(os.environ.get("ARTSERVE_FUZZ_EXAMPLES", "40"))
DERANDOMIZE = os.environ.get("ARTSERVE_FUZZ_RANDOM", "") == ""
CONTENT_TYPES = ["image/jpeg", "image/png", "application/octet-stream", None]


class FakeContext:
    """The parts of TorchServe's Context that ArtHandler uses, recording what it sets per request."""

    def __init__(self, model_dir: str, headers: list[dict] | None = None) -> None:
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.manifest = {"model": {"modelName": "art-category", "serializedFile": "tiny.pt"}}
        self.model_yaml_config = {"handler": {"top_k": 3}}
        self.metrics = None
        self.headers = headers or []
        self.status: dict[int, tuple[int, str]] = {}
        self.response_headers: dict[int, dict[str, str]] = {}

    def get_all_request_header(self, idx: int) -> dict:
        return self.headers[idx] if idx < len(self.headers) else {}

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers.setdefault(idx, {})[key] = value

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.status[idx] = (code, phrase)


@pytest.fixture(scope="module")
def handler(tmp_path_factory) -> ArtHandler:
    model_dir = tmp_path_factory.mktemp("model")
    random_checkpoint(model_dir / "tiny.pt", "tiny_vgg")
    write_label_map(model_dir / "index_to_name.json", ART5_LABELS)
    h = ArtHandler()
    h.initialize(FakeContext(str(model_dir)))
    return h


def check_answers(results: list, context: FakeContext) -> None:
    """Each answer is a prediction (status unset) or a 4xx error body matching its status."""
    for idx, result in enumerate(results):
        if idx in context.status:
            code, phrase = context.status[idx]
            assert 400 <= code < 500, f"request {idx} got {code} {phrase}: {result}"
            assert result == {"error": result.get("error"), "code": code, "type": phrase}, (
                f"request {idx}: error body {result} does not match status {code} {phrase}"
            )
            assert isinstance(result["error"], str) and result["error"], f"request {idx}: empty error message"
        else:
            assert set(result) >= {"label", "probability", "top_k"}, f"request {idx}: 200 without a prediction"
            assert result["label"] in ART5_LABELS, f"request {idx}: unknown label {result['label']!r}"


def check_invariant(handler: ArtHandler, bodies: list[bytes], content_types: list[str | None]) -> list[dict]:
    """Run one batch; assert each answer is a prediction (status unset) or a 4xx error with matching status."""
    headers = [{"Content-Type": ct} if ct else {} for ct in content_types]
    context = FakeContext("", headers)
    results = handler.handle([{"body": b} for b in bodies], context)
    assert len(results) == len(bodies), f"{len(bodies)} requests but {len(results)} answers"
    check_answers(results, context)
    return results


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt files it tolerates
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(bodies=st.lists(mutated_image(), min_size=1, max_size=4), ct=st.sampled_from(CONTENT_TYPES))
def test_mutated_images_get_prediction_or_4xx(handler, bodies, ct):
    """Mutations land in one batch with a valid image, which must still be classified."""
    results = check_invariant(handler, [*bodies, SEEDS["jpeg"]], [ct] * len(bodies) + ["image/jpeg"])
    assert "label" in results[-1], f"the valid image in the batch was not classified: {results[-1]}"


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_unmutated_seeds_are_classified(handler, name):
    """The seeds themselves are valid, so the mutation test starts from images the handler accepts."""
    (result,) = check_invariant(handler, [SEEDS[name]], ["application/octet-stream"])
    assert "label" in result, f"seed {name} was rejected: {result}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(
    max_examples=min(EXAMPLES, 100) if DERANDOMIZE else EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=st.lists(request_fields(), min_size=1, max_size=4))
def test_any_request_shape_gets_prediction_or_4xx(handler, requests):
    """Raw bodies, JSON of any shape, multipart forms of any number of parts, odd Content-Types, as TorchServe hands
    them to the handler (fields by name; the request's headers with one dict per form part), beside a valid image."""
    rows, headers = [], []
    for fields, ct in requests:
        rows.append({name: value for name, (_, value) in fields.items()})
        parts = {name: {"content-type": part} for name, (part, _) in fields.items() if part is not None}
        headers.append({**parts, **({"Content-Type": ct} if ct is not None else {})})
    context = FakeContext("", [*headers, {"Content-Type": "image/jpeg"}])
    results = handler.handle([*rows, {"body": SEEDS["jpeg"]}], context)
    assert len(results) == len(rows) + 1, f"{len(rows) + 1} requests but {len(results)} answers"
    check_answers(results, context)
    assert "label" in results[-1], f"the valid image in the batch was not classified: {results[-1]}"
