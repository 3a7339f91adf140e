"""Re-run the commands whose output README.md and docs/*.md quote, and rewrite each quote in place.

A quoted output is marked in the markdown by the command that prints it:

    <!-- output: vaelab vi --model banana --family flow --out runs/banana -->
    ```
    $ vaelab vi --model banana --family flow --out runs/banana
    banana, flow q, reverse KL: ELBO ...
    ```
    <!-- /output -->

Everything between the two markers is replaced by `$ COMMAND` and what the command printed on stdout
(stderr, where the progress bars go, is not quoted). `<!-- output slow: COMMAND -->` marks a quote whose
command takes minutes (a training): it is run only with --slow.

    python docs/outputs.py                 rewrite every fast quote in README.md and docs/*.md
    python docs/outputs.py --check         exit 1 and print a diff where a quote differs from the output now
    python docs/outputs.py --slow          the slow quotes too
    python docs/outputs.py docs/x.md ...   only these files

How the commands run: in document order, in one scratch folder per markdown file (so `--out runs/x` of one
command is there for the next, and nothing lands in the repository), with `vaelab ...` and `python ...`
run by this interpreter and the repository's `src/` first on PYTHONPATH, without a shell.

Machine-dependent parts of an output:
- Durations (`34.4 s`, `2.44 ms`, `3 min`) are compared as `<time>`: a quote that differs only in them
  passes --check and is left as it is.
- torch's vectorised CPU kernels round float64 sums differently under AVX2 and AVX-512, and a fit of 2,000
  Adam steps (the banana flow) carries those last-bit differences into the third decimal. The commands run
  with ATEN_CPU_CAPABILITY=avx2 (unless the environment sets it), which any x86-64 CPU of the last decade
  runs, so the quotes are the same on every such machine.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from vaelab.io import atomic_write_text  # noqa: E402

OPEN = re.compile(r"^<!-- output( slow)?: (.*?) -->\s*$")
CLOSE = re.compile(r"^<!-- /output -->\s*$")
TIME = re.compile(r"(?<![\w.])\d+(?:\.\d+)? ?(?:ms|s|min)\b")
PINNED = {"ATEN_CPU_CAPABILITY": "avx2"}
DIFFERS = "differs from what it prints now:"


class QuoteError(Exception):
    """A malformed marker or a command that failed: one line, naming the file and line."""


@dataclass
class Quote:
    """One marked block: the lines [start, end) between its markers, the command and whether it is slow."""

    line: int  # 1-based line of the opening marker
    command: str
    slow: bool
    start: int  # index of the first line after the opening marker
    end: int  # index of the closing marker


def find_quotes(path: Path, lines: list[str]) -> list[Quote]:
    """The marked blocks of a markdown file, in order.

    Args:
        path: the file (for messages).
        lines: its lines, without line ends.
    """
    quotes: list[Quote] = []
    current: tuple[int, str, bool] | None = None
    for i, text in enumerate(lines):
        opening, closing = OPEN.match(text), CLOSE.match(text)
        if opening:
            if current is not None:
                raise QuoteError(
                    f"{path}:{i + 1}: a new <!-- output: --> before the one on line {current[0] + 1} is closed"
                )
            command = opening.group(2).strip()
            if not command:
                raise QuoteError(f"{path}:{i + 1}: <!-- output: --> names no command")
            current = (i, command, bool(opening.group(1)))
        elif closing:
            if current is None:
                raise QuoteError(f"{path}:{i + 1}: <!-- /output --> closes no <!-- output: COMMAND -->")
            quotes.append(Quote(current[0] + 1, current[1], current[2], current[0] + 1, i))
            current = None
    if current is not None:
        raise QuoteError(f"{path}:{current[0] + 1}: <!-- output: {current[1]} --> has no <!-- /output -->")
    return quotes


def argv_of(command: str) -> list[str]:
    """The command as an argument list: `vaelab` and `python` become this interpreter.

    Args:
        command: the command as the marker writes it (shell quoting, no pipes or redirections).
    """
    argv = shlex.split(command)
    if argv[0] == "vaelab":
        return [sys.executable, "-m", "vaelab", *argv[1:]]
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def environment() -> dict[str, str]:
    """This process's environment with the repository's src/ first and the CPU kernels pinned."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    for key, value in PINNED.items():
        env.setdefault(key, value)
    return env


