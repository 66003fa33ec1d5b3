# depth_ros developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.depth_ros-installed

# The real ROS 2 launch system and `ros2` CLI (ros2 launch/run/topic/node/param) as wheels,
# not on PyPI (../shared/wheels/ros2/README.md): installed where that folder (or the one
# DEPTH_ROS_ROS2_WHEELS names) exists. Without them setup still works and the tests that
# run `ros2 launch` skip, saying why.
ROS2_WHEELS   := $(or $(DEPTH_ROS_ROS2_WHEELS),../shared/wheels/ros2)
ROS2_PACKAGES := launch==3.7.1 launch_xml launch_yaml launch_testing launch_ros \
	launch_testing_ros ros2launch ros2cli ros2run ros2pkg ros2topic ros2node ros2param \
	ros2service ros2interface ros2action ros2lifecycle
HAVE_ROS2     := $(if $(wildcard $(ROS2_WHEELS)/launch-*.whl),yes,no)
# One stamp per state: wheels that appear (or go) later make setup run this step again.
ROS2_STAMP    := $(VENV)/.ros2-wheels-$(HAVE_ROS2)

.PHONY: setup demo test lint bench clean

setup: $(STAMP) $(ROS2_STAMP)

# Re-runs only when the requirements or packaging change; a second `make setup` does nothing.
$(STAMP): requirements/ci.txt requirements/constraints.txt setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check \
		-r requirements/ci.txt -c requirements/constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(ROS2_STAMP): $(STAMP)
ifeq ($(HAVE_ROS2),yes)
	$(PY) -m pip install --quiet --disable-pip-version-check --find-links $(ROS2_WHEELS) \
		-c requirements/constraints.txt $(ROS2_PACKAGES)
else
	@echo "No ROS 2 launch wheels in $(ROS2_WHEELS): the ros2 launch tests will skip" \
		"(DEPTH_ROS_ROS2_WHEELS=<folder> names another folder)."
endif
	rm -f $(VENV)/.ros2-wheels-*
	touch $@

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
