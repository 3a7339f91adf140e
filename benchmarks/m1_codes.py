"""How well class-conditional Gaussians separate an M1's codes (issue #19): the ceiling M1+M2 works under.

Encodes the training and validation images (grey levels) with a trained M1 run, keeps its active units
(`vaelab.models.stacked.active_units`) and scores on the validation split:
- with every training label: K full-covariance Gaussians a class (K = 1 by maximum likelihood, K > 1 by
  scikit-learn's GaussianMixture), classified by the class of highest density;
- with --labelled labels (draw --label-seed, as `data.labelled`): semi-supervised EM of one full-covariance
  Gaussian a class, started at the labelled means and the pooled covariance.
The test split is never read. `python benchmarks/m1_codes.py RUN --data-dir ../shared/data`
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal


def log_normal(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) for rows x [N, D] (scipy's)."""
    return np.atleast_1d(multivariate_normal(mean, cov).logpdf(x))


def weighted_fit(x: np.ndarray, w: np.ndarray, reg: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and (maximum-likelihood) covariance + reg I of rows x."""
    cov = np.atleast_2d(np.cov(x.T, aweights=w, bias=True))
    return np.average(x, axis=0, weights=w), cov + reg * np.eye(x.shape[1])


def error(comps: list[tuple[int, float, np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray) -> float:
    """Error of argmax_y sum over y's components of pi N(x; mean, cov); comps are (class, log pi, mean, cov)."""
    ll = np.stack([lp + log_normal(x, m, s) for _, lp, m, s in comps], 1)
    cls = np.array([c for c, *_ in comps])
    per = np.stack([logsumexp(ll[:, cls == k], 1) for k in range(int(cls.max()) + 1)], 1)
    return float((per.argmax(1) != y).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a trained M1 run folder (vaelab train --model vae)")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--labelled", type=int, default=100)
    p.add_argument("--label-seed", type=int, default=0)
    p.add_argument("--components", default="1,2,3,5", help="K Gaussians a class, with every label")
    p.add_argument("--em-iterations", type=int, default=10)
    p.add_argument("--active-sd", type=float, default=0.1, help="as model.extra.active_sd (m2's default)")
    a = p.parse_args(argv)
    from vaelab.errors import VaelabError

    try:
        return probe(a)
    except VaelabError as e:
        print(f"m1_codes: error: {e}", file=sys.stderr)
        return 1


def probe(a: argparse.Namespace) -> int:
    """Print the validation errors the module docstring names for the run a.run."""
    from sklearn.mixture import GaussianMixture

    from vaelab.data import load_data
    from vaelab.models.stacked import active_units
    from vaelab.train.checkpoint import config_of, model_from_checkpoint, read_checkpoint

    torch.set_num_threads(1)
    ck = read_checkpoint(f"{a.run}/checkpoints/best.pt")
    m1, cfg = model_from_checkpoint(ck).eval(), config_of(ck)
    active = active_units(m1, a.active_sd)

    def codes(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            parts = [
                m1.encode(x.float() / 255 if x.dtype == torch.uint8 else x).mean[:, active].double()
                for x in images.split(2000)
            ]
        return torch.cat(parts).numpy()

    data = dataclasses.replace(cfg.data, data_dir=a.data_dir, labelled=0)
    full = load_data(data)
    train, y_train = codes(full.train.images), full.train.labels.numpy()
    valid, y_valid = codes(full.valid.images), full.valid.labels.numpy()
    print(f"{a.run}: {int(active.sum())} active units; {len(train)} training, {len(valid)} validation codes")
    for k in (int(n) for n in a.components.split(",")):
        comps = []
        for c in range(10):
            xc = train[y_train == c]
            if k == 1:
                comps.append((c, np.log(0.1), *weighted_fit(xc, np.ones(len(xc)))))
                continue
            g = GaussianMixture(k, covariance_type="full", random_state=0, reg_covar=1e-3).fit(xc)
            comps += [(c, np.log(0.1 * w), m, s) for w, m, s in zip(g.weights_, g.means_, g.covariances_)]
        print(
            f"every label, {k} full Gaussian(s) a class: validation error {100 * error(comps, valid, y_valid):.2f}%"
        )
    semi = load_data(dataclasses.replace(data, labelled=a.labelled, label_seed=a.label_seed))
    labels = semi.train.labels.numpy()
    _, first = np.unique(semi.train.images.flatten(1).numpy(), axis=0, return_index=True)  # drop the repeats
    x, labels = codes(semi.train.images[np.sort(first)]), labels[np.sort(first)]
    known = labels >= 0
    pooled = weighted_fit(x, np.ones(len(x)))[1]
    comps = [(c, np.log(0.1), x[known & (labels == c)].mean(0), pooled) for c in range(10)]
    for it in range(1, a.em_iterations + 1):
        ll = np.stack([lp + log_normal(x, m, s) for _, lp, m, s in comps], 1)
        ll[known] = np.where(np.arange(10)[None] == labels[known][:, None], ll[known], -np.inf)
        r = np.exp(ll - logsumexp(ll, 1, keepdims=True))
        comps = [(c, np.log(r[:, c].mean()), *weighted_fit(x, r[:, c])) for c in range(10)]
        print(
            f"{a.labelled} labels, EM iteration {it}: validation error {100 * error(comps, valid, y_valid):.2f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
