"""An image service in queue mode: an ImageFile in, an ImageFile out, with progress.

Run:  apipod start examples/image/service.py
Every call returns a job id at once; poll /status/<id> for progress and the result.
"""

import numpy as np

from apipod import APIPod, ImageFile, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="image")

model = None


@app.on_worker_start
def load_model() -> None:
    """Runs once in every worker process (never in the API process)."""
    global model
    model = {"levels": 4}  # a real service loads its weights here


@app.endpoint("/posterize", queue_size=50)
def posterize(job_progress: JobProgress, image: ImageFile, levels: int = 4) -> ImageFile:
    """Reduce the image to a few colour levels per channel, reporting progress per step."""
    pixels = image.to_np_array()
    if pixels is None:
        raise ValueError("the image could not be decoded")
    step = max(1, 256 // max(2, min(levels, 256)))
    rows = np.array_split(np.arange(pixels.shape[0]), 4)
    out = pixels.copy()
    for i, chunk in enumerate(rows):
        out[chunk] = (pixels[chunk] // step) * step
        job_progress.set_status((i + 1) / len(rows), f"posterized {i + 1}/{len(rows)} bands")
    return ImageFile(file_name="posterized.png").from_np_array(out, img_type="png")
