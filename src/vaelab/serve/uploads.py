"""What comes in and goes out as pictures: a request-body limit, upload checks and conversion, PNG output.

The body limit is an ASGI middleware: a declared Content-Length over the limit is answered with 413
before a byte of the body is read, and a body without one (chunked) is counted as it streams and cut
off with 413 as soon as it passes the limit, so an oversize upload is never read whole. An uploaded
image must be a PNG or JPEG (by its declared type and by its content), within a pixel budget checked
from its header before it is decoded; it is then converted by the very function a `folder:` data set's
images go through (`vaelab.data.pictures.read_picture`: transparency onto white, grey or RGB, centre crop
to the model's aspect, bilinear resize) and, for a binarized run, binarized as the run's test
split was evaluated: one Bernoulli draw with the run's test seed.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import torch
from fastapi import HTTPException
from PIL import Image

from vaelab.data import ImageSet, prepare
from vaelab.data.pictures import OtherFormat, OverPixelLimit, UnreadableImage, read_picture
from vaelab.serve.errors import BadRequest, NotAnImage, TooLarge

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_JSON_BYTES = 256 * 1024
MAX_PIXELS = 25_000_000
ACCEPTED_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse request bodies over a per-path byte limit with 413, without reading them."""

    def __init__(self, app: Any, default: int = MAX_JSON_BYTES, limits: Mapping[str, int] | None = None):
        self.app = app
        self.default = default
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _plain(send, 400, "Content-Length is not a number")
                return
            if size > limit:
                await _plain(send, 413, f"request body of {size} bytes is over the limit of {limit} bytes")
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, counted, send)


async def _plain(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def read_image(
    data: bytes, content_type: str | None, shape: tuple[int, int, int], invert: bool, max_pixels: int
) -> torch.Tensor:
    """An uploaded PNG/JPEG as uint8 [1, C, H, W] in the model's shape, converted by the very rule a
    `folder:` data set's images are (`vaelab.data.pictures.read_picture`: transparency onto white, EXIF
    rotation, 16-bit greys scaled, centre crop, bilinear resize): NotAnImage (415), TooLarge (413, also for a
    header past Pillow's own decompression-bomb limit) or BadRequest (422, empty) when it is not one.

    Args:
        data: the uploaded bytes.
        content_type: the type the client declared (image/png or image/jpeg).
        shape: the model's (C, H, W): the image is converted to C channels and centre-cropped to H x W.
        invert: invert the picture's levels (255 - v) after resizing.
        max_pixels: the largest width x height accepted, checked from the header before decoding.
    """
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ACCEPTED_TYPES:
        raise NotAnImage(f"expected a PNG or JPEG image, got content type {declared or 'none'!r}")
    if not data:
        raise BadRequest("the uploaded file is empty")
    c, h, w = shape
    try:
        arr = read_picture(data, c, h, w, max_pixels, formats=("PNG", "JPEG"))
    except OverPixelLimit as e:
        raise TooLarge(f"image of {e}") from None
    except OtherFormat as e:
        raise NotAnImage(f"{e}, not a PNG or JPEG image") from None
    except UnreadableImage as e:
        if not e.opened:
            raise NotAnImage("the file is not a readable PNG or JPEG image") from None
        raise NotAnImage(f"the image could not be decoded ({e})") from None
    if invert:
        arr = 255 - arr
    return torch.from_numpy(arr)[None]


def model_input(images: torch.Tensor, binarize: str, seed: int, device: torch.device) -> torch.Tensor:
    """uint8 [N, C, H, W] as the model's float input, prepared exactly as the run's test split was.

    Args:
        images: the pictures, uint8 [N, C, H, W].
        binarize: the run's binarization (none, static or dynamic).
        seed: the seed of a binarizing draw (the run's test seed).
        device: where the model lives.
    """
    prepared = prepare(ImageSet(images, None, "upload"), binarize, device, seed, train=False)
    return prepared.batch(slice(0, len(images)))


def png_bytes(image: torch.Tensor) -> bytes:
    """One image [C, H, W] with values in [0, 1] as PNG bytes (grey or RGB).

    Args:
        image: the picture, values clamped to [0, 1].
    """
    arr = (image.detach().float().clamp(0, 1).cpu() * 255.0).round().to(torch.uint8).numpy()
    pic = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    pic.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI, for images inside JSON answers.

    Args:
        png: the PNG file's bytes.
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
