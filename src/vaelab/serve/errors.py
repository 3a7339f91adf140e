"""What a request to the explorer can fail with, one class per answer: `serve.app.STATUS` maps each class to
its HTTP status, and the message is the response's one-line `detail`.
"""

from __future__ import annotations


class Unsupported(Exception):
    """A request the run's model cannot answer (the reason is one line): 409."""


class BadLabel(Exception):
    """A label that does not fit the run (missing where required, out of range, or not taken): 422."""


class NotFinite(Exception):
    """The model gave NaN or infinite values where a picture or a posterior should be: nothing to show.

    422 for a picture of a z the client chose (decode, interpolate); 500 for samples and uploads."""


class BadRequest(Exception):
    """A well-formed request whose values do not fit the run or the endpoint (a z of the wrong length, an
    empty upload): 422."""


class TooLarge(Exception):
    """An upload over a limit (an image with more pixels than allowed): 413."""


class NotAnImage(Exception):
    """An upload that is not a readable PNG or JPEG image: 415."""
