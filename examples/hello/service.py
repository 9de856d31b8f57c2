"""The smallest APIPod service: scalars in, JSON out, served synchronously.

Run:  apipod start examples/hello/service.py
Try:  curl -s localhost:8000/hello -H 'content-type: application/json' -d '{"name": "Ada"}'
"""

from pydantic import BaseModel

from apipod import APIPod

app = APIPod(title="hello")


class Greeting(BaseModel):
    text: str
    shout: bool


@app.endpoint("/hello")
def hello(name: str, times: int = 1, shout: bool = False) -> Greeting:
    """Greet someone, possibly several times."""
    text = " ".join([f"Hello, {name}!"] * times)
    return Greeting(text=text.upper() if shout else text, shout=shout)


@app.endpoint("/add", methods=["GET", "POST"])
def add(a: float, b: float) -> dict:
    """Add two numbers."""
    return {"sum": a + b}
