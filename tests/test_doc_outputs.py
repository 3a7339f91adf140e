"""docs/outputs.py, the one script that re-runs the commands README.md and docs/*.md quote: it rewrites a
stale quote in place, --check fails with a diff on one and passes on a fresh one, durations do not count,
slow quotes wait for --slow, and a failed command or a broken marker is one line, exit 1, nothing written
(issue 22, item 7). The markdown here quotes trivial commands; the real quotes take minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "outputs.py"

STALE = """# A page

Before.

<!-- output: python -c "print(6 * 7)" -->
```
$ python -c "print(6 * 7)"
41
```
<!-- /output -->

Between.

<!-- output: python -c "print('took 3.2 s, 12 ms each')" -->
```
$ python -c "print('took 3.2 s, 12 ms each')"
took 9.9 s, 80 ms each
```
<!-- /output -->
<!-- output slow: python -c "import sys; sys.exit(3)" -->
(a training: not run without --slow)
<!-- /output -->
After.
"""


def outputs(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_check_finds_the_stale_quote_rewrite_fixes_it_and_check_then_passes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(STALE)
    done = outputs("--check", page)
    assert done.returncode == 1
    assert (
        f'{page}:5: the quote of `python -c "print(6 * 7)"` differs from what it prints now:' in done.stdout
    )
    assert "\n-41\n+42\n" in done.stdout
    assert "1 of 2 quoted outputs differ" in done.stdout and "(1 slow not run: --slow)" in done.stdout
    assert "took" not in done.stdout  # only durations differ in the second quote
    assert page.read_text() == STALE  # --check writes nothing

    done = outputs(page)
    assert done.returncode == 0 and "2 quoted outputs run, 1 rewritten" in done.stdout
    assert page.read_text() == STALE.replace("\n41\n", "\n42\n")  # the durations' quote is left as it was

    done = outputs("--check", page)
    assert done.returncode == 0, done.stdout
    assert "2 quoted outputs match what their commands print (ATEN_CPU_CAPABILITY=" in done.stdout


def test_a_failing_command_is_one_line_and_nothing_is_written(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(STALE)
    for args in (("--slow",), ("--slow", "--check")):
        done = outputs(*args, page)
        assert done.returncode == 1 and done.stdout == ""
        assert (
            done.stderr
            == f'outputs.py: {page}:20: `python -c "import sys; sys.exit(3)"` exited 3: (nothing on stderr)\n'
        )
        assert page.read_text() == STALE


def test_broken_markers_are_one_line(tmp_path):
    page = tmp_path / "page.md"
    cases = {
        "<!-- output: python -c 'print(1)' -->\n```\n```\n": f"{page}:1: <!-- output: python -c 'print(1)' --> has no <!-- /output -->",
        "text\n<!-- /output -->\n": f"{page}:2: <!-- /output --> closes no <!-- output: COMMAND -->",
        "<!-- output: a -->\n<!-- output: b -->\n<!-- /output -->\n": f"{page}:2: a new <!-- output: --> before the one on line 1 is closed",
    }
    for text, message in cases.items():
        page.write_text(text)
        done = outputs(page)
        assert (done.returncode, done.stderr) == (1, f"outputs.py: {message}\n")
        assert page.read_text() == text


def test_commands_run_in_one_scratch_folder_per_page_not_in_the_repository(tmp_path):
    """The second command reads what the first wrote (as `vaelab mcmc` reads the summary `vaelab vi` wrote
    into the same --out), and the working folder is not the repository."""
    page = tmp_path / "page.md"
    write = "python -c \"open('made.txt', 'w').write('hello')\""
    read = "python -c \"import os; print(open('made.txt').read(), os.path.exists('docs/outputs.py'))\""
    page.write_text(
        f"<!-- output: {write} -->\n<!-- /output -->\n<!-- output: {read} -->\n<!-- /output -->\n"
    )
    assert outputs(page).returncode == 0
    assert page.read_text() == (
        f"<!-- output: {write} -->\n```\n$ {write}\n```\n<!-- /output -->\n"
        f"<!-- output: {read} -->\n```\n$ {read}\nhello False\n```\n<!-- /output -->\n"
    )
    assert not (Path.cwd() / "made.txt").exists() and not (SCRIPT.parent / "made.txt").exists()
