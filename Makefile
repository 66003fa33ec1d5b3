# depth_ros developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.depth_ros-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# Re-runs only when the requirements or packaging change; a second `make setup` does nothing.
$(STAMP): requirements/ci.txt requirements/constraints.txt setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check \
		-r requirements/ci.txt -c requirements/constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) -m depth_ros.demo --out outputs/demo

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check depth_ros training test bench launch
	PYTHONPATH=. $(VENV)/bin/lint-imports --no-cache --no-logo .importlinter

bench: setup
	# Every benchmark runs; those that miss a DESIGN.md budget exit non-zero and are listed.
	failed=""; for b in bench/bench_*.py bench/models.py; do \
		$(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "budgets missed or errors in:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) outputs build install log *.egg-info
