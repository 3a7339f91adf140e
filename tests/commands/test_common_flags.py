"""Common flags mean the same on every subcommand, and every --help reads well.

--quiet (no progress bars) and --plugin are on every subcommand; --device and --threads on those that run a
model; --seed on those that draw random numbers; each is defined once (commands.common.SHARED_OPTIONS). In
every --help an option states its default once, and a description's example lines keep their line breaks.
"""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from vaelab.cli import build_parser, main
from vaelab.commands.common import SHARED_OPTIONS, torch_threads
from vaelab.errors import ConfigError


def leaves() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's own parser by its path ('train', 'data list', ...), with all its options."""

    def walk(parser: argparse.ArgumentParser, path: str) -> dict[str, argparse.ArgumentParser]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {path: parser}
        found = {}
        for name, child in subs[0].choices.items():
            found.update(walk(child, f"{path} {name}".strip()))
        return found

    return walk(build_parser(), "")


LEAVES = leaves()


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_every_subcommand_accepts_quiet_and_plugin():
    """On the subcommand itself: `vaelab data list --quiet --plugin X` too (--plugin was on `data` alone)."""
    for path, parser in LEAVES.items():
        positionals = [a for a in parser._actions if not a.option_strings]
        required = [
            w for a in parser._actions if a.option_strings and a.required for w in (a.option_strings[0], "x")
        ]
        args = parser.parse_args(["x"] * len(positionals) + required + ["--quiet", "--plugin", "p.py"])
        assert args.quiet is True and args.plugin == ["p.py"], path


RUNS_A_MODEL = {
    "train", "eval", "sample", "reconstruct", "manifold", "interpolate", "latents", "figures", "report", "serve",
    "analogies",
}  # fmt: skip
DRAWS_RANDOM_NUMBERS = {
    "train", "eval", "sample", "reconstruct", "interpolate", "figures", "report", "vi", "mcmc", "analogies",
}  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("--device", RUNS_A_MODEL), ("--threads", RUNS_A_MODEL), ("--seed", DRAWS_RANDOM_NUMBERS)],
)
def test_device_threads_and_seed_where_they_apply(flag, expected):
    assert {path for path, p in LEAVES.items() if flag in options(p)} == expected


@pytest.mark.parametrize("name", list(SHARED_OPTIONS))
def test_a_shared_option_is_the_same_kind_of_option_everywhere(name):
    flag, spec = SHARED_OPTIONS[name]
    for path, parser in LEAVES.items():
        action = options(parser).get(flag)
        if action is None:
            continue
        assert action.nargs == (0 if spec.get("action") == "store_true" else None), (path, flag)
        assert action.type is spec.get("type"), (path, flag)
        if path != "train":  # train's flags default to None: a flag left out keeps the config's value
            assert action.default == spec.get(
                "default", None if spec.get("action") != "store_true" else False
            )


def test_vi_quiet_prints_no_progress(tmp_path, capsys):
    argv = ["vi", "--model", "normal-normal", "--family", "diagonal", "--steps", "30", "--kl-every", "10"]
    assert main([*argv, "--out", str(tmp_path / "loud")]) == 0
    assert "vi diagonal" in capsys.readouterr().err  # the progress bar, without --quiet
    assert main([*argv, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "normal-normal, diagonal q, reverse KL: ELBO" in out


def test_mcmc_quiet_prints_no_progress(tmp_path, capsys):
    argv = ["mcmc", "--model", "normal-normal", "--sampler", "mh", "--chains", "2", "--draws", "50"]
    assert main([*argv, "--warmup", "20", "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "normal-normal, mh: 2 chains × 50 draws" in out


def test_threads_is_set_for_the_command_and_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="--threads must be >= 1, got 0"), torch_threads(0):
        pass


def test_sample_refuses_zero_threads_in_one_line(tmp_path, capsys, one_line_error):
    one_line_error(capsys, main(["sample", str(tmp_path), "--threads", "0"]), "--threads must be >= 1, got 0")


def help_entries(text: str) -> list[str]:
    """The options' entries of a help text, each with its continuation lines joined."""
    entries: list[str] = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            entries.append(line.strip())
        elif entries and re.match(r"^ {3,}\S", line):
            entries[-1] += " " + line.strip()
        else:
            entries.append("")
    return [e for e in entries if e]


@pytest.mark.parametrize("path", list(LEAVES))
def test_help_states_each_default_once(path):
    text = LEAVES[path].format_help()
    for entry in help_entries(text):
        assert entry.count("(default") <= 1, entry
    assert "(default: None)" not in text and "(default: [])" not in text and "(default: False)" not in text


def test_eval_threads_help_says_its_default_once():
    entry = next(e for e in help_entries(LEAVES["eval"].format_help()) if e.startswith("--threads"))
    assert entry.endswith("(default: cores / processes)")


@pytest.mark.parametrize("path", [p for p, parser in LEAVES.items() if parser.description])
def test_help_keeps_the_examples_line_for_line(path):
    parser = LEAVES[path]
    shown = [line.rstrip() for line in parser.format_help().splitlines()]
    examples = [line.rstrip() for line in parser.description.splitlines() if re.match(r"^\s+vaelab ", line)]
    for line in examples:
        assert line in shown, (path, line)
    if path in ("vi", "mcmc"):
        assert len(examples) >= 2
