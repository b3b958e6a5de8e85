"""``hello``: a bare Flask app returning a small JSON, the ceiling for ``health``."""

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/")
def hello() -> Response:
    """Answer at once, without touching anything."""
    return jsonify(status="healthy", service="hello", version="1.0.0")
