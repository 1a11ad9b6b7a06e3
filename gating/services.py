"""Writes of the gate: decisions, gated generation runs, QA reviews and re-gating."""
from __future__ import annotations

from collections import Counter, defaultdict

from django.db import transaction
from django.utils import timezone

from annotate.models import ImageLabel, ImageTask
from core.models import Product, Project
from gating.models import GateDecision, GatingItem, GatingRun
from gating.policy import GatePolicy, decide
from generation.models import Generation

DEFAULT_BACKENDS = ["copy-paste", "paste-on-stage"]
BACKGROUND_TAGS = {"inappropriate_background", "poor_aesthetics", "wrong_scale", "missing_shadow", "bad_edges"}
PRODUCT_TAGS = {"product_changed"}
DISAGREEMENT_PRIORITY = 10.0


def policy_for(project: Project) -> GatePolicy:
    rules = project.consistency_rules or {}
    return GatePolicy(reward_threshold=project.reward_threshold,
                      require_reward_model=bool(rules.get("require_reward_model", False)),
                      require_consistency=bool(rules.get("require_consistency", True)))


@transaction.atomic
def gate_generation(generation: Generation, *, user=None) -> GateDecision:
    """Decide from the generation's stored scores; the previous decision is kept, not overwritten."""
    project = generation.product.project
    consistency = generation.consistency or {}
    verdict = decide(policy_for(project), reward_score=generation.reward_score,
                     consistency_passed=generation.consistency_passed,
                     consistency_reasons=list(consistency.get("reasons") or []))
    GateDecision.objects.filter(generation=generation, is_current=True).update(is_current=False)
    decision = GateDecision.objects.create(
        generation=generation, decision=verdict.decision, reasons=verdict.reasons,
        reward_score=generation.reward_score, reward_threshold=project.reward_threshold,
        reward_model=generation.reward_model, consistency_passed=generation.consistency_passed,
        consistency_model=generation.consistency_model, regated_by=user,
    )
    generation.gate_status = verdict.decision
    generation.save(update_fields=["gate_status", "updated_at"])
    return decision


def regate(project: Project, user, *, include_approved: bool = False) -> dict:
    """Explicit re-gating after a model or threshold change. QA-approved ads keep their decision
    unless include_approved is set; every changed decision keeps its predecessor on record."""
    from gating.selectors import approved_generations

    approved_ids = set(approved_generations(project).values_list("id", flat=True))
    counts = Counter()
    gated = Generation.objects.filter(product__project=project, gate_decisions__is_current=True).distinct()
    for generation in gated.select_related("product__project"):
        if generation.id in approved_ids and not include_approved:
            counts["kept_approved"] += 1
            continue
        before = generation.gate_status
        after = gate_generation(generation, user=user).decision
        counts["changed" if before != after else "unchanged"] += 1
    return dict(counts)


# ----------------------------------------------------------------------------- gated generation runs

def start_gating_run(project: Project, user, *, backends=None, product_ids=None, candidates_per_attempt: int = 2,
                     enqueue: bool = True) -> GatingRun:
    products = Product.objects.filter(project=project)
    if product_ids:
        products = products.filter(id__in=product_ids)
    with transaction.atomic():
        run = GatingRun.objects.create(project=project, started_by=user, backends=list(backends or DEFAULT_BACKENDS),
                                       candidates_per_attempt=candidates_per_attempt)
        GatingItem.objects.bulk_create([GatingItem(run=run, product=p) for p in products])
    if enqueue:
        from gating.tasks import run_gating_task

        result = run_gating_task.delay(run.id)
        GatingRun.objects.filter(pk=run.pk).update(celery_task_id=result.id)
    return run


def _append_log(obj, line: str) -> None:
    obj.log = (obj.log + line + "\n")[-100_000:]


def run_gating(run_id: int) -> GatingRun:
    """Process every unfinished item. Safe to call again after a crash: finished items are
    skipped, attempts already made are not repeated (generation is idempotent per seed)."""
    run = GatingRun.objects.select_related("project").get(pk=run_id)
    run.state = GatingRun.State.RUNNING
    run.save(update_fields=["state"])
    items = list(run.items.select_related("product").order_by("id"))
    try:
        for done, item in enumerate(items):
            if item.state in (GatingItem.State.QUEUED, GatingItem.State.RUNNING):
                gate_product(run, item)
            run.progress = (done + 1) / max(len(items), 1)
            run.save(update_fields=["progress"])
    except Exception as exc:
        _append_log(run, f"run failed: {exc!r}")
        run.state, run.finished_at = GatingRun.State.FAILED, timezone.now()
        run.save(update_fields=["state", "log", "finished_at"])
        raise
    run.summary = summarise_run(run)
    run.state, run.finished_at = GatingRun.State.SUCCEEDED, timezone.now()
    _append_log(run, f"finished: {run.summary['products_passed']} of {len(items)} products passed")
    run.save(update_fields=["summary", "state", "finished_at", "log"])
    return run


