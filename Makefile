# The commands the README gives. Everything runs from a local .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-overhead bench-tools redis-server clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,lint]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,lint,bench]'
	touch $@

## run: the demo: gateway on memory:// + simulated fleet + sample requests, keeps serving
run: $(VENV)/.installed-run
	$(BIN)/gateway demo

## redis-server: install Debian's redis-server when it is missing (the tests start their own)
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server from Debian's packages"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 || \
		{ $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y --no-install-recommends redis-server >/dev/null; }; \
	}
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing" >&2; exit 1; }

## test: the whole suite against a real redis-server that the tests start and stop
test: $(VENV)/.installed-dev redis-server
	$(BIN)/pytest

## lint: ruff (lint + format check) and mypy --strict (bench/ included, so its extra too)
lint: $(VENV)/.installed-bench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: the benchmarks (overhead, ~10 min, then routing, ~17 min); results in bench/results/
bench: bench-overhead
	$(BIN)/python -m bench routing

## bench-overhead: gateway vs direct, nginx, LiteLLM; webhook path; memory; Redis Cluster
bench-overhead: $(VENV)/.installed-bench redis-server bench-tools
	$(BIN)/python -m bench overhead

## bench-tools: Debian's wrk and nginx for the overhead bench, installed when missing
bench-tools:
	@for tool in wrk:wrk nginx:nginx redis-cli:redis-tools; do \
		command -v $${tool%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${tool%%:*} ] || { \
			echo "installing $${tool#*:} from Debian's packages"; \
			SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
			export DEBIAN_FRONTEND=noninteractive; \
			$$SUDO apt-get install -y --no-install-recommends $${tool#*:} >/dev/null 2>&1 || \
			{ $$SUDO apt-get update >/dev/null && \
			  $$SUDO apt-get install -y --no-install-recommends $${tool#*:} >/dev/null; }; \
		}; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
