"""Honest numbers: the ELBO, importance-sampled, exact and AIS log p(x), BDMC bounds, the PSIS diagnostic of
the importance weights, the ELBO's decomposition, classification error and sample quality.

`evaluate(run_or_model, ...)` returns the dict that `vaelab eval` writes to `eval.json`: every estimate with
its method, settings, seed, standard error and time. Its settings are one `EvalSettings`; its estimators are
a table (`ESTIMATORS`, `register_estimator`), each returning a typed `Estimate`.
"""

from vaelab.evaluate.classification import classification_error
from vaelab.evaluate.decomposition import decompose
from vaelab.evaluate.estimators import (
    ESTIMATORS,
    Context,
    Estimate,
    Estimator,
    register_estimator,
)
from vaelab.evaluate.loglik import ImportanceResult, importance_sampling
from vaelab.evaluate.run import Evaluation, evaluate, run_evaluation
from vaelab.evaluate.settings import EvalSettings

__all__ = [
    "ESTIMATORS",
    "Context",
    "Estimate",
    "Estimator",
    "EvalSettings",
    "Evaluation",
    "ImportanceResult",
    "classification_error",
    "decompose",
    "evaluate",
    "importance_sampling",
    "register_estimator",
    "run_evaluation",
]
