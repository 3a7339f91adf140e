"""The core commands on tiny real data: the files they write, and one-line errors with exit code 1."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vaelab.cli import main
from vaelab.train import read_checkpoint, save_checkpoint
from vaelab.viz.grids import FIGURE_FORMATS

FIGURES = ("samples", "reconstructions", "manifold", "interpolations", "latents", "curves")


@pytest.fixture(scope="module")
def run2d(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "train",
            "--data",
            "digits",
            "--latent-dim",
            "2",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--quiet",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 50 and im.height > 50


def test_train_writes_the_run_folder(run2d, capsys):
    for name in ("config.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run2d / name).is_file()
    for f in FIGURES:
        _png(run2d / "figures" / f"{f}.png")
    cfg = json.loads((run2d / "config.json").read_text())
    assert cfg["model"]["latent_dim"] == 2 and cfg["data"]["name"] == "digits"


@pytest.fixture
def tiles(monkeypatch):
    """(pictures, pictures per row) of every grid the figures tile from now on, in order (still tiled)."""
    from vaelab.viz import figures as fig

    seen = []
    real = fig.tile

    def tile(images, ncol, pad=1):
        seen.append((len(images), ncol))
        return real(images, ncol, pad)

    monkeypatch.setattr(fig, "tile", tile)
    return seen


@pytest.mark.parametrize(
    ("args", "name", "grids"),
    [
        (["sample", "-n", "16"], "samples", [(16, 4)]),
        (["reconstruct", "-n", "8"], "reconstructions", [(8, 3), (8, 3)]),  # inputs, reconstructions
        (["manifold", "-n", "5"], "manifold", [(25, 5)]),
        # linear and spherical: 2 paths (rows) of 4 steps each
        (["interpolate", "--pairs", "2", "--steps", "4"], "interpolations", [(8, 4), (8, 4)]),
        (["latents"], "latents", []),  # a scatter and a line chart: no grid of pictures
        (["curves"], "curves", []),
    ],
)
def test_each_figure_command(run2d, tmp_path, capsys, tiles, args, name, grids):
    """Each figure command writes its PNG, drawing the grids its flags ask for: -n pictures (rows of ceil(sqrt
    n)), an n x n manifold, --pairs paths of --steps pictures."""
    out = tmp_path / f"{name}.png"
    assert main([*args, str(run2d), "--out", str(out)]) == 0
    _png(out)
    assert f"wrote {out}" in capsys.readouterr().out
    assert tiles == grids


def test_train_output_names_test_elbo_and_folder(tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--hidden",
                "16",
                "--epochs",
                "1",
                "--quiet",
                "--no-figures",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "test ELBO:" in text and f"run folder: {out}" in text
    assert not (out / "figures").exists()


def test_autoencoder_and_high_dimensional_manifold(tmp_path, capsys, monkeypatch):
    """An autoencoder (no prior) trains with figures, and `manifold --dims 1,3` of its 4-d codes decodes the
    grid over z[1] and z[3] alone, at the codes' own mean and spread."""
    from vaelab.commands.common import open_run
    from vaelab.viz import figures as fig

    from vaelab_testing import capture_decoded, manifold_grid

    out = tmp_path / "ae"
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                "autoencoder",
                "--latent-dim",
                "4",
                "--hidden",
                "16",
                "--epochs",
                "1",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    _png(out / "figures" / "samples.png")
    o = open_run(str(out))
    codes = fig.codes(o.model, o.split("test"), limit=5000).double()
    decoded = capture_decoded(monkeypatch)
    assert main(["manifold", str(out), "--dims", "1,3", "-n", "4", "--out", str(tmp_path / "m.png")]) == 0
    _png(tmp_path / "m.png")
    # no prior: about the codes' mean, z[1] rising along a row and z[3] falling down a column at the codes'
    # spread; z[0] and z[2] stay at the codes' mean
    expected = manifold_grid(4, codes.mean(0), (1, 3), codes[:, [1, 3]].std(0))
    torch.testing.assert_close(decoded[0].double().reshape(4, 4, 4), expected, rtol=0, atol=1e-5)


