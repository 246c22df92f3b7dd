# The commands the README gives. Everything runs from a local .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Benchmarks run on an optimized CPython (PGO + LTO), as the container's python:3.11 image is
# built; Debian's python3.11 is one. pyenv's default build is not: the same gateway costs
# ~1.2x the CPU on it. BENCH_PYTHON=python3 measures whatever python3 is.
BENCH_PYTHON ?= $(shell [ -x /usr/bin/python3.11 ] && echo /usr/bin/python3.11 || echo $(PYTHON))
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin

.PHONY: run test lint bench bench-overhead bench-latency bench-tools redis-server prometheus compose-cli apt-docker-compose clean

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

# $(call apt-install,COMMAND,PACKAGE): install Debian's PACKAGE when COMMAND is missing
define apt-install
	@command -v $(1) >/dev/null 2>&1 || { \
		echo "installing $(2) from Debian's packages"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y --no-install-recommends $(2) >/dev/null 2>&1 || \
		{ $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y --no-install-recommends $(2) >/dev/null; }; \
	}
	@command -v $(1) >/dev/null 2>&1 || { echo "$(1) is still missing" >&2; exit 1; }
endef

## redis-server: install Debian's redis-server when it is missing (the tests start their own)
redis-server:
	$(call apt-install,redis-server,redis-server)

## prometheus: install Debian's prometheus (and promtool) when missing (the live test starts its own)
prometheus:
	$(call apt-install,prometheus,prometheus)
	$(call apt-install,promtool,prometheus)

## compose-cli: `docker compose` or Debian's docker-compose, to check deploy/compose.yaml (no engine)
compose-cli:
	@docker compose version >/dev/null 2>&1 || { $(MAKE) --no-print-directory apt-docker-compose; }

apt-docker-compose:
	$(call apt-install,docker-compose,docker-compose)

## test: the whole suite against a real redis-server that the tests start and stop
test: $(VENV)/.installed-dev redis-server prometheus compose-cli
	$(BIN)/pytest

## lint: ruff (lint + format check) and mypy --strict (bench/ included, so its extra too)
lint: $(VENV)/.installed-bench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmarks' own virtualenv, on BENCH_PYTHON (Debian's needs python3.11-venv for pip).
$(BENCH_VENV)/.installed: pyproject.toml
	$(BENCH_PYTHON) -m venv $(BENCH_VENV) 2>/dev/null || { \
		rm -rf $(BENCH_VENV); \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y --no-install-recommends python3.11-venv >/dev/null 2>&1 || \
		{ $$SUDO apt-get update >/dev/null && \
		  $$SUDO apt-get install -y --no-install-recommends python3.11-venv >/dev/null; }; \
		$(BENCH_PYTHON) -m venv $(BENCH_VENV); \
	}
	$(BENCH_BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	touch $@

## bench: the benchmarks (overhead, ~10 min, latency rounds, ~2 min, then routing, ~17 min);
## results in bench/results/
bench: bench-overhead bench-latency
	$(BENCH_BIN)/python -m bench routing

## bench-overhead: gateway vs direct, nginx, LiteLLM; webhook path; memory; Redis Cluster
bench-overhead: $(BENCH_VENV)/.installed redis-server bench-tools
	$(BENCH_BIN)/python -m bench overhead

## bench-latency: added latency at 500 req/s in interleaved short rounds, gateway vs direct
bench-latency: $(BENCH_VENV)/.installed redis-server bench-tools
	$(BENCH_BIN)/python -m bench latency

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
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache
