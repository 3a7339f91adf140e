"""Checks of a run's config against its model's spec, before any data is read: the objective it accepts, its
model.extra keys, its posterior (a flow needs a model that takes one, a Monte Carlo KL, no DReG), and the
model's own check (`ModelSpec.check`)."""

from __future__ import annotations

from vaelab.config import Config
from vaelab.distributions.flows import GAUSSIAN as GAUSSIAN_POSTERIOR
from vaelab.distributions.flows import parse_posterior
from vaelab.errors import ConfigError
from vaelab.models.registry import MODELS, ModelSpec, get_spec, objective_name, semi_supervised_models


def check_model_config(cfg: Config) -> None:
    """The model exists, accepts the objective, takes its model.extra keys (and model.features, data.labelled if
    set), and its own check passes (ConfigError otherwise), before any data is read.

    Args:
        cfg: the run's config.
    """
    spec = get_spec(cfg.model.name)
    name = objective_name(cfg)
    allowed = (spec.objective, *spec.objectives)
    if name not in allowed:
        raise ConfigError(
            f"model '{cfg.model.name}' trains with objective {' or '.join(allowed)}, not '{name}'"
        )
    unknown = sorted(set(cfg.model.extra) - set(spec.extra_keys))
    if unknown:
        takes = ", ".join(spec.extra_keys) or "none"
        raise ConfigError(
            f"model.extra has unknown key(s) {', '.join(unknown)} for {cfg.model.name}; it takes: {takes}"
        )
    if cfg.model.features and not spec.features:
        takes = ", ".join(n for n, s in MODELS.items() if s.features)
        raise ConfigError(
            f"model '{cfg.model.name}' learns on the data itself: model.features ({cfg.model.features}) is "
            f"M1+M2's, for model {takes}"
        )
    if cfg.data.labelled > 0 and not spec.needs_labels:
        raise ConfigError(
            f"model '{cfg.model.name}' does not read labels: data.labelled (--labelled) is for the "
            f"semi-supervised models {semi_supervised_models()}"
        )
    check_posterior(cfg, spec)
    if spec.check is not None:
        spec.check(cfg)


def check_posterior(cfg: Config, spec: ModelSpec) -> None:
    """model.posterior parses, and a flow goes with a model that takes one, a Monte Carlo KL and no DReG
    (ConfigError otherwise).

    Args:
        cfg: the run's config.
        spec: its model's spec.
    """
    post = cfg.model.posterior
    if not parse_posterior(post).flow:
        return
    if not spec.flows:
        takes = ", ".join(n for n, s in MODELS.items() if s.flows)
        raise ConfigError(
            f"model '{cfg.model.name}' has a Gaussian q(z|x) only: model.posterior {post} is for {takes}"
        )
    if cfg.objective.kl == "analytic" and objective_name(cfg) != "iwae":
        raise ConfigError(
            f"model.posterior {post} is a flow: KL(q || p) has no closed form; use objective.kl=mc (--kl mc)"
        )
    if cfg.objective.dreg:
        raise ConfigError(
            f"objective.dreg needs a diagonal Gaussian q(z|x) (log q at stopped parameters); model.posterior "
            f"{post} is a flow"
        )


def posterior_defaults(cfg: Config, asked: set[str]) -> Config:
    """objective.kl=mc with a flow posterior unless objective.kl was asked for: a flow's KL(q || p) has no
    closed form (an explicit objective.kl=analytic is refused by `check_posterior`).

    Args:
        cfg: the run's config.
        asked: the dotted keys set by flags or a config file.
    """
    if cfg.model.posterior != GAUSSIAN_POSTERIOR and "objective.kl" not in asked:
        return cfg.replace(**{"objective.kl": "mc"})
    return cfg
