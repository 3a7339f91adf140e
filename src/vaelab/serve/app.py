"""The latent explorer's web app (FastAPI): decode a point of the latent space, encode an uploaded image.

Only the public protocol is used: `decode(z).mean` is the picture of z, `encode(x)` gives the posterior
mean and standard deviation, `prior()` (when the model has one) gives samples; `explore.explorer_view` reads
off which of these a run's model has from its `capabilities` (labels for cvae/m2, two layers, no encoder, no
latent). Models are
loaded once per run and cached; every request names its run, and names are checked by `Catalog` before any
file is touched. Errors answer with a one-line `detail`, their status read from one table (`STATUS`, exception
class -> status): 404 unknown run, 409 the run's model cannot do that (and why) or is a table's (the
explorer draws pictures), 413 too large, 415 not a PNG or JPEG, 422 malformed request (bad JSON, wrong z length, a z value beyond ±Z_LIMIT, invalid run name, a label
that does not fit, a z whose picture is NaN), 500 a run that does not load or a model that gives NaN for its
own samples or an upload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vaelab.errors import VaelabError
from vaelab.serve.errors import BadLabel, BadRequest, NotAnImage, NotFinite, TooLarge, Unsupported
from vaelab.serve.explore import draws, label, pictures, posterior
from vaelab.serve.runs import (
    Catalog,
    LoadedRun,
    RunNameError,
    TableRun,
    UnknownRun,
    plane_summary,
    skipped_json,
)
from vaelab.serve.uploads import (
    MAX_JSON_BYTES,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    BodyLimit,
    data_uri,
    model_input,
    png_bytes,
    read_image,
)
from vaelab.viz.figures import slerp

STATIC = Path(__file__).parent / "static"
# Every z value is bounded, not just finite: 1e39 is a finite Python float but overflows float32 to inf, and
# a decoder fed inf gives NaN. Codes of a trained model lie within a few units of 0; 1e4 leaves room to spare.
Z_LIMIT = 1e4
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-Z_LIMIT, le=Z_LIMIT)]
Vector = Annotated[list[Finite], Field(min_length=1, max_length=4096)]
Label = Annotated[int, Field(strict=True, ge=0, le=1_000_000)]


# The one table from what went wrong to the HTTP status; an exception takes the entry of the nearest class
# in its MRO (RunNameError and UnknownRun before VaelabError).
STATUS: dict[type[Exception], int] = {
    RunNameError: 422,
    UnknownRun: 404,
    Unsupported: 409,
    TableRun: 409,
    BadLabel: 422,
    NotFinite: 422,
    BadRequest: 422,
    TooLarge: 413,
    NotAnImage: 415,
    VaelabError: 500,
}


def status_of(exc: Exception) -> int:
    """The HTTP status of `exc` from `STATUS` (500 for what the table does not name).

    Args:
        exc: what a request failed with.
    """
    return next((STATUS[k] for k in type(exc).__mro__ if k in STATUS), 500)


def detail_of(exc: Exception, status: int) -> str:
    """The response's `detail`: the message of a client error as it is; a server failure's message (which may
    come from deeper code, over several lines) on one line.

    Args:
        exc: what the request failed with.
        status: its HTTP status.
    """
    return str(exc) if status < 500 else " ".join(str(exc).split())


def _body_unreadable(exc: StarletteHTTPException) -> bool:
    """FastAPI's 400 for a body its parser failed on (not UTF-8, nested too deep): it raises that 400 `from`
    the parser's exception, where a 400 of Starlette's own (a malformed multipart form) has no cause."""
    return exc.status_code == 400 and exc.__cause__ is not None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecodeRequest(_Strict):
    run: str
    z: Vector
    y: Label | None = None


class SampleRequest(_Strict):
    run: str
    n: int = Field(16, ge=1, le=64)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    y: Label | None = None


class InterpolateRequest(_Strict):
    run: str
    z0: Vector
    z1: Vector
    steps: int = Field(10, ge=2, le=64)
    path: Literal["linear", "spherical"] = "linear"
    y: Label | None = None


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            parts.append(f"malformed JSON at character {err['loc'][-1]}: {reason}".rstrip(": "))
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(
    root: str | Path,
    device: str = "cpu",
    data_dir: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_codes: int = 2000,
) -> FastAPI:
    """The explorer app over the runs in `root` (a folder of runs, or one run); VaelabError (one line) for a
    folder without runs, an unknown device or a limit below 1.

    Args:
        root: a run folder, or a folder of run folders.
        device: where the models are loaded (cpu, cuda, cuda:N or auto).
        data_dir: where the runs' data sets live, if not where they were trained.
        max_upload_bytes: the largest /api/encode body.
        max_pixels: the largest uploaded image (width x height).
        max_codes: at most this many test codes per run for the scatter.
    """
    if max_upload_bytes < 1 or max_pixels < 1 or max_codes < 1:
        raise VaelabError(
            f"limits must be at least 1, got max_upload_bytes={max_upload_bytes}, "
            f"max_pixels={max_pixels}, max_codes={max_codes}"
        )
    catalog = Catalog(root, device, data_dir, max_codes)
    app = FastAPI(
        title="vaelab explorer", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.catalog = catalog
    app.add_middleware(BodyLimit, default=MAX_JSON_BYTES, limits={"/api/encode": max_upload_bytes})
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers a body it cannot decode (not UTF-8, say) with 400; every malformed request is 422 here.
        if _body_unreadable(exc):
            return JSONResponse({"detail": "malformed JSON: the body is not UTF-8 text"}, status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def _answer(request: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)
        return JSONResponse({"detail": detail_of(exc, status)}, status_code=status)

    for kind in STATUS:
        app.add_exception_handler(kind, _answer)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        """A bug, not the client's doing: still one line of JSON (the traceback goes to the server's log)."""
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}) serving {request.url.path}"}, status_code=500
        )

    def vector(run: LoadedRun, values: list[float], name: str) -> torch.Tensor:
        run.view.require("decode")
        if len(values) != run.latent_dim:
            raise BadRequest(
                f"{name} has {len(values)} values; run {run.name!r} has a {run.latent_dim}-d latent space"
            )
        return torch.tensor(values, dtype=torch.float32, device=run.device)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        """The runs being served, with what each was trained with and what the explorer can do with it, and
        the folders holding a checkpoint that are not served, with the reason."""
        names, skipped = catalog.scan()
        return {
            "single": catalog.single,
            "runs": [catalog.info(n) for n in names],
            "skipped": skipped_json(skipped),
        }

    @app.get("/api/latents")
    def latents(run: Annotated[str, Query(description="run name")]) -> dict[str, Any]:
        """The run's test codes (posterior means) and labels, and the plane summary for D > 2; 409 for a
        model that cannot encode."""
        r = catalog.latents(run)
        z = r.codes
        return {
            "run": r.name,
            "model": r.model_name,
            "likelihood": r.likelihood,
            "data": r.data,
            "binarize": r.binarize,
            "shape": list(r.shape),
            "latent_dim": r.latent_dim,
            "generative": r.generative,
            "count": 0 if z is None else len(z),
            "codes": [] if z is None else [[round(v, 4) for v in row] for row in z.tolist()],
            "codes_of": r.codes_of,
            "labels": None if r.labels is None else r.labels.tolist(),
            "note": r.note,
            **plane_summary(z, r.latent_dim),
        }

    @app.post("/api/decode", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def decode(req: DecodeRequest) -> Response:
        """The decoded picture of one z (the mean of p(x|z), at label y for cvae/m2: default 0) as a PNG."""
        r = catalog.get(req.run)
        z = vector(r, req.z, "z")
        y = label(r.view, req.y, r.name, r.device)
        png = png_bytes(pictures(r.model, z[None], y)[0])
        headers = {"Cache-Control": "no-store"}
        if y is not None:
            headers["X-Vaelab-Label"] = str(int(y))
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/api/encode")
    def encode(
        run: Annotated[str, Form()],
        file: Annotated[UploadFile, File(description="a PNG or JPEG image")],
        invert: Annotated[bool, Form()] = False,
        y: Annotated[int | None, Form(ge=0, le=1_000_000, description="the image's label (cvae, m2)")] = None,
    ) -> dict[str, Any]:
        """Posterior mean and standard deviation of an uploaded image, with what the model saw and rebuilt;
        409 for a model that cannot encode."""
        r = catalog.get(run)
        r.view.require("encode")
        images = read_image(file.file.read(), file.content_type, r.shape, invert, max_pixels)
        x = model_input(images.to(r.device), r.binarize, r.upload_seed, r.device)
        try:
            mean, std, how = posterior(r.model, r.view, x, y, r.name)
            used = None if "y" not in how else torch.tensor(how["y"], device=r.device)
            rec = pictures(r.model, mean[None], used)[0]
        except NotFinite as e:  # the model's failure on an image, not on a z the client chose: 500
            raise VaelabError(f"run {r.name!r}: {e}") from None
        return {
            "run": r.name,
            "mean": mean.tolist(),
            "std": std.tolist(),
            **how,
            "binarized": r.binarize != "none",
            "input": data_uri(png_bytes(x[0])),
            "reconstruction": data_uri(png_bytes(rec)),
        }

    @app.post("/api/sample")
    def sample(req: SampleRequest) -> dict[str, Any]:
        """n samples: decoded draws from the prior, or the model's own sampler (ancestral, pixel by pixel),
        or decoded N(0, I) draws for a model without either; `source` says which."""
        r = catalog.get(req.run)
        try:
            out = draws(r.model, r.view, req.n, req.seed, req.y, r.name, r.device)
        except NotFinite as e:  # the model's failure on its own draws, not on numbers the client chose: 500
            raise VaelabError(f"run {r.name!r}: {e}") from None
        return {
            "z": out["z"],
            "y": out["y"],
            "images": [data_uri(png_bytes(p)) for p in out["images"]],
            "generative": r.generative,
            "source": out["source"],
        }

    @app.post("/api/interpolate")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        """A strip of decoded pictures along a linear or spherical path from z0 to z1 (at label y for cvae/m2)."""
        r = catalog.get(req.run)
        z0, z1 = vector(r, req.z0, "z0"), vector(r, req.z1, "z1")
        y = label(r.view, req.y, r.name, r.device)
        t = torch.linspace(0, 1, req.steps, device=r.device)
        z = z0 + t[:, None] * (z1 - z0) if req.path == "linear" else slerp(z0[None], z1[None], t)[0]
        pics = pictures(r.model, z, y)
        return {
            "z": z.tolist(),
            "y": None if y is None else int(y),
            "images": [data_uri(png_bytes(p)) for p in pics],
            "path": req.path,
        }

    return app
