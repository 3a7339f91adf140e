"""`vaelab.train(cfg, data=...)`: tensors, a (train, test) pair, a Dataset of x or (x, y), or a DataFrame,
saved in the run as data.npz (or data.csv) that eval and figures read back; a Dataset whose items differ in
shape is one line naming the item; without a run folder nothing is written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes
from torch.utils.data import Dataset, TensorDataset

import vaelab
from vaelab.commands.viz import write_figures
from vaelab.config import Config
from vaelab.data import SPLIT_SEED_OFFSET
from vaelab.data.batches import prepare
from vaelab.data.python import python_splits
from vaelab.data.sources import ImageSet, seeded_split
from vaelab.errors import DataError

torch.set_num_threads(1)


def _cfg(**more) -> Config:
    base = {
        "model.hidden": (16,),
        "model.latent_dim": 2,
        "train.epochs": 1,
        "train.progress": False,
        "train.threads": 1,
        "train.batch_size": 32,
    }
    return Config().replace(**{**base, **more})


def _images(n: int = 80, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 8, 8), dtype=np.uint8))


def test_a_tensor_is_saved_in_the_run_and_evaluated_from_it(tmp_path, capsys):
    """The run's config names RUN/data.npz; its test split is the seeded 10% of the tensor; eval and every
    figure read it back with no Python object, and eval scores exactly those images (same seeds, same values)."""
    x = _images()
    run = tmp_path / "run"
    result = vaelab.train(_cfg(), out=run, data=x)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["name"] == f"npz:{run / 'data.npz'}"
    saved = np.load(run / "data.npz")
    ref = seeded_split(x[:, None], None, 8, "ref")
    assert np.array_equal(saved["x_test"], ref.test.images.numpy())
    assert sorted(saved) == ["x_test", "x_train"]
    ev = vaelab.evaluate(str(run), importance=5)
    assert ev["data"] == cfg["data"]["name"]
    assert ev["split"] == "test" and ev["num_images"] == len(saved["x_test"]) == 8
    # the saved x_test, binarized as the trainer's test split, given to eval directly: the same values
    test = ImageSet(torch.from_numpy(saved["x_test"]), None)
    seed = cfg["data"]["binarize_seed"] + SPLIT_SEED_OFFSET["test"]
    direct = vaelab.evaluate(
        str(run / "checkpoints" / "best.pt"),
        prepare(test, cfg["data"]["binarize"], "cpu", seed, train=False),
        importance=5,
    )
    assert ev["importance"]["per_datum"] == direct["importance"]["per_datum"]
    assert ev["elbo"]["estimate"] == direct["elbo"]["estimate"]
    # the same 8 test images, other draws of z
    assert ev["elbo"]["estimate"] == pytest.approx(result.history[-1]["test_elbo"], abs=3.0)
    paths = write_figures(run)
    assert {p.name for p in paths} >= {"samples.png", "reconstructions.png", "curves.png"}


def test_a_train_test_pair_keeps_its_test_split(tmp_path):
    tr, te = _images(70), _images(9, 1)
    run = tmp_path / "run"
    vaelab.train(_cfg(), out=run, data=(tr, te))
    saved = np.load(run / "data.npz")
    assert np.array_equal(saved["x_test"][:, 0], te.numpy()) and np.array_equal(
        saved["x_train"][:, 0], tr.numpy()
    )


class Faces(Dataset):
    """A map-style dataset of (float image in [0, 1], label) pairs; item `odd` has another shape."""

    def __init__(self, n: int, odd: int | None = None) -> None:
        self.x = torch.rand(n, 1, 6, 5, generator=torch.Generator().manual_seed(0))
        self.n, self.odd = n, odd

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        x = self.x[i] if i != self.odd else torch.rand(1, 6, 6)
        return x, i % 3


def test_a_dataset_of_pairs_gives_float_images_and_labels(tmp_path):
    run = tmp_path / "run"
    vaelab.train(_cfg(**{"data.binarize": "none", "model.likelihood": "gaussian"}), out=run, data=Faces(40))
    saved = np.load(run / "data.npz")
    assert saved["x_train"].dtype == np.float32 and saved["x_train"].shape[1:] == (1, 6, 5)
    all_x = np.concatenate([saved["x_train"], saved["x_test"]])
    assert sorted(map(float, all_x[:, 0, 0, 0])) == sorted(
        map(float, Faces(40).x[:, 0, 0, 0])
    )  # exact floats
    assert sorted(np.concatenate([saved["y_train"], saved["y_test"]]).tolist()) == sorted(
        i % 3 for i in range(40)
    )


def test_tensor_dataset_labels_and_the_x_y_mixup(tmp_path):
    x, y = _images(30), torch.arange(30) % 2
    s = python_splits(TensorDataset(x, y))
    assert sorted(torch.cat([s.train.labels, s.test.labels]).tolist()) == sorted(y.tolist())
    with pytest.raises(DataError, match=r"the test part is one number per datum \(labels\?\).*TensorDataset"):
        python_splits((x, y))


def test_a_dataset_of_different_shapes_is_one_line_naming_the_item(tmp_path):
    with pytest.raises(DataError) as e:
        vaelab.train(_cfg(), out=tmp_path / "run", data=Faces(20, odd=13))
    msg = str(e.value)
    assert msg == (
        "data=: item 13 has shape (1, 6, 6), item 0 has (1, 6, 5): every item must have the same shape and type"
    )
    assert not (tmp_path / "run" / "data.npz").exists()


def test_without_a_run_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = vaelab.train(_cfg(), data=_images(40))
    assert result.config.data.name == "python" and list(tmp_path.iterdir()) == []
    assert len(result.history) == 1


def test_a_dataframe_is_a_table_run(tmp_path):
    """A DataFrame trains as csv:RUN/data.csv with the mixed likelihood; its encoding is in the config."""
    frame = load_diabetes(scaled=False, as_frame=True).frame
    run = tmp_path / "run"
    cfg = _cfg(**{"data.binarize": "none", "model.likelihood": "mixed"})
    vaelab.train(cfg, out=run, data=frame)
    saved = json.loads((run / "config.json").read_text())["data"]
    assert saved["name"] == f"csv:{run / 'data.csv'}"
    assert [c["kind"] for c in saved["table"]["columns"]][:2] == ["continuous", "binary"]
    assert pd.read_csv(run / "data.csv").shape == frame.shape


@pytest.mark.parametrize("kind", ["tensor", "frame"])
def test_a_start_on_python_data_that_fails_leaves_no_data_file(kind, tmp_path, monkeypatch):
    """Interrupted at its first checkpoint, a start removes the data.npz (data.csv: a table) it wrote with the
    rest of the run's files; the folder's other files stay."""
    from vaelab.train import loop

    def interrupted(path, body):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", interrupted)
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("kept")
    if kind == "tensor":
        cfg, data = _cfg(), _images()
    else:
        cfg = _cfg(**{"data.binarize": "none", "model.likelihood": "mixed"})
        data = load_diabetes(scaled=False, as_frame=True).frame
    with pytest.raises(KeyboardInterrupt):
        vaelab.train(cfg, out=run, data=data)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("kind", ["tensor", "frame"])
def test_overwrite_with_new_data_keeps_the_old_run_whole_until_it_is_cleared(kind, tmp_path, monkeypatch):
    """--overwrite over a trained run, refused after the new data is read: the old run keeps its own data file
    (it was replaced, beside the old checkpoints); accepted: the new data file takes its place, named by the
    config, and nothing is left staged."""
    from vaelab.errors import DataError
    from vaelab.train import loop

    if kind == "tensor":
        cfg, old, new, file = _cfg(), _images(seed=0), _images(seed=1), "data.npz"
    else:
        cfg = _cfg(**{"data.binarize": "none", "model.likelihood": "mixed"})
        frame = load_diabetes(scaled=False, as_frame=True).frame
        old, new, file = frame, frame.assign(age=frame["age"] + 1), "data.csv"
    run = tmp_path / "run"
    vaelab.train(cfg, out=run, data=old)
    before = (run / file).read_bytes()
    checks = loop.check_compatible

    def refused(*a, **k):
        raise DataError("refused for the test")

    monkeypatch.setattr(loop, "check_compatible", refused)
    with pytest.raises(DataError, match="refused for the test"):
        vaelab.train(cfg, out=run, data=new, overwrite=True)
    assert (run / file).read_bytes() == before and (run / "checkpoints" / "last.pt").is_file()
    assert not (run / ".staged-data").exists()

    monkeypatch.setattr(loop, "check_compatible", checks)
    vaelab.train(cfg, out=run, data=new, overwrite=True)
    assert (run / file).read_bytes() != before and not (run / ".staged-data").exists()
    assert json.loads((run / "config.json").read_text())["data"]["name"].endswith(f":{run / file}")
    assert vaelab.evaluate(str(run), importance=2)["num_images"] > 0  # eval reads the adopted file
