"""The service batch_bench.py drives: one stand-in model behind endpoints that differ only
in ``batch_size``. A call for n jobs costs A + B·n seconds (sleep-based), as a GPU that
runs a batch in little more than the time of one job."""

import time

from apipod import APIPod

A_S = 0.040
B_S = 0.005
WAIT_MS = 20
SIZES = (1, 4, 8, 16)

app = APIPod(compute="serverless", provider="localhost", title="batch-bench")


def model(n: int) -> None:
    time.sleep(A_S + B_S * n)


@app.endpoint("/b1", queue_size=100_000)
def unbatched(x: int = 0) -> int:
    model(1)
    return x


def _batched(size: int) -> None:
    def run(x: list[int] = 0) -> list:  # type: ignore[assignment]
        model(len(x))
        return x

    run.__name__ = f"batched_{size}"
    app.endpoint(f"/b{size}", queue_size=100_000, batch_size=size, batch_wait_ms=WAIT_MS)(run)


for _size in SIZES[1:]:
    _batched(_size)
