# artserve: `make serve` (serve the default model) and `make test` (the whole suite) are the two
# commands; each sets up .venv with the pinned stack first. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.artserve-installed
CHECKPOINT ?= model_store/art-category.pt
PYTEST_ARGS ?=

.PHONY: help venv java system-deps serve stop status archive test test-unit test-integration lint clean

help:
	@echo "make serve [CHECKPOINT=path]  build the archive if stale, start TorchServe, wait for READY"
	@echo "make stop                     stop the server started by make serve"
	@echo "make status                   the model's workers as the management API reports them"
	@echo "make archive [CHECKPOINT=...] build model_store/art-category.mar"
	@echo "make tag [DIR=... URL=... OUT=...]  tag a folder/CSV of images through the server, with a review report"
	@echo "make test                     lint + unit + integration tests (no GPU needed)"
	@echo "make venv                     create/refresh .venv with the pinned stack"
	@echo "make k8s-check                render and validate every Kubernetes overlay (no cluster needed)"
	@echo "make k8s-render [OVERLAY=gpu]  print an overlay's manifests (gpu, cpu, keda)"

# Reinstalled only when pyproject.toml changes; fast no-op otherwise.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

java:
	@command -v java >/dev/null || { echo "Java 17 is required by TorchServe: apt-get install -y openjdk-17-jre-headless"; exit 1; }
	@java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])' || { echo "TorchServe needs Java 17 or newer; found: $$(java -version 2>&1 | head -1)"; exit 1; }

# Debian packages the tests need (real Prometheus/promtool, headless Chromium); installed if missing.
SYSTEM_PKGS ?= chromium
system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

serve: venv java
	$(PY) -m deploy.serve start --checkpoint $(CHECKPOINT)

stop: venv
	$(PY) -m deploy.serve stop

status: venv
	$(PY) -m deploy.serve status

archive: venv
	$(PY) -m deploy.archive --checkpoint $(CHECKPOINT)

# Tag a collection through a running server (make serve) and write OUT/{tags.jsonl,tags.csv,report.html}.
.PHONY: tag
tag: venv
	$(PY) -m loadtests.tag_collection $(or $(DIR),../shared/data/art5/val) --url $(or $(URL),http://127.0.0.1:8080/predictions/art-category) --out $(or $(OUT),runs/tag) $(TAG_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv java system-deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: venv java system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Kubernetes (deploy/k8s/README.md): no cluster is contacted by any of these.
.PHONY: k8s-sync k8s-check k8s-render
OVERLAY ?= gpu
k8s-sync: venv
	$(PY) -m deploy.k8s.sync

k8s-check: venv
	$(PY) -m deploy.k8s.sync --check
	$(PY) -m deploy.k8s.check

k8s-render:
	kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

clean:
	rm -rf .serve model_store/*.mar .pytest_cache .ruff_cache
