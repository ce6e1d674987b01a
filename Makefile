# Two commands for a newcomer: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench soak fuzz generate clean

demo: $(VENV)/.installed  ## run the demo workspace and the exporter (http://127.0.0.1:9877/metrics)
	$(BIN)/serving-exporter demo

test: $(VENV)/.installed  ## run the whole test suite
	$(BIN)/python -m pytest

bench: $(VENV)/.installed  ## side by side: exporter poll vs a naive loop and a real Prometheus, /metrics scrape, RSS (needs prometheus)
	$(BIN)/python bench/bench.py

soak: $(VENV)/.installed  ## 1,000 polls of 200 simulated endpoints with random faults: RSS/fds/threads flat, polls on time (~20 min)
	$(BIN)/python bench/soak.py

fuzz: $(VENV)/.installed  ## the nightly-size fuzzing of the metrics parser and the config loader (100,000 bodies, a few minutes)
	FUZZ_EXAMPLES=100000 $(BIN)/python -m pytest tests/test_fuzz_parser.py tests/test_fuzz_config.py

generate: $(VENV)/.installed  ## regenerate every derived file (tests fail when one is stale)
	$(BIN)/python alerts/generate.py
	$(BIN)/python dashboards/build.py
	$(BIN)/python docs/generate.py  # after alerts and dashboards: the series-cost table reads them
	$(BIN)/python helm/sync.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