def gate_product(run: GatingRun, item: GatingItem) -> GatingItem:
    """generate → score → check → gate, retrying with the next backend/seed up to max_attempts."""
    from core.ml.images import ImageRejected
    from generation.ml.backends import BackendUnavailable, GenerationFailed
    from generation.services import generate_for_product

    project = run.project
    item.state = GatingItem.State.RUNNING
    item.save(update_fields=["state"])
    backends = run.backends or DEFAULT_BACKENDS
    while item.attempts < project.max_attempts:
        backend = backends[item.attempts % len(backends)]
        seed = item.attempts // len(backends)
        try:
            generations = generate_for_product(item.product, backend, seed=seed, with_parallax=False,
                                               num_candidates=run.candidates_per_attempt).generations
        except (GenerationFailed, BackendUnavailable, ImageRejected) as exc:
            _append_log(item, f"attempt {item.attempts + 1} ({backend}, seed {seed}): {exc}")
            item.attempts += 1
            item.save(update_fields=["attempts", "log"])
            continue
        passed = score_and_gate(project, generations)
        item.attempts += 1
        _append_log(item, f"attempt {item.attempts} ({backend}, seed {seed}): "
                          f"{len(passed)} of {len(generations)} candidates passed")
        if passed:
            item.state, item.passed_generation = GatingItem.State.PASSED, passed[0]
            item.save(update_fields=["state", "passed_generation", "attempts", "log"])
            return item
        item.save(update_fields=["attempts", "log"])
    item.state = GatingItem.State.NEEDS_HUMAN
    _append_log(item, f"nothing passed in {item.attempts} attempts: needs a human")
    item.save(update_fields=["state", "log"])
    return item


def score_and_gate(project: Project, generations: list[Generation]) -> list[Generation]:
    """Score with the promoted reward model (if any), check consistency, record decisions."""
    from consistency.services import check_context, check_generation
    from rewardmodel.services import score_generations

    ids = [g.id for g in generations]
    score_generations(project, ids)
    context = check_context(project)
    passed = []
    for generation in Generation.objects.filter(id__in=ids).select_related("product__project").order_by("id"):
        if generation.consistency_passed is None:
            check_generation(generation, context)
            generation.refresh_from_db()
        if gate_generation(generation).decision == "passed":
            passed.append(generation)
    return passed


def summarise_run(run: GatingRun) -> dict:
    decisions = GateDecision.objects.filter(
        is_current=True, generation__product__gating_items__run=run,
        generation__created_at__gte=run.created_at,
    ).select_related("generation__product").distinct()
    per_backend, per_category = defaultdict(Counter), defaultdict(Counter)
    reasons = Counter()
    for d in decisions:
        per_backend[d.generation.backend][d.decision] += 1
        per_category[d.generation.product.category][d.decision] += 1
        if d.decision == "rejected":
            reasons.update(_reason_kind(r) for r in d.reasons)
    states = Counter(run.items.values_list("state", flat=True))

    def rates(table):
        return {k: {"passed": v["passed"], "total": v["passed"] + v["rejected"],
                    "pass_rate": round(v["passed"] / max(v["passed"] + v["rejected"], 1), 3)} for k, v in table.items()}

    return {"products_passed": states.get("passed", 0), "products_needing_human": states.get("needs_human", 0),
            "per_backend": rates(per_backend), "per_category": rates(per_category),
            "rejection_reasons": dict(reasons.most_common())}


def _reason_kind(reason: str) -> str:
    """'reward 0.31 < 0.55' → 'reward below threshold'; consistency reasons keep their first words."""
    if reason.startswith("reward"):
        return "reward below threshold"
    return " ".join(reason.split()[:2])


# ----------------------------------------------------------------------------- QA

def review(generation: Generation, user, *, approve: bool, reason_tags=()) -> ImageLabel:
    """A QA decision is stored as a trusted image label; a rejection of an ad the gate passed is a
    disagreement and goes to the annotators' queue."""
    tags = sorted(set(reason_tags))
    if approve:
        background_ok, product_ok = True, True
    else:
        product_ok = False if PRODUCT_TAGS & set(tags) else None
        background_ok = False if (BACKGROUND_TAGS & set(tags) or product_ok is None) else None
    with transaction.atomic():
        label, _ = ImageLabel.objects.update_or_create(
            generation=generation, annotator=user,
            defaults={"source": ImageLabel.Source.QA, "background_appropriate": background_ok,
                      "product_intact": product_ok, "reason_tags": tags},
        )
        if not approve and generation.gate_status == Generation.Gate.PASSED:
            project = generation.product.project
            ImageTask.objects.get_or_create(
                generation=generation,
                defaults={"project": project, "labels_required": project.labels_per_item,
                          "priority": DISAGREEMENT_PRIORITY},
            )
    return label


def bulk_approve(generations, user) -> int:
    count = 0
    for generation in generations:
        review(generation, user, approve=True)
        count += 1
    return count
