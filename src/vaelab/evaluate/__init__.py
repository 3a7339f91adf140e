"""Honest numbers: the ELBO, importance-sampled, exact and AIS log p(x), BDMC bounds, the PSIS diagnostic of
the importance weights, the ELBO's decomposition, classification error and sample quality.

`evaluate(run_or_model, ...)` returns the dict that `vaelab eval` writes to `eval.json`: every estimate with
its method, settings, seed, standard error and time. Its settings are one `EvalSettings`; its estimators are
a table (`ESTIMATORS`, `register_estimator`), each returning a typed `Estimate`. The names load on first use
(PEP 562), so `vaelab eval --help`, built from `EvalSettings`, imports no torch.
"""

from vaelab.exports import lazy_exports

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
__getattr__ = lazy_exports(
    __name__,
    {
        "classification_error": "vaelab.evaluate.classification",
        "decompose": "vaelab.evaluate.decomposition",
        # the whole table: run.py imports every estimator module, each registering its own
        "ESTIMATORS": "vaelab.evaluate.run",
        **dict.fromkeys(
            ["Context", "Estimate", "Estimator", "register_estimator"], "vaelab.evaluate.estimators"
        ),
        **dict.fromkeys(["ImportanceResult", "importance_sampling"], "vaelab.evaluate.loglik"),
        **dict.fromkeys(["Evaluation", "evaluate", "run_evaluation"], "vaelab.evaluate.run"),
        "EvalSettings": "vaelab.evaluate.settings",
    },
)
