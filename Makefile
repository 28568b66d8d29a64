# The two commands of README.md:  make experiment  |  make test
# Both create .venv, install torch, the system data and this package (compiling the kernels).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OUT ?= runs/study
CUDA_HOME ?= $(shell test -d /usr/local/cuda && echo /usr/local/cuda)
TORCH_CUDA_ARCH_LIST ?= 8.0;9.0
export CUDA_HOME TORCH_CUDA_ARCH_LIST

.PHONY: install test test-all experiment bench sysdeps clean

sysdeps:
	@test -d /usr/share/datasets/fashion-mnist || { \
	  echo "installing Debian's dataset-fashion-mnist (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }

$(PY):
	python3 -m venv $(VENV)

install: sysdeps $(PY)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q --no-build-isolation '.[test]'

# Tests run against the installed package (pytest, not `python -m pytest`, keeps the source tree off sys.path).
test: install
	cd python_tests && ../$(VENV)/bin/pytest -q -m "not slow" --durations=15 .

test-all: install
	cd python_tests && ../$(VENV)/bin/pytest -q --durations=15 .

experiment: install
	$(VENV)/bin/lsmia experiment --out $(OUT)

bench: install
	$(PY) -m bench.bench_ls_ce
	$(PY) -m bench.bench_latent_adam

clean:
	rm -rf build dist *.egg-info lsmia_ext/_C*.so
