# Two commands a fresh machine needs: `make demo` and `make test`.
# Each builds .venv on first use; only python3, make and a C compiler are assumed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint constraints test-router test-judge test-kube kube-assets bench-router bench-judge clean

$(STAMP): pyproject.toml constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	BAKEOFF_NO_COMPILE=1 $(PY) -m pip install --quiet -c constraints.txt -e '.[test]'  # compiled by $(HOT_STAMP)
	touch $(STAMP)

# The demo needs only bakeoff itself (no test extras); LOCUST=1 adds locust for the load.
# pip runs without --quiet: a first install shows what it fetches and builds.
DEMO_STAMP := $(VENV)/.demo-installed
DEMO_EXTRAS := $(if $(LOCUST),[load],)

$(DEMO_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { echo "== creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "== installing bakeoff$(DEMO_EXTRAS) into $(VENV) (only what the demo needs)"
	$(PY) -m pip install --progress-bar on -c constraints.txt -e '.$(DEMO_EXTRAS)'
	touch $(DEMO_STAMP)

demo: $(if $(wildcard $(STAMP)),$(STAMP),$(DEMO_STAMP))
	$(VENV)/bin/bakeoff demo

# The router's hot path is compiled by mypyc at install (setup.py); an edit to
# one of its modules rebuilds it (until then the router runs those modules as
# pure Python: `bakeoff --version` says which).
HOT_SRC := $(foreach m,http11 headscan downstream upstream flow_control routing stats,router/src/bakeoff/router/$(m).py)
HOT_STAMP := $(VENV)/.hot-path-built

$(HOT_STAMP): $(HOT_SRC) | $(STAMP)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(HOT_STAMP)

# Lint first (ruff, mypy, import-linter: scripts/lint.sh), then every test tier:
# the independent tests on two processes (pytest-xdist; a module's tests stay on one
# process with --dist loadscope, so module fixtures start once), the router's hot path
# compiled; then alone the tests whose assertions depend on the machine's speed (marked
# serial); then the router's tests again against the pure-Python fallback; then the
# Kubernetes tier (one kube-apiserver per module, which it skips without kube-assets
# unless CI=true).
XDIST ?= -n 2 --dist loadscope
test: lint $(HOT_STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not serial" --ignore=tests/kube $(PYTEST_ARGS)
	$(PY) -m pytest -q -m serial --ignore=tests/kube $(PYTEST_ARGS)
	BAKEOFF_PURE_PYTHON=1 $(PY) -m pytest -q $(XDIST) -m "not serial" tests/router $(PYTEST_ARGS)
	$(PY) -m pytest -q tests/kube $(PYTEST_ARGS)

# The quick tier: no long simulations or end-to-end runs (marked slow), no Kubernetes tier.
test-fast: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow and not serial" --ignore=tests/kube $(PYTEST_ARGS)

lint: $(STAMP)
	PY=$(PY) scripts/lint.sh

test-router: $(STAMP) $(HOT_STAMP)
	$(PY) -m pytest -q tests/router $(PYTEST_ARGS)
	BAKEOFF_PURE_PYTHON=1 $(PY) -m pytest -q tests/router $(PYTEST_ARGS)

test-judge: $(STAMP)
	$(PY) -m pytest -q tests/judge $(PYTEST_ARGS)

# The Kubernetes tier needs kube-apiserver and etcd: built once into ~/.cache/bakeoff/kube-assets.
kube-assets:
	scripts/kube-assets.sh

test-kube: $(STAMP)
	KUBEBUILDER_ASSETS="$$(scripts/kube-assets.sh)" $(PY) -m pytest -q tests/kube $(PYTEST_ARGS)

# BENCH_ARGS: e.g. --compare-pure --workers-scaling (docs/benchmarks.md)
bench-router: $(STAMP) $(HOT_STAMP)
	$(PY) benchmarks/router_vs_nginx.py $(BENCH_ARGS)

bench-judge: $(STAMP)
	$(PY) benchmarks/judge_quality.py
	$(PY) benchmarks/judge_speed.py

# Re-pin the tested versions after changing dependencies (then run make test).
constraints: $(STAMP)
	$(PY) -m pip install --quiet --upgrade -e '.[test]'
	{ head -2 constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^bakeoff'; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
