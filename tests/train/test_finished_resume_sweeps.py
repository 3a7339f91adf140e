"""A resume of a finished run (nothing left to train) still sweeps the temporaries a kill left in the run
folder, e.g. a figure half-written when the process was killed after its last epoch."""

from __future__ import annotations

from vaelab.train import train

from vaelab_testing import small_config


def test_resume_of_a_finished_run_removes_stale_temporaries(tmp_path):
    run = tmp_path / "run"
    train(small_config(**{"train.epochs": 1}), out=run)
    stale = run / "figures" / ".reconstructions.png.abc123.tmp"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half a png")
    res = train(small_config(**{"train.epochs": 1}), out=run, resume=True)
    assert res.nothing_to_train and not stale.exists()
