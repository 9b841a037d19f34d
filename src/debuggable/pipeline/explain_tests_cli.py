"""The ``explain-tests`` sub-command's options and the model kinds the stage tests:
what the CLI needs before it runs anything, without importing torch or the attribution
methods (stage ``explain_tests`` itself is :mod:`debuggable.pipeline.explain_tests_stage`)."""

from __future__ import annotations

from typing import Any

from debuggable.errors import DebuggableError
from debuggable.run import ExplainTestsConfig, RunConfig

#: inspected model kinds the stage can test (image models it can attribute and retrain)
TESTABLE_KINDS = ("small_cnn", "module", "exported")


#: hyphenated spellings of stage sub-commands: ``debuggable explain-tests RUN``
STAGE_ALIASES = {"explain-tests": "explain_tests"}


def add_explain_tests_options(parser) -> None:
    """The ``explain-tests`` sub-command's options (each overrides ``[explain_tests]``)."""
    g = parser.add_argument_group("explain-tests settings (saved to run.toml)")
    g.add_argument("--methods", default=None,
                   help="comma-separated attribution methods, e.g. saliency,integrated_gradients,guided_backprop "
                        "(default: the config's; 'all' for every registered method)")
    g.add_argument("--bugs", default=None,
                   help="comma-separated bugs among spurious_patch,mislabels,model_randomization,ood")
    g.add_argument("--examples", type=int, default=None, help="images per test (spurious, mislabels, OOD)")
    g.add_argument("--randomization-examples", type=int, default=None, help="images for the layer-randomisation test")
    g.add_argument("--n-boot", type=int, default=None, help="bootstrap replicates for the confidence intervals")


def apply_explain_tests_options(config: RunConfig, args) -> bool:
    """Put the sub-command's options into ``config.explain_tests`` (enabling it).

    Returns:
        True when anything was given (the caller saves ``run.toml`` after validation).

    Raises:
        DebuggableError: naming the first invalid option.
    """
    from pydantic import ValidationError

    updates: dict[str, Any] = {}
    if getattr(args, "methods", None):
        from debuggable.explain_tests import list_methods

        updates["methods"] = list_methods() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    if getattr(args, "bugs", None):
        updates["bugs"] = [b.strip() for b in args.bugs.split(",") if b.strip()]
    for opt, key in (("examples", "examples"), ("randomization_examples", "randomization_examples"), ("n_boot", "n_boot")):
        if getattr(args, opt, None) is not None:
            updates[key] = getattr(args, opt)
    if not updates:
        return False
    current = config.explain_tests.model_dump() if config.explain_tests is not None else {}
    try:
        config.explain_tests = ExplainTestsConfig.model_validate({**current, **updates, "enabled": True})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--" + str(err["loc"][0]).replace("_", "-")
        raise DebuggableError(f"{where}: {err.get('input')!r} is invalid: {err['msg']}.") from None
    return True
