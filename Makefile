# The two commands of README.md:  make experiment  |  make test
# Both create .venv, install torch, the system data and this package (compiling the kernels).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OUT ?= runs/study
CUDA_HOME ?= $(shell test -d /usr/local/cuda && echo /usr/local/cuda)
export CUDA_HOME
# CUDA architectures: TORCH_CUDA_ARCH_LIST if set, else the local GPU's, else "8.0;9.0+PTX" (setup.py).
KERNEL_TESTS := test_ls_ce.py test_ls_ce_special.py test_ls_ce_lanes.py test_latent_adam.py

.PHONY: install test test-isa test-all experiment bench sysdeps clean

sysdeps:
	@test -d /usr/share/datasets/fashion-mnist || { \
	  echo "installing Debian's dataset-fashion-mnist (needs root)"; \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }

$(PY):
	python3 -m venv $(VENV)

install: sysdeps $(PY)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q --no-build-isolation '.[test,dask]'

# Tests run against the installed package (pytest, not `python -m pytest`, keeps the source tree off sys.path).
test: install
	cd python_tests && ../$(VENV)/bin/pytest -q -m "not slow" --durations=15 .

# The CPU kernel tests once per kernel table this CPU has (python_tests/cpu_isa.py reads its flags: torch
# reports whatever ATEN_CPU_CAPABILITY forces, and dies in a table the CPU lacks), each round only if torch
# then really runs the forced table; against the package that `make test` installed (CI runs both).
test-isa:
	cd python_tests && tables=" $$(../$(PY) cpu_isa.py) " && for isa in default avx2 avx512; do \
	  case "$$tables" in *" $$isa "*) ;; *) echo "skipping $$isa: this CPU lacks $$(../$(PY) cpu_isa.py --missing $$isa)"; continue;; esac; \
	  have=$$(ATEN_CPU_CAPABILITY=$$isa ../$(PY) -c "import torch; print(torch.backends.cpu.get_cpu_capability())"); \
	  case "$$have" in "$$(echo $$isa | tr a-z A-Z)"*) ;; *) echo "skipping $$isa: forced, torch runs $$have"; continue;; esac; \
	  echo "== kernel tests with ATEN_CPU_CAPABILITY=$$isa"; \
	  ATEN_CPU_CAPABILITY=$$isa ../$(VENV)/bin/pytest -q -m "not slow and not cuda" $(KERNEL_TESTS) || exit 1; \
	done

test-all: install
	cd python_tests && ../$(VENV)/bin/pytest -q --durations=15 .

# The default study's first seed, its stages on 2 local Dask workers (same numbers as sequential, about
# half the wall time on 2 cores); add --seeds 7 for the README's study. Its prior and evaluation model come
# from the package (lsmia_ext/instruments, sha256-checked) when their stage hash is the shipped one; add
# --train-instruments to train them here instead.
experiment: install
	$(VENV)/bin/lsmia experiment --out $(OUT) --workers 2

# -P keeps the source tree off the front of sys.path, so the installed lsmia_ext (with its compiled _C)
# is imported; bench/ is then found through the appended '.'.
BENCH := $(PY) -P -c "import runpy, sys; sys.path.append('.'); runpy.run_module(sys.argv.pop(1), run_name='__main__')"

bench: install
	$(BENCH) bench.bench_ls_ce
	$(BENCH) bench.bench_latent_adam

clean:
	rm -rf build dist *.egg-info lsmia_ext/_C*.so
