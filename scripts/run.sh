#!/usr/bin/env bash
# Bring up Stagecraft on the embedded defaults (SQLite + filesystem Celery broker, no servers needed),
# or on whatever DATABASE_URL / CELERY_BROKER_URL say. Starts a worker and the web server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WORKERS=${WEB_WORKERS:-2}
DATA_DIR=${STAGECRAFT_DATA_DIR:-var}

$PY manage.py migrate --no-input -v0
$PY manage.py collectstatic --no-input -v0
$PY manage.py seed_demo
echo "Indexing the demo catalog for copy-paste staging (about a minute the first time)..."
$PY manage.py build_catalog_index --project Demo
if $PY manage.py help make_demo_tasks >/dev/null 2>&1; then
  $PY manage.py make_demo_tasks
fi

mkdir -p "$DATA_DIR/log"
$PY -m celery -A config worker --beat --concurrency "${CELERY_CONCURRENCY:-1}" -l INFO >"$DATA_DIR/log/worker.log" 2>&1 &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null; wait $WORKER_PID 2>/dev/null' EXIT INT TERM

echo
echo "Stagecraft is running at http://$HOST:$PORT/  (worker log: $DATA_DIR/log/worker.log; Ctrl-C stops both)"
echo "Demo logins (also in $DATA_DIR/demo-logins.txt):"
sed 's/^/  /' "$DATA_DIR/demo-logins.txt"
echo
.venv/bin/gunicorn config.wsgi --bind "$HOST:$PORT" --workers "$WORKERS" --timeout 120 --access-logfile -
