"""Refuse a config before any data is read: each table checks its own names, the config its own numbers.

`validate_config` asks every table a config picks from (data sets, binarizations, models, bodies,
likelihoods, objectives, optimisers, schedules, ...) whether it holds the name, then `ranges.check_numbers`,
the objective's own checks and the model's (`models.config_checks.check_model_config`). `check_world` and
`check_compatible` refuse what only shows once the process group or the data is known.
"""

from __future__ import annotations

from vaelab.config import Config
from vaelab.data import VALID_SPLITS, DataSplits
from vaelab.data.binarize import MODES
from vaelab.data.sources import FOLDER_PREFIX, SOURCES
from vaelab.distributions.likelihoods import GAUSSIAN_MEANS, GAUSSIAN_VARIANCES, LIKELIHOODS
from vaelab.errors import ConfigError, DataError
from vaelab.models.config_checks import check_model_config
from vaelab.models.registry import MODELS, get_spec, objective_name
from vaelab.nets import BODIES
from vaelab.nets.mlp import ACTIVATIONS, GATED
from vaelab.objectives import OBJECTIVES
from vaelab.objectives.elbo import KL_ESTIMATORS, check_schedule
from vaelab.objectives.noise import NOISES, check_noise
from vaelab.ranges import check_numbers
from vaelab.train.distributed import World
from vaelab.train.optim import OPTIMIZERS, SCHEDULES
from vaelab.train.precision import PRECISIONS
from vaelab.train.restarts import DIVERGE_ACTIONS


def validate_config(cfg: Config) -> None:
    """Check every name in the config against its table, and every number against its range, before any data
    is read (a ConfigError naming the setting and the choices).

    Args:
        cfg: the config to check.
    """
    d, m, o, t = cfg.data, cfg.model, cfg.objective, cfg.train
    if not d.name.startswith(FOLDER_PREFIX):  # folder:PATH names any image folder
        SOURCES.check(d.name)
    MODES.check(d.binarize)
    VALID_SPLITS.check(d.valid_split)
    MODELS.check(m.name)
    BODIES.check(m.body)
    if m.activation != GATED:  # gated linear units: a layer of the MLP body, not an activation module
        ACTIVATIONS.check(m.activation)
    LIKELIHOODS.check(m.likelihood)
    GAUSSIAN_VARIANCES.check(m.gaussian_variance)
    GAUSSIAN_MEANS.check(m.gaussian_mean)
    KL_ESTIMATORS.check(o.kl)
    if o.name != "default" and o.name not in OBJECTIVES:  # "default": the model's own objective
        raise ConfigError(
            f"unknown objective '{o.name}'; choose one of: {', '.join(['default', *OBJECTIVES])}"
        )
    NOISES.check(o.noise)
    OPTIMIZERS.check(t.optimizer)
    SCHEDULES.check(t.lr_schedule)
    DIVERGE_ACTIONS.check(t.on_diverge)
    PRECISIONS.check(t.precision)
    check_numbers(cfg)
    check_schedule(o)
    if o.noise != "none":
        check_noise(o.noise, o.noise_level)
    if o.dreg and objective_name(cfg) != "iwae":
        raise ConfigError(
            "objective.dreg changes the gradient of the IWAE bound: use it with objective.name=iwae"
        )
    if o.dreg and o.free_bits > 0:
        raise ConfigError(
            "objective.dreg reweights every gradient through z by the importance weights, the free-bits "
            "penalty's too: use objective.dreg or objective.free_bits, not both"
        )
    check_model_config(cfg)


def check_world(cfg: Config, w: World, n_train: int | None = None) -> None:
    """A distributed run splits every global batch evenly over its ranks, and each rank needs data.

    Args:
        cfg: the config to train.
        w: the process group (one process: nothing to check).
        n_train: the number of training images, once the data is loaded.
    """
    if not w.distributed:
        return
    b = cfg.train.batch_size
    if cfg.train.eval_batch_size < w.size:
        raise ConfigError(
            f"{w.size} processes but train.eval_batch_size {cfg.train.eval_batch_size}: every rank needs a "
            "share of each evaluation batch"
        )
    if b % w.size != 0:
        raise ConfigError(
            f"world size {w.size} does not divide train.batch_size {b}; use a batch size that is a multiple "
            f"of {w.size} (each rank takes batch_size / world_size of every global batch)"
        )
    if n_train is not None and n_train < w.size:
        raise ConfigError(
            f"{w.size} processes but {cfg.data.name} has only {n_train} training image(s): "
            f"use at most {n_train} processes"
        )


def check_compatible(cfg: Config, data: DataSplits) -> None:
    """Refuse data the model cannot honestly score (e.g. a Bernoulli likelihood on grey levels).

    Args:
        cfg: the config to train.
        data: the loaded splits.
    """
    lik = cfg.model.likelihood
    if lik == "bernoulli" and cfg.data.binarize == "none":
        raise ConfigError(
            "likelihood 'bernoulli' needs binary pixels: use --binarize dynamic or static, "
            "or --likelihood continuous-bernoulli / gaussian / discretized-logistic for grey levels"
        )
    if get_spec(cfg.model.name).needs_labels and data.train.labels is None:
        raise DataError(f"model '{cfg.model.name}' needs labels, and {cfg.data.name} has none")
