"""`vaelab serve RUNS_DIR_OR_RUN`: the latent explorer in the browser (FastAPI app served by uvicorn).

FastAPI, uvicorn and torch load when the command runs (`vaelab serve --help` imports none of them).
"""

from __future__ import annotations

import argparse
import math

from vaelab.commands.catalog import MAX_UPLOAD_BYTES
from vaelab.commands.common import add_shared_options, with_threads
from vaelab.commands.lazy import lazy_function
from vaelab.errors import VaelabError

# bound here (tests replace them on this module), imported when first called
bind = lazy_function("vaelab.serve.bind")
create_app = lazy_function("vaelab.serve.create_app")
is_loopback = lazy_function("vaelab.serve.is_loopback")
make_server = lazy_function("vaelab.serve.make_server")
shown = lazy_function("vaelab.serve.runs.shown")
skipped_text = lazy_function("vaelab.serve.runs.skipped_text")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535.

    Args:
        text: the flag's value.
    """
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {v}")
    return v


def upload_mib(text: str) -> float:
    """argparse type: an upload limit in MiB, a finite number of at least one byte.

    Args:
        text: the flag's value.
    """
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got '{text}'") from None
    if not math.isfinite(v * 2**20) or v * 2**20 < 1:
        raise argparse.ArgumentTypeError(f"must be a finite number of MiB, at least one byte, got '{text}'")
    return v


def cmd_serve(args: argparse.Namespace) -> int:
    """`vaelab serve`: serve the explorer until Ctrl-C.

    Args:
        args: the parsed flags: runs, host, port, device, data_dir, max_upload_mb, threads.
    """
    app = create_app(args.runs, args.device, args.data_dir, max_upload_bytes=int(args.max_upload_mb * 2**20))
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    names, skipped = app.state.catalog.scan()
    listed = ", ".join(n if n.isprintable() else shown(n) for n in names[:5])
    print(
        f"serving {len(names)} run{'s' if len(names) != 1 else ''} ({listed}"
        f"{', ...' if len(names) > 5 else ''}) at http://{where}:{port}/  (Ctrl-C to stop)",
        flush=True,
    )
    if skipped:
        print(f"note: not serving {len(skipped)} folder(s): {skipped_text(skipped)}", flush=True)
    if not is_loopback(args.host):
        print(
            f"note: listening on {args.host}: anyone who can reach this machine can use the explorer",
            flush=True,
        )
    server = make_server(app)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: stopping is the normal end
        print("stopped", flush=True)
    except SystemExit as e:
        raise VaelabError(f"the web server stopped at start-up (uvicorn exit code {e.code})") from None
    except OSError as e:
        raise VaelabError(f"the web server failed: {e.strerror or e}") from None
    finally:
        sock.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `vaelab serve`.

    Args:
        sub: the `vaelab` command's subparsers.
    """
    p = sub.add_parser(
        "serve",
        help="the latent explorer in the browser",
        description="Serve a run (or a folder of runs) as an interactive latent explorer.",
    )
    p.add_argument("runs", metavar="RUNS_DIR_OR_RUN", help="a run folder, or a folder of run folders")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only by default)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port (0: any free port)")
    add_shared_options(p, "device")
    p.add_argument("--data-dir", default=None, help="where the runs' data sets live, if not where they were")
    p.add_argument(
        "--max-upload-mb",
        type=upload_mib,
        default=MAX_UPLOAD_BYTES / 2**20,
        help="largest accepted upload (MiB)",
    )
    add_shared_options(p, "threads", "quiet")
    p.set_defaults(func=with_threads(cmd_serve))
