"""Test-only TorchServe handler: ArtHandler that takes a fixed time per batch, or stalls on request.

Packed by ``tests/integration/test_faults.py`` with ``build_archive(..., handler=__file__)``; never
part of the production archive. Settings come from the test model-config's ``handler:`` section:
``delay_s`` (every batch sleeps this long) and ``stall_s`` (a batch holding a request with the header
``X-Artserve-Stall: 1`` sleeps this long, to trip the response timeout).
"""

from __future__ import annotations

import time

from handlers.art_handler import ArtHandler


class SlowArtHandler(ArtHandler):
    def initialize(self, context) -> None:
        super().initialize(context)
        cfg = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        self.delay_s = float(cfg.get("delay_s", 0.0))
        self.stall_s = float(cfg.get("stall_s", 0.0))

    def handle(self, data: list, context) -> list:
        stall = any(
            k.lower() == "x-artserve-stall" and v in ("1", b"1")
            for i in range(len(data))
            for k, v in (context.get_all_request_header(i) or {}).items()
        )
        time.sleep(self.stall_s if stall else self.delay_s)
        return super().handle(data, context)
