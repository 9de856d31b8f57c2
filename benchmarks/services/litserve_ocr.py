"""The OCR example's function served by LitServe (benchmark only: APIPod never imports
litserve). ``python litserve_ocr.py PORT WORKERS``: ``WORKERS`` inference processes on the
CPU, one HTTP server process, ``POST /predict {"image": base64}`` answers the same JSON as
APIPod's ``/read`` (the annotated image inline as base64)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import litserve as ls

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ocr_common import load_ocr_example  # noqa: E402


class OcrAPI(ls.LitAPI):
    """decode_request: base64 → bytes; predict: the example's ``read``; encode: JSON."""

    def setup(self, device: str) -> None:
        self.ocr = load_ocr_example()
        self.ocr.load()  # the example's own on_worker_start: threads from APIPOD_MAX_WORKERS

    def decode_request(self, request: dict) -> bytes:
        return base64.b64decode(request["image"])

    def predict(self, data: bytes) -> Any:
        return self.ocr.read_bytes(data)

    def encode_response(self, output: Any) -> Any:
        from apipod.media.results import encode_result  # noqa: PLC0415

        return encode_result(output)


def main() -> None:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = ls.LitServer(
        OcrAPI(), accelerator="cpu", devices=1, workers_per_device=workers, timeout=120
    )
    server.run(
        host="127.0.0.1",
        port=port,
        num_api_servers=1,
        generate_client_file=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