def run(path: Path, quote: Quote, cwd: Path) -> str:
    """What the quote's command prints on stdout now.

    Args:
        path: the markdown file (for messages).
        quote: the block.
        cwd: the scratch folder to run in.
    """
    try:
        done = subprocess.run(
            argv_of(quote.command), cwd=cwd, env=environment(), capture_output=True, text=True
        )
    except OSError as e:
        raise QuoteError(f"{path}:{quote.line}: cannot run `{quote.command}`: {e.strerror}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise QuoteError(f"{path}:{quote.line}: `{quote.command}` exited {done.returncode}: {last}")
    return done.stdout


def render(command: str, stdout: str) -> list[str]:
    """The block's lines: a fenced block of `$ command` and the output.

    Args:
        command: the command.
        stdout: what it printed.
    """
    return ["```", f"$ {command}", *stdout.rstrip("\n").splitlines(), "```"]


def normalise(lines: list[str]) -> list[str]:
    """Lines with every duration replaced by `<time>` and trailing blanks dropped.

    Args:
        lines: a block's lines.
    """
    return [TIME.sub("<time>", line).rstrip() for line in lines]


def process(path: Path, slow: bool, check: bool) -> tuple[int, int, list[str]]:
    """Re-run the quotes of one file; rewrite it (unless `check`) where a quote changed.

    Returns (quotes run, slow quotes skipped, diff lines of the quotes that differ).

    Args:
        path: the markdown file.
        slow: run the slow quotes too.
        check: compare only, write nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise QuoteError(f"{path}: cannot read: {e.strerror}") from None
    lines = text.splitlines()
    quotes = find_quotes(path, lines)
    ran = skipped = 0
    fresh: dict[int, list[str]] = {}  # by quote.line: the new block, for the quotes that changed
    diffs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vaelab-doc-outputs-") as scratch:
        for quote in quotes:
            if quote.slow and not slow:
                skipped += 1
                continue
            old, new = lines[quote.start : quote.end], render(quote.command, run(path, quote, Path(scratch)))
            ran += 1
            if normalise(old) != normalise(new):
                fresh[quote.line] = new
                diffs.append(f"{path}:{quote.line}: the quote of `{quote.command}` {DIFFERS}")
                diffs += difflib.unified_diff(old, new, "quoted", "now", lineterm="", n=1)
    if fresh and not check:
        for quote in reversed(quotes):  # bottom-up, so the earlier blocks' line numbers hold
            if quote.line in fresh:
                lines[quote.start : quote.end] = fresh[quote.line]
        atomic_write_text(path, "\n".join(lines) + ("\n" if text.endswith("\n") else ""))
    return ran, skipped, diffs


def main(argv: list[str] | None = None) -> int:
    """The command line; see the module's docstring.

    Args:
        argv: the arguments (None: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(
        prog="python docs/outputs.py",
        description="Re-run the commands quoted in README.md and docs/*.md and rewrite (or --check) their outputs.",
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff where a quote differs"
    )
    parser.add_argument("--slow", action="store_true", help="also run the quotes marked `output slow:`")
    args = parser.parse_args(argv)
    files = args.files or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    total = skipped = 0
    differ: list[str] = []
    try:
        for path in files:
            ran, skip, diffs = process(path, args.slow, args.check)
            total, skipped = total + ran, skipped + skip
            differ += diffs
    except QuoteError as e:
        print(f"outputs.py: {e}", file=sys.stderr)
        return 1
    pinned = ", ".join(f"{k}={environment()[k]}" for k in PINNED)
    note = f" ({skipped} slow not run: --slow)" if skipped else ""
    changed = sum(1 for line in differ if line.endswith(DIFFERS))
    if args.check:
        if differ:
            print("\n".join(differ))
            print(
                f"{changed} of {total} quoted outputs differ from what their commands print ({pinned}){note}"
            )
            return 1
        print(f"{total} quoted outputs match what their commands print ({pinned}){note}")
        return 0
    print(f"{total} quoted outputs run, {changed} rewritten ({pinned}){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
