"""What every benchmark records (BENCHMARKS.md): the command, commit, machine and setting, and each figure
with its unit; written atomically to `benchmarks/results/<name>.json`.

Standard library only (torch if present), so the peers' interpreter in `.venv-bench` can import it too.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def default_data_dir() -> str:
    """`$VAELAB_DATA`, else `../shared/data` beside the repository."""
    return os.environ.get("VAELAB_DATA") or str(ROOT.parent / "shared" / "data")


def mlp_vae_config(
    data: str,
    data_dir: str,
    *,
    limit: int = 0,
    epochs: int = 1,
    threads: int = 0,
    seed: int = 0,
    batch_size: int = 128,
    hidden: int = 400,
    latent: int = 20,
    precision: str = "fp32",
    compile: bool = False,
):
    """The speed benchmarks' model as a vaelab Config: the 784-400-20 ReLU MLP VAE (Kingma & Welling 2014, the
    PyTorch examples'), dynamic binarization, Adam 1e-3, no validation split, no progress bar."""
    from vaelab.config import Config  # here, so that the peers' interpreter can import this module

    return Config().replace(
        **{
            "data.name": data,
            "data.data_dir": data_dir,
            "data.valid_fraction": 0.0,
            "data.binarize": "dynamic",
            "data.train_limit": limit,
            "model.hidden": (hidden,),
            "model.latent_dim": latent,
            "train.batch_size": batch_size,
            "train.lr": 1e-3,
            "train.optimizer": "adam",
            "train.epochs": epochs,
            "train.threads": threads,
            "train.progress": False,
            "train.seed": seed,
            "train.precision": precision,
            "train.compile": compile,
        }
    )


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo (or the platform) states it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")) -> list[str]:
    """Which of the flags that decide bf16 speed the CPU has (bf16 is emulated without avx512_bf16 or amx_bf16)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def git_commit() -> str:
    """HEAD's hash, with `+dirty` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, capture_output=True).returncode
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: what else the machine was doing."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine(threads: int | None = None) -> dict[str, Any]:
    """CPU model, cores, torch version and thread count, Python, and the load when measured."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": cores,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = threads if threads is not None else torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        info["threads"] = threads
    return info


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summary(values: list[float], unit: str) -> dict[str, Any]:
    """Median, min and max of repetitions, with their unit and count."""
    if not values:
        return {"unit": unit, "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "unit": unit,
        "values": values,
    }


def figure(value: float, unit: str) -> dict[str, Any]:
    """One measured number and its unit."""
    return {"value": value, "unit": unit}


def command_line() -> str:
    """How this benchmark was started, as a shell line."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def write_results(
    name: str, setting: dict[str, Any], figures: dict[str, Any], threads: int | None = None
) -> Path:
    """Write `benchmarks/results/<name>.json` atomically: command, commit, machine, setting and figures."""
    body = {
        "benchmark": name,
        "command": command_line(),
        "git_commit": git_commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(threads),
        "setting": setting,
        "figures": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    fd, tmp = tempfile.mkstemp(dir=RESULTS, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock beside `path` (two benchmark processes merge into one results file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def commit_files(paths: list[Path], message: str) -> bool:
    """`git add` and `git commit` these files alone (results committed as a long run goes); False, said in one
    line, if a file is outside the repository or git refuses."""
    files = [Path(p).resolve() for p in paths if Path(p).exists()]
    outside = [f for f in files if not f.is_relative_to(ROOT)]
    if outside or not files:
        print(
            f"  (not committed: {outside[0] if outside else 'no file'} is outside the repository)", flush=True
        )
        return False
    rel = [str(f.relative_to(ROOT)) for f in files]
    done = subprocess.run(["git", "add", "--", *rel], cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 0:
        done = subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *rel], cwd=ROOT, capture_output=True, text=True
        )
    if done.returncode != 0:
        print(f"  (git commit of {' '.join(rel)} failed: {done.stderr.strip()[:200]})", flush=True)
    return done.returncode == 0