def test_data_commands(capsys):
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("mnist", "fashion-mnist", "mnist-5k", "digits", "frey-face", "folder:PATH"):
        assert name in listing
    assert main(["data", "info", "mnist-5k"]) == 0
    assert "train   4000 images of (1, 28, 28)" in capsys.readouterr().out


def test_bad_inputs_give_one_line_and_exit_1(run2d, tmp_path, capsys, one_line_error):
    cases = [
        (["train", "--data", "nope", "--out", str(tmp_path / "a")], ["unknown data set 'nope'", "mnist-5k"]),
        (
            ["train", "--model", "vea", "--out", str(tmp_path / "a")],
            ["unknown model 'vea'", "vae, autoencoder"],
        ),
        (["train", "--likelihood", "x", "--out", str(tmp_path / "a")], ["unknown likelihood 'x'"]),
        (
            ["train", "--activation", "swish", "--out", str(tmp_path / "a")],
            ["unknown activation 'swish'", "gated"],
        ),
        (
            [
                "train",
                "--data",
                "digits",
                "--body",
                "conv",
                "--activation",
                "gated",
                "--out",
                str(tmp_path / "a"),
            ],
            ["activation 'gated' (gated linear units) applies to MLP layers only"],
        ),
        (
            ["train", "--data", "mnist", "--out", str(tmp_path / "a")],
            ["data set 'mnist' not found", "--data-dir"],
        ),
        (
            ["train", "--data", "digits", "--out", str(tmp_path / "a"), "--resume"],
            ["--resume: no checkpoint at"],
        ),
        (["train", "--set", "train.lrr=1", "--out", str(tmp_path / "a")], ["unknown config key 'train.lrr'"]),
        (["sample", str(tmp_path / "nothing")], ["no run folder or checkpoint at"]),
        (["curves", str(tmp_path)], ["no metrics yet"]),
        (["manifold", str(run2d), "--dims", "0,7"], ["not two distinct dimensions of a 2-d latent space"]),
        (["data", "get", "frey-face"], ["data set 'frey-face' not found"]),
    ]
    for args, needles in cases:
        one_line_error(capsys, main(args), *needles)


