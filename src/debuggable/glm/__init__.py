"""Elastic-net GLM regularisation paths at deep-learning scale.

``debuggable.glm`` depends on torch only and knows nothing of deep networks:

* :func:`elastic_net_path`: the path for the multinomial, binomial or gaussian
  datafit with an elastic-net or group penalty, in memory (CPU or GPU) or streamed
  from a feature-store reader, each lambda certified by a KKT residual and a
  duality gap;
* :class:`GLMPath`: the result (original feature scale), with ``save`` / ``load``;
* :func:`select_by_accuracy`, :func:`select_by_features`, :func:`select_by_lambda`:
  pick one point of a path, recording the rule;
* :class:`ElasticNetPathClassifier`, :class:`ElasticNetPathRegressor`: scikit-learn
  estimators around all of it (they pass ``check_estimator``); scikit-learn is
  imported only when one of them is first used.

See ``docs/glm.md``.
"""

from typing import Any

from debuggable.glm._validation import BlockReader
from debuggable.glm.path import ArrayReader, elastic_net_path, lambda_max
from debuggable.glm.result import GLMPath
from debuggable.glm.select import Selection, select, select_by_accuracy, select_by_features, select_by_lambda


def __getattr__(name: str) -> Any:
    if name in ("ElasticNetPathClassifier", "ElasticNetPathRegressor"):
        from debuggable.glm import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArrayReader",
    "BlockReader",
    "ElasticNetPathClassifier",
    "ElasticNetPathRegressor",
    "GLMPath",
    "Selection",
    "elastic_net_path",
    "lambda_max",
    "select",
    "select_by_accuracy",
    "select_by_features",
    "select_by_lambda",
]
