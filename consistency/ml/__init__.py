"""Product-consistency checking (plain Python; no Django). See docs/consistency.md."""
from .checker import (
    GROUNDING_ENV_VAR,
    METRIC_NAMES,
    SAM_ENV_VAR,
    ConsistencyChecker,
    ConsistencyResult,
    ConsistencyThresholds,
    build_checker,
    check_consistency,
    checker_from_env,
)
from .locate import (
    GroundingDinoLocator,
    Located,
    OriginalPriorRefiner,
    SalientBoxSegmenter,
    SalientLocator,
    SamBoxSegmenter,
    TemplateLocator,
)

__all__ = [
    "GROUNDING_ENV_VAR", "METRIC_NAMES", "SAM_ENV_VAR", "ConsistencyChecker", "ConsistencyResult",
    "ConsistencyThresholds", "build_checker", "check_consistency", "checker_from_env", "GroundingDinoLocator",
    "Located", "OriginalPriorRefiner", "SalientBoxSegmenter", "SalientLocator", "SamBoxSegmenter",
    "TemplateLocator",
]
