#!/usr/bin/env bash
# One-shot GPU benchmark (docs/benchmarks.md): python -m loadtests.bench_gpu "$@", after setting up what a GPU
# machine lacks from .gpu/ (made on this machine by `make gpu-carry`: a Java 17 runtime and TorchServe's wheels).
# Here (Java and TorchServe in .venv) it runs as it is: `loadtests/bench_gpu.sh --dry-run` is make test's check.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v java >/dev/null; then
  [[ -f .gpu/jre17.txz ]] || { echo "no java and no .gpu/jre17.txz: run make gpu-carry first" >&2; exit 1; }
  mkdir -p /tmp/jre && tar -xJf .gpu/jre17.txz -C /tmp/jre
  export JAVA_HOME=/tmp/jre/jre17 PATH=/tmp/jre/jre17/bin:$PATH
fi
PY=python3
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
if ! "$PY" -c "import ts, model_archiver" 2>/dev/null; then
  ls .gpu/whl/*.whl >/dev/null || { echo "no TorchServe and no .gpu/whl: run make gpu-carry first" >&2; exit 1; }
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl
  if [[ -f .gpu/ts-frontend.txz ]]; then  # the frontend jar, carried as a solid xz archive of its classes
    mkdir -p /tmp/ts-frontend && tar -xJf .gpu/ts-frontend.txz -C /tmp/ts-frontend
    mkdir -p /tmp/site/ts/frontend && (cd /tmp/ts-frontend && "$PY" -m zipfile -c /tmp/site/ts/frontend/model-server.jar .)
  fi
  export PATH=/tmp/site/bin:$PATH PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$PY" -m loadtests.bench_gpu "$@"
