# The two commands of the README. Each does its own set-up first (scripts/setup.sh).
PYTHON ?= python3
BENCH_ARGS ?=
TEST_ARGS ?=

.PHONY: setup bench test

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

# The main job: latency of every scale on this machine (GPU when present, else CPU).
bench: setup
	$(PYTHON) -m yolov12 bench $(BENCH_ARGS)

# The whole test suite (GPU-only tests skip with a reason on a CPU machine).
test: setup
	$(PYTHON) -m pytest $(TEST_ARGS)
