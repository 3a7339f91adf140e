"""A model and an objective written outside vaelab (tests/plugins/), exactly as docs/extending.md shows them:
registered in one line each, then trained, evaluated, reported, drawn and explored through the public API and
the command line; and the one-line refusals (a plugin that does not import, a name registered twice, a run
opened without its plugin)."""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.distributions import MixtureSameFamily

import vaelab
from vaelab import plugins
from vaelab.cli import build_parser, main
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.models.registry import MODELS, SOURCES, ModelSpec, build_model, register_model
from vaelab.objectives import OBJECTIVES, iwae_bound
from vaelab.serve import create_app
from vaelab.train.checkpoint import read_checkpoint

from vaelab_testing import TINY_TRAIN, small_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2 to httpx
    from fastapi.testclient import TestClient

HERE = Path(__file__).resolve().parent
MOG = HERE / "plugins" / "mixture_prior_vae.py"
RENYI = HERE / "plugins" / "renyi_objective.py"
DOCS = HERE.parent / "docs" / "extending.md"


@pytest.fixture(scope="module", autouse=True)
def _registries_as_they_were():
    """What this module's plugins register is taken out again afterwards (the tables are process-wide)."""
    saved = [(table, dict(table)) for table in (MODELS, OBJECTIVES, SOURCES, plugins._LOADED)]
    yield
    for table, items in saved:
        table.clear()
        table.update(items)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`vaelab train --model mog-vae --plugin tests/plugins/mixture_prior_vae.py`: a tiny run with its figures."""
    out = tmp_path_factory.mktemp("plugin") / "mog"
    assert main(["train", *TINY_TRAIN, "--model", "mog-vae", "--plugin", str(MOG), "--out", str(out)]) == 0
    return out


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_the_docs_show_the_plugin_files_verbatim():
    blocks = dict(re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```", DOCS.read_text(), flags=re.S))
    assert sorted(blocks) == ["tests/plugins/mixture_prior_vae.py", "tests/plugins/renyi_objective.py"]
    for name, code in blocks.items():
        assert code == (HERE.parent / name).read_text(), f"docs/extending.md's copy of {name} differs"


def test_the_python_api_trains_evaluates_and_loads_a_plugin_model(tmp_path):
    module = vaelab.load_plugin(str(MOG))
    assert vaelab.load_plugin(str(MOG)) is module  # loading again is a no-op, not a second registration
    cfg = vaelab.model_config("mog-vae", small_config(**{"train.epochs": 1}))
    assert cfg.objective.kl == "mc" and cfg.model.name == "mog-vae"  # the registration's defaults apply
    result = vaelab.train(cfg, out=tmp_path / "api")
    caps = vaelab.capabilities(result.model)
    assert caps.importance and caps.one_latent_layer and caps.latent_dim == 2 and caps.latent_figures
    assert isinstance(result.model.prior(), MixtureSameFamily)
    assert all(math.isfinite(v) for k, v in result.history[-1].items() if k.endswith("_elbo"))
    ck = read_checkpoint(tmp_path / "api" / "checkpoints" / "last.pt")
    assert ck["plugins"] == [str(MOG)]  # the run remembers where its model came from
    loaded = vaelab.load(tmp_path / "api", which="last", plugins=[str(MOG)])
    assert type(loaded) is module.MixturePriorVAE
    for (name, a), b in zip(result.model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.cpu(), b), name
    res = vaelab.evaluate(tmp_path / "api", importance=10, limit=20, which="last")
    assert res["elbo"]["estimate"] <= res["importance"]["log_px"] < 0


def test_the_command_line_trains_it_and_writes_its_figures(run):
    for name in ("samples", "reconstructions", "manifold", "interpolations", "latents", "curves"):
        assert min(_png(run / "figures" / f"{name}.png")) > 50, name
    assert json.loads((run / "config.json").read_text())["model"]["name"] == "mog-vae"
    assert read_checkpoint(run / "checkpoints" / "last.pt")["plugins"] == [str(MOG)]


def test_eval_of_a_plugin_run_bounds_log_px_below_by_the_elbo(run):
    code = main(["eval", str(run), "--plugin", str(MOG), "--importance", "20", "--limit", "50", "--quiet"])
    assert code == 0
    res = json.loads((run / "eval.json").read_text())
    elbo, log_px = res["elbo"]["estimate"], res["importance"]["log_px"]
    assert res["model"] == "mog-vae" and res["num_images"] == 50
    assert math.isfinite(elbo) and math.isfinite(log_px)
    assert elbo <= log_px < 0  # the mean log-weight never exceeds the log mean weight of the same draws


def test_report_and_figure_commands_of_a_plugin_run(run, tmp_path, capsys):
    assert main(["report", str(run), "--plugin", str(MOG)]) == 0
    html = (run / "report.html").read_text()
    assert "mog-vae" in html and "<img" in html
    out = tmp_path / "manifold.png"
    assert main(["manifold", str(run), "--plugin", str(MOG), "-n", "5", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and min(_png(out)) > 50


def test_the_explorer_encodes_and_decodes_a_plugin_run(run):
    client = TestClient(create_app(run))
    (listed,) = client.get("/api/runs").json()["runs"]
    assert listed["name"] == run.name and listed["model"] == "mog-vae"
    assert listed["capabilities"]["decode"] is True and listed["capabilities"]["encode"] is True
    z = [0.5, -0.25]
    r = client.post("/api/decode", json={"run": run.name, "z": z})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = (
        torch.from_numpy(np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.float32)).flatten() / 255
    )
    model = vaelab.load(run)
    with torch.no_grad():
        want = model.decode(torch.tensor([z])).mean.flatten()
    assert torch.allclose(picture, want, atol=1 / 255)


def test_a_run_opened_without_its_plugin_names_the_flag_and_imports_nothing(
    run, monkeypatch, capsys, one_line_error
):
    monkeypatch.delitem(MODELS, "mog-vae")
    monkeypatch.setattr(plugins, "_LOADED", {})
    line = one_line_error(capsys, main(["eval", str(run), "--quiet"]), "model 'mog-vae' comes from plugin")
    assert line.startswith("vaelab eval: error: ") and f"pass --plugin {MOG}" in line
    with pytest.raises(plugins.PluginError, match=f"pass --plugin {re.escape(str(MOG))}"):
        vaelab.load(run)
    assert "mog-vae" not in MODELS and not plugins._LOADED  # nothing was imported on the run's word


def test_help_lists_a_plugin_model(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--plugin", str(MOG), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "\n  mog-vae " in out and "VAE with a learned mixture-of-Gaussians prior" in out


def test_every_subcommand_takes_plugin_and_a_missing_one_is_one_line(tmp_path, capsys, one_line_error):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = tmp_path / "nowhere.py"
    for name, parser in sub.choices.items():
        (action,) = [a for a in parser._actions if "--plugin" in a.option_strings]
        assert action.default == [] and action.nargs is None, name  # repeatable: action="append"
        line = one_line_error(
            capsys, main([name, "--plugin", str(missing)]), f"plugin {missing}: no such file"
        )
        assert line.startswith(f"vaelab {name}: error: "), line
    one_line_error(capsys, main(["sample", "x", "--plugin", str(tmp_path)]), "a folder, not a Python file")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("import torch\n\nraise RuntimeError('boom')\n", "does not import: RuntimeError: boom (line 3)"),
        ("def broken(:\n", "does not import: SyntaxError: "),
        ("import vaelab\nvaelab.register_model('vae', vaelab.VAE)\n", "model 'vae' is already registered"),
    ],
)
def test_a_plugin_that_fails_is_one_line_naming_it(text, needle, tmp_path, capsys, one_line_error):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text(text)
    out = tmp_path / "run"
    line = one_line_error(
        capsys, main(["train", *TINY_TRAIN, "--plugin", str(bad), "--out", str(out)]), needle
    )
    assert line.startswith(f"vaelab train: error: plugin {bad}")
    assert not out.exists()


def test_a_module_that_is_not_there_is_one_line(capsys, one_line_error):
    line = one_line_error(
        capsys, main(["eval", "run", "--plugin", "no_such_vaelab_plugin"]), "no module named"
    )
    assert line == (
        "vaelab eval: error: plugin no_such_vaelab_plugin: no module named 'no_such_vaelab_plugin' "
        "(give a module on sys.path or a .py file)"
    )


def test_what_a_failed_plugin_registered_is_taken_back(tmp_path):
    half = tmp_path / "half_done.py"
    half.write_text(
        "import vaelab\nvaelab.register_model('half-done', vaelab.VAE)\nraise ValueError('late')\n"
    )
    with pytest.raises(plugins.PluginError, match=r"does not import: ValueError: late \(line 3\)"):
        vaelab.load_plugin(str(half))
    assert "half-done" not in MODELS
    half.write_text("import vaelab\nvaelab.register_model('half-done', vaelab.VAE)\n")
    vaelab.load_plugin(str(half))  # the failed attempt left nothing behind that refuses the fixed file
    assert MODELS["half-done"].build is vaelab.VAE and SOURCES["half-done"] == str(half.resolve())


def test_register_model_builds_the_spec_and_refuses_a_taken_name():
    spec = register_model("spec-form", ModelSpec(vaelab.VAE, "iwae", "given whole"))
    assert MODELS["spec-form"] is spec  # the original register_model(name, spec) form
    made = register_model("fields-form", vaelab.VAE, "iwae", "a description", objectives=("elbo",))
    assert made == ModelSpec(vaelab.VAE, "iwae", "a description", objectives=("elbo",))
    assert register_model("doc-form", vaelab.VAE).description == vaelab.VAE.__doc__.strip().splitlines()[0]
    before = MODELS["vae"]
    with pytest.raises(
        ConfigError, match="^model 'vae' is already registered; pass replace=True to replace it$"
    ):
        vaelab.register_model("vae", vaelab.VAE)
    assert MODELS["vae"] is before
    with pytest.raises(ConfigError, match="unknown config key 'objective.kll'"):
        register_model("typo", vaelab.VAE, defaults={"objective.kll": "mc"})
    assert "typo" not in MODELS
    with pytest.raises(ConfigError, match="give a ModelSpec or build with its fields, not both"):
        register_model("both", spec, description="x")
    with pytest.raises(ConfigError, match="unknown model 'nope'; choose one of: vae, autoencoder, "):
        build_model(ModelConfig(name="nope"), (1, 8, 8))


def test_a_plugin_objective_lies_between_the_elbo_and_the_iwae_bound(tmp_path):
    vaelab.load_plugin(str(RENYI))
    model = build_model(ModelConfig(hidden=(16,), latent_dim=3), (1, 8, 8))
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(1))
    step = OBJECTIVES["renyi"](
        model, x, ObjectiveConfig(num_samples=8), 1.0, torch.Generator().manual_seed(2)
    )
    log_w = model.log_importance_weights(x, 8, torch.Generator().manual_seed(2))
    renyi, elbo = step.stats["renyi"], step.stats["elbo"]
    assert torch.allclose(elbo, log_w.mean(0))
    assert (elbo <= renyi + 1e-5).all() and (renyi <= iwae_bound(log_w) + 1e-5).all()
    assert torch.allclose(step.loss, -renyi.mean())


def test_a_plugin_objective_trains_from_the_command_line(tmp_path):
    out = tmp_path / "renyi"
    argv = [
        "train",
        *TINY_TRAIN,
        "--plugin",
        str(RENYI),
        "--model",
        "renyi-vae",
        "--no-figures",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "renyi-vae" and config["objective"]["num_samples"] == 5
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["train_renyi"]) and record["train_elbo"] <= record["train_renyi"]
