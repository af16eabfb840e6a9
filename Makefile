# cloudseg: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
# The stamp is rebuilt when pyproject.toml changes, so `make test` installs only when needed.
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip's log is long (local wheel indexes); keep it in a file and show it only on failure.
	$(BIN)/pip install -q -e '.[train,dev]' > $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; exit 1; }
	touch $(STAMP)

demo: install
	$(BIN)/cloudseg-synth scene $(DEMO)/scene --size 2000 --seed 7 --overwrite
	$(BIN)/cloudseg-synth dataset $(DEMO)/38cloud --train-scenes 4 --test-scenes 2 \
		--size 1152 --seed 0 --overwrite
	$(BIN)/cloudseg-eda $(DEMO)/38cloud --out $(DEMO)/eda --overwrite
	@echo "demo: scene in $(DEMO)/scene, dataset in $(DEMO)/38cloud, EDA report in $(DEMO)/eda/summary.md"

test: install
	$(BIN)/pytest -q

# Everything, slow tests included.
test-all: install
	$(BIN)/pytest -q -m ''

lint: install
	$(BIN)/ruff check cloudseg tests
	$(BIN)/ruff format --check cloudseg tests

format: install
	$(BIN)/ruff format cloudseg tests
	$(BIN)/ruff check --fix cloudseg tests

clean:
	rm -rf $(DEMO) build *.egg-info
