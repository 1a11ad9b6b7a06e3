"""Benchmark: server time of next-task and submit-label with many concurrent annotators.

    .venv/bin/python bench/annotate_queue.py [--annotators 50] [--tasks 100000] [--rounds 40]
        [--database-url postgres://postgres@127.0.0.1:5432/stagecraft_bench]

Creates (once) its own PostgreSQL database, a project with --tasks comparison tasks (one slot each)
and --annotators annotator accounts; then every annotator, in its own thread with its own database
connection, repeats "GET next task, POST label" through the full Django stack (middleware, session
auth, DRF, services) with Django's test client. Times are measured around each request (no network).
Re-running resets labels and claims and measures again on the same queue.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def build(n_tasks: int, n_annotators: int):
    import numpy as np
    from django.db import connection, transaction

    from annotate.models import Assignment, ComparisonTask, ImageLabel, PairwiseLabel
    from core.models import Product, Project, SourceImage
    from core.services.accounts import create_user
    from core.services.storage import store_pixels
    from generation.models import Generation

    project, _ = Project.objects.get_or_create(slug=f"bench-{n_tasks}",
                                               defaults={"name": f"Queue benchmark, {n_tasks} tasks"})
    have = ComparisonTask.objects.filter(project=project).count()
    if have != n_tasks:
        print(f"building {n_tasks} comparison tasks (found {have})...", flush=True)
        started = time.perf_counter()
        Product.objects.filter(project=project).delete()
        per_product = 15  # 105 pairs per product
        pairs_per_product = per_product * (per_product - 1) // 2
        n_products = -(-n_tasks // pairs_per_product)
        stored = store_pixels(np.full((64, 64, 3), 128, dtype=np.uint8))
        with transaction.atomic():
            products = Product.objects.bulk_create(
                [Product(project=project, title=f"Product {i}", category="bench") for i in range(n_products)])
            SourceImage.objects.bulk_create([
                SourceImage(product=p, image=stored.name, sha256=stored.decoded.sha256, width=64, height=64)
                for p in products])
            gens = Generation.objects.bulk_create([
                Generation(product=p, backend="bench", backend_version="1", params_hash="b", seed=s,
                           status="succeeded", image=stored.name, sha256=stored.decoded.sha256, width=64, height=64)
                for p in products for s in range(per_product)], batch_size=5000)
            by_product: dict[int, list] = {}
            for g in gens:
                by_product.setdefault(g.product_id, []).append(g)
            import random

            rng = random.Random(0)
            tasks = []
            for plist in by_product.values():
                for i in range(len(plist)):
                    for j in range(i + 1, len(plist)):
                        if len(tasks) < n_tasks:
                            tasks.append(ComparisonTask(project=project, generation_a=plist[i], generation_b=plist[j],
                                                        priority=rng.random()))
            tasks = ComparisonTask.objects.bulk_create(tasks, batch_size=5000)
            Assignment.objects.bulk_create([
                Assignment(project=project, kind="pair", comparison_task=t, slot=0, priority=t.priority)
                for t in tasks], batch_size=5000)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        PairwiseLabel.objects.filter(task__project=project).delete()
        ImageLabel.objects.filter(generation__product__project=project).delete()
        Assignment.objects.filter(project=project).update(annotator=None, claimed_at=None, expires_at=None, done_at=None)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # what autovacuum does in production after the reset above
                cursor.execute("VACUUM ANALYZE annotate_assignment")
    project.gold_rate = 0.0
    project.save()
    from django.contrib.auth import get_user_model

    users = []
    for i in range(n_annotators):
        user = get_user_model().objects.filter(username=f"bench{i:03d}").first()
        users.append(user or create_user(f"bench{i:03d}", "bench-password-1", ["annotator"])[0])
    return project, users


def run(project, users, rounds: int, think_ms: float):
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    next_url = reverse("annotate:api_next", args=[project.slug, "pair"])
    submit_url = reverse("annotate:api_submit", args=[project.slug, "pair"])
    barrier = threading.Barrier(len(users))
    lock = threading.Lock()
    times = {"next": [], "submit": []}
    errors = []

    def annotator(user):
        import random

        rng = random.Random(user.pk)
        client = Client()
        client.force_login(user)
        mine = {"next": [], "submit": []}
        try:
            barrier.wait(timeout=120)
            if think_ms:  # people do not all start at the same millisecond
                time.sleep(rng.uniform(0, think_ms) / 1000)
            for round_number in range(rounds + 1):
                t0 = time.perf_counter()
                response = client.get(next_url)
                t1 = time.perf_counter()
                if response.status_code != 200:
                    errors.append(("next", response.status_code))
                    break
                body = json.dumps({"assignment": response.json()["assignment"], "choice": "a"})
                if think_ms:  # looking at the images before answering
                    time.sleep(rng.expovariate(1 / think_ms) / 1000)
                t2 = time.perf_counter()
                saved = client.post(submit_url, data=body, content_type="application/json")
                t3 = time.perf_counter()
                if saved.status_code != 201:
                    errors.append(("submit", saved.status_code, saved.content[:200]))
                if think_ms:  # a pause before asking for the next item
                    time.sleep(rng.expovariate(1 / think_ms) / 1000)
                if round_number == 0:
                    continue  # warm-up: the thread's first requests open its database connection
                mine["next"].append((t1 - t0) * 1000)
                mine["submit"].append((t3 - t2) * 1000)
        finally:
            connection.close()
            with lock:
                for key in times:
                    times[key].extend(mine[key])

    threads = [threading.Thread(target=annotator, args=(u,)) for u in users]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40,
                        help="measured next+submit cycles per annotator (after one warm-up cycle)")
    parser.add_argument("--think-ms", type=float, default=0,
                        help="mean (exponential) pause before each request, so 2x per item (0: back-to-back requests)")
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stagecraft_bench"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (make bench): 10 annotators, 5000 tasks, 5 rounds; SQLite if PostgreSQL is down")
    args = parser.parse_args()
    if args.quick:
        args.annotators, args.tasks, args.rounds = 10, 5000, 5
    if args.database_url.startswith("postgres"):
        try:
            ensure_database(args.database_url)
        except Exception as exc:  # psycopg.OperationalError: no server
            if not args.quick:
                raise SystemExit(f"PostgreSQL at {args.database_url} is not reachable ({exc}); this benchmark is for "
                                 "PostgreSQL (use --quick for a SQLite smoke run)")
            bench_dir = Path(tempfile.gettempdir()) / "stagecraft_bench"
            bench_dir.mkdir(exist_ok=True)
            args.database_url = f"sqlite:///{bench_dir / 'bench.sqlite3'}"
            print(f"PostgreSQL not reachable; smoke run on {args.database_url}")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("STAGECRAFT_DATA_DIR", str(Path(tempfile.gettempdir()) / "stagecraft_bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # account setup only
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # Django's test client
    call_command("migrate", verbosity=0)
    project, users = build(args.tasks, args.annotators)
    from django.db import connection

    connection.close()
    load_before = os.getloadavg()[0]
    times, errors, wall = run(project, users, args.rounds, args.think_ms)
    n = len(times["next"])
    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, tasks in queue: {args.tasks}, "
          f"concurrent annotators: {args.annotators}, cycles: {n}, wall {wall:.1f} s, "
          f"{n / wall:.1f} labels/s, think time {args.think_ms:.0f} ms, CPU cores: {os.cpu_count()}, "
          f"load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    for key in ("next", "submit"):
        values = times[key]
        print(f"{key:>6}: p50 {statistics.median(values):6.1f} ms  p95 {percentile(values, 0.95):6.1f} ms  "
              f"p99 {percentile(values, 0.99):6.1f} ms  max {max(values):6.1f} ms")
    if errors:
        print(f"ERRORS: {len(errors)}: {errors[:5]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