def test_gated_activation_from_the_command_line(tmp_path):
    out = tmp_path / "gated"
    args = ["train", "--data", "digits", "--hidden", "16", "--activation", "gated", "--epochs", "1"]
    assert main([*args, "--quiet", "--threads", "1", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["activation"] == "gated"
    weights = read_checkpoint(out / "checkpoints/last.pt")["model"]
    assert weights["encoder.net.0.linear.weight"].shape == (32, 64)  # value and gate halves of 16 units


def test_unwritable_output_folder(tmp_path, capsys, one_line_error):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["train", "--data", "digits", "--epochs", "1", "--quiet", "--out", str(blocker / "run")])
    one_line_error(capsys, code, "cannot create folder", str(blocker / "run"), "is not a folder")


def test_wrong_files_for_a_named_source(tmp_path, capsys, one_line_error, tiny_mnist):
    code = main(["train", "--data", "mnist", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "is not mnist's train-images-idx3-ubyte.gz")
    assert not (tmp_path / "r").exists()  # nothing is created before the data are good
    (tiny_mnist / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    code = main(["train", "--data", "mnist", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "r")])
    one_line_error(capsys, code, "train-images-idx3-ubyte.gz: unreadable")
    assert not (tmp_path / "r").exists()


def test_model_of_another_size_and_other_checkpoints(run2d, tmp_path, capsys, one_line_error):
    ck = read_checkpoint(run2d / "checkpoints/last.pt")
    ck["config"]["data"]["name"] = "mnist-5k"
    save_checkpoint(tmp_path / "moved.pt", ck)
    code = main(["reconstruct", str(tmp_path / "moved.pt"), "--out", str(tmp_path / "x.png")])
    one_line_error(capsys, code, "mnist-5k images are (1, 28, 28), the model was built for (1, 8, 8)")
    ck["config"]["model"]["latent_dim"] = 3
    save_checkpoint(tmp_path / "other.pt", ck)
    code = main(["sample", str(tmp_path / "other.pt"), "--out", str(tmp_path / "x.png")])
    one_line_error(capsys, code, "other.pt: weights do not fit a 'vae' model")
    assert not (tmp_path / "x.png").exists()


MAGIC = {  # the first bytes of a file in each figure format
    "png": b"\x89PNG",
    "pdf": b"%PDF-",
    "svg": b"<?xml",
    "svgz": b"\x1f\x8b",
    "eps": b"%!PS-Adobe-3.0 EPSF",
    "ps": b"%!PS-Adobe-3.0\n",
    "jpg": b"\xff\xd8\xff",
    "jpeg": b"\xff\xd8\xff",
    "tif": b"II*\x00",
    "tiff": b"II*\x00",
    "webp": b"RIFF",
}


@pytest.mark.parametrize(
    ("suffix", "magic"),
    [*((f".{f}", MAGIC[f]) for f in FIGURE_FORMATS), (".PNG", MAGIC["png"]), ("", MAGIC["png"])],
)
def test_a_figure_is_written_in_the_format_its_name_asks_for(run2d, tmp_path, capsys, suffix, magic):
    """--out x.jpg wrote PNG bytes under a .jpg name; a name without a suffix stays PNG."""
    out = tmp_path / f"samples{suffix}"
    assert main(["sample", str(run2d), "-n", "4", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left beside it


@pytest.mark.parametrize(
    "command", ["sample", "reconstruct", "manifold", "interpolate", "latents", "curves", "analogies"]
)
def test_a_figure_name_in_an_unknown_format_is_refused_before_anything_runs(run2d, tmp_path, capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, str(run2d), "--out", str(tmp_path / "x.docx")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(
        f"vaelab {command}: error: argument --out: {tmp_path / 'x.docx'}: a figure cannot be "
    )
    assert err.endswith(
        "written as .docx; name a file ending in " + ", ".join(f".{f}" for f in FIGURE_FORMATS)
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "RUN"],
        ["curves", "RUN"],
        ["report", "RUN"],
        ["eval", "RUN"],
        ["export", "RUN"],
        ["vi"],
        ["mcmc"],
    ],
)
def test_an_empty_out_is_one_line_and_writes_nothing(
    run2d, tmp_path, monkeypatch, capsys, one_line_error, argv
):
    """`--out ""` (an unset shell variable) fell back to the default place (RUN/figures/samples.png,
    RUN/report.html, RUN/eval.json) or the current folder without a word."""
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(run2d) for p in run2d.rglob("*"))
    code = main([a.replace("RUN", str(run2d)) for a in argv] + ["--out", " " if argv[0] == "vi" else ""])
    line = one_line_error(capsys, code)
    assert (
        line
        == f"vaelab {argv[0]}: error: --out is empty (an unset shell variable?): name the file or folder to write"
    )
    assert sorted(p.relative_to(run2d) for p in run2d.rglob("*")) == before and list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["sample", "x", "-n", "0"])
    assert e.value.code == 2


def test_every_option_with_a_default_says_it_in_help():
    """README: 'every subcommand has --help with its defaults'. argparse prints a default only beside a help
    text, so every option that has a default (not a flag) needs one."""
    import argparse

    from vaelab.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, parser in sub.choices.items()
        for action in parser._actions
        if action.option_strings
        and action.default not in (None, argparse.SUPPRESS, False, True)
        and not action.help
    ]
    assert silent == []


def test_resume_with_a_config_file_applies_or_refuses_what_it_sets(tmp_path, capsys, one_line_error):
    """--resume --config FILE: the file's keys count as asked for, like flags (they were silently ignored)."""
    run = tmp_path / "r"
    tiny = [
        "--data",
        "digits",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
        "--no-figures",
        "--threads",
        "1",
    ]
    assert main(["train", *tiny, "--epochs", "1", "--out", str(run)]) == 0
    longer, other = tmp_path / "longer.yaml", tmp_path / "other.yaml"
    longer.write_text("train:\n  epochs: 3\n")
    other.write_text("train:\n  epochs: 3\n  lr: 0.5\n")
    one_line_error(
        capsys, main(["train", "--out", str(run), "--resume", "--config", str(other)]), "train.lr differs"
    )
    assert main(["train", "--out", str(run), "--resume", "--config", str(longer), "--quiet"]) == 0
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]
