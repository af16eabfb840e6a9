# cloudseg: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
# Training precision of the demo: auto is bf16 on CPUs with AVX512-BF16 or AMX (see README).
DEMO_PRECISION ?= auto
# The stamp is rebuilt when pyproject.toml changes, so `make test` installs only when needed.
STAMP  := $(VENV)/.installed

.PHONY: install install-gpu demo test test-all lint format gpu-check wheelhouse clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip's log is long (local wheel indexes); keep it in a file and show it only on failure.
	$(BIN)/pip install -q -e '.[train,dev,openvino,vector,stac,ray,xarray,docs]' > $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; exit 1; }
	@# ukis-csmask (the `ukis` extra) for the foreign-model tests and benchmarks/peer.py. Not
	@# through the extra: --no-deps keeps its onnxruntime extras from replacing onnxruntime-gpu.
	$(BIN)/pip install -q --no-deps 'ukis-csmask>=1.0' >> $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; exit 1; }
	touch $(STAMP)

# NVIDIA GPUs: CUDA/cuDNN runtime wheels and the TensorRT 10 runtime (the [tensorrt] extra) on
# top of `make install`. TensorRT's wheel comes from pypi.nvidia.com (see pyproject.toml).
install-gpu: install
	$(BIN)/pip install -q -e '.[train,dev,openvino,vector,stac,ray,xarray,docs,tensorrt]'

# The whole story on synthetic data, on the CPU, in a few minutes: a training set and a separate
# test scene, a short r18 training run, export to ONNX, cloudseg-run, scores against the truth.
# Runs and models go to $(DEMO)/home (CLOUDSEG_HOME), not to ~/.cache.
DEMO_ENV := CLOUDSEG_HOME=$(abspath $(DEMO))/home
demo: install
	$(BIN)/cloudseg-synth dataset $(DEMO)/38cloud --train-scenes 6 --test-scenes 1 \
		--size 1152 --seed 11 --overwrite -q
	$(BIN)/cloudseg-synth scene $(DEMO)/scene --size 2000 --seed 7 --overwrite -q
	$(BIN)/cloudseg-eda $(DEMO)/38cloud --out $(DEMO)/eda --overwrite -q
	$(DEMO_ENV) $(BIN)/cloudseg-train --model r18 $(DEMO)/38cloud --no-pretrained --size 128 \
		--epochs 6 --fine-tune-size 256 --fine-tune-epochs 1 --bs 8 --lr 1e-3 --cache \
		--stats $(DEMO)/eda/band_stats.json --precision $(DEMO_PRECISION) \
		--out $(DEMO)/home/runs/r18-demo --overwrite -q
	$(DEMO_ENV) $(BIN)/cloudseg-export --model r18 --overwrite
	$(DEMO_ENV) $(BIN)/cloudseg-run $(DEMO)/scene --model r18 --out $(DEMO)/run --overwrite -q
	$(BIN)/cloudseg-eval scenes $(DEMO)/run/*_cloudmask.tif --truth $(DEMO)/scene -q
	@echo "demo: summary in $$(ls $(DEMO)/run/*_summary.json), preview in $$(ls $(DEMO)/run/*_preview.png)"

test: install
	$(BIN)/pytest -q

# Everything, slow tests included.
test-all: install
	$(BIN)/pytest -q -m ''

# ruff, the layers of ARCHITECTURE.md (import-linter; contracts in pyproject.toml), the docs.
lint: install
	$(BIN)/ruff check cloudseg tests benchmarks
	$(BIN)/ruff format --check cloudseg tests benchmarks
	$(BIN)/lint-imports --no-cache
	@# The docs site: a broken link, a page left out or a stale API name fails the build.
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q

format: install
	$(BIN)/ruff format cloudseg tests benchmarks
	$(BIN)/ruff check --fix cloudseg tests benchmarks

# The GPU measurements (benchmarks/gpu_check.py): installs what it can, measures what it can in
# at most 8 minutes, writes benchmarks/results/gpu.{json,md}; says so in one line without a GPU.
# On a machine without a package index it installs from $(WHEELHOUSE) (make wheelhouse).
WHEELHOUSE ?= .wheelhouse
gpu-check:
	bash benchmarks/gpu_check.sh $(WHEELHOUSE)

# Wheels the GPU check needs on a locked-down GPU machine (CPython 3.12, torch with CUDA, numpy,
# click, matplotlib, no package index): rasterio and the three small packages it needs that such
# a machine lacks; about 40 MB, within what travels with the repo.
wheelhouse:
	python3 -m pip download -q --no-deps -d $(WHEELHOUSE) --only-binary=:all: \
		--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		rasterio==1.4.4 affine==3.0.1 cligj==0.7.2 click-plugins==1.1.1.2

clean:
	rm -rf $(DEMO) build *.egg-info
