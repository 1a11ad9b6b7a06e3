"""Image-referenced reward model: (original product photo, generated ad image[, category]) -> score.

Plain Python (no Django). See docs/rewardmodel.md.
"""
from .backbones import BLIP_ENV_VAR, BlipBackbone, EfficientNetBackbone, RewardBackbone, default_backbone, load_backbone
from .cache import FeatureCache, features_for_examples, text_key
from .data import (
    MIN_LABELS,
    NotEnoughLabels,
    Outcome,
    PairwiseLabel,
    SingleLabel,
    TrainingDiverged,
    annotator_weight,
    category_prompt,
    image_key,
    split_by_product,
)
from .evaluate import (
    PromotionDecision,
    ThresholdChoice,
    aesthetic_proxy,
    choose_threshold,
    cosine_score_fn,
    evaluate_examples,
    evaluate_with_baselines,
    head_score_fn,
    should_promote,
)
from .head import HeadConfig, RewardHead, load_artifact, save_artifact
from .pipeline import TrainingRun, evaluate_artifact, train_and_evaluate
from .scoring import BackboneMismatch, RewardScorer
from .train import TrainConfig, TrainResult, train_reward_head

__all__ = [n for n in dir() if not n.startswith("_")]
