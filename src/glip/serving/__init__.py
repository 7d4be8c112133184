"""Serving GLIP over HTTP: ``glip serve`` (FastAPI + uvicorn), dynamic batching and a web page.

Needs the ``serve`` extra: ``pip install "glip[serve]"``.

Example:
    >>> from glip.serving.app import create_app  # doctest: +SKIP
    >>> app = create_app(GLIPPredictor.from_pretrained(None), ServeConfig(max_batch=8))  # doctest: +SKIP
"""

from glip.serving.config import ServeConfig

__all__ = ["ServeConfig"]
