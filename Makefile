# Microlog: the two commands a newcomer needs are `make demo` and `make test`.
#   make build  dependencies, C build (build/), Python package (.venv), web UI
#   make demo   build, start a standalone micrologd, profile an example, print its URL
#   make test   build, format check, then every test suite (C, Python, end-to-end, browser) twice:
#               a normal build and an address+undefined sanitizer build
#   make bench  the benchmarks in tests/bench (see tests/bench/README.md); BENCH="query ui" picks some
#   make fuzz   one libFuzzer target for a while: make fuzz TARGET=wire SECONDS=600 (tests/fuzz/README.md)
#   make test-tsan  the C unit tests and the end-to-end tests under the thread sanitizer

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: build deps native venv ui demo test test-fast bench format format-check clean stop-demo fuzz fuzz-build test-tsan

build: deps native ui venv

deps:
	@bash deploy/install-deps.sh

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

venv: $(VPY) native
	$(VPY) -m pip install -q -r tests/requirements.txt
	$(VPY) -m pip install -q .

native: $(VPY)
	cmake -S . -B build -DPython3_EXECUTABLE=$(abspath $(VPY)) $(CMAKE_FLAGS)
	cmake --build build -j$(JOBS)

ui:
	cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build

demo: build
	@bash examples/demo.sh

# The bracket keeps pkill from matching the shell that runs it.
stop-demo:
	@pkill -f '[b]uild/collector/micrologd --standalone' || true

test: build
	@bash deploy/install-deps.sh --test
	$(MAKE) format-check
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	ctest --test-dir build --output-on-failure -j2
	cmake -S . -B build-asan -DML_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug \
	      -DPython3_EXECUTABLE=$(abspath $(VPY)) $(CMAKE_FLAGS)
	cmake --build build-asan -j$(JOBS)
	ctest --test-dir build-asan --output-on-failure -j2
	$(MAKE) fuzz-build
	ctest --test-dir build-fuzz -L fuzz --output-on-failure -j1

# libFuzzer targets (clang): build-fuzz. FUZZ_SECONDS: each target's ctest run.
FUZZ_SECONDS ?= 20
TARGET ?= wire
SECONDS ?= 600
fuzz-build:
	@bash deploy/install-deps.sh --test
	CC=clang cmake -S . -B build-fuzz -DML_FUZZ=ON -DML_BUILD_PYEXT=OFF \
	      -DML_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_FLAGS)
	cmake --build build-fuzz --target fuzz_all -j$(JOBS)

fuzz: fuzz-build
	@test -d build-fuzz/tests/fuzz/seeds || ctest --test-dir build-fuzz -R fuzz/seeds --output-on-failure
	tests/fuzz/run.sh build-fuzz $(TARGET) $(SECONDS)

# Thread sanitizer: the collector, the client library and the extension
# instrumented; the interpreter is not, so libtsan is preloaded into it.
# Left out: client_test_unreachable (its test_fork starts threads in a
# child of a threaded process, which TSan cannot follow: "dup thread") and
# test_packaging (a wheel build; libtsan preloaded into cmake hangs it).
# ML_BUILD_DIR=build: the storage tests compile their load generator
# against that folder's (uninstrumented) libml_proto.a.
TSAN_LIB = $(shell gcc -print-file-name=libtsan.so)
TSAN_OPTS = halt_on_error=1 die_after_fork=0 suppressions=$(abspath tests/tsan.supp)
test-tsan: build
	cmake -S . -B build-tsan -DML_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug \
	      -DPython3_EXECUTABLE=$(abspath $(VPY)) $(CMAKE_FLAGS)
	cmake --build build-tsan -j$(JOBS)
	TSAN_OPTIONS="$(TSAN_OPTS)" \
	  ctest --test-dir build-tsan -L c -E client_test_unreachable --output-on-failure -j2
	LD_PRELOAD=$(TSAN_LIB) TSAN_OPTIONS="$(TSAN_OPTS)" \
	  PYTHONPATH=$(abspath build-tsan/python) MICROLOGD=$(abspath build-tsan/collector/micrologd) \
	  ML_DRIVE=$(abspath build-tsan/tests/ml_drive) ML_BUILD_DIR=$(abspath build) \
	  ML_SOURCE_DIR=$(abspath .) ML_SANITIZE=thread \
	  MICROLOG_AUTOSTART=0 MICROLOG_SPOOL_DIR=$(abspath build-tsan/test-spool/e2e) \
	  $(VPY) -m pytest -q -p no:cacheprovider tests/e2e --ignore=tests/e2e/test_packaging.py

bench: build
	@if [ -f tests/requirements-bench.txt ]; then $(VPY) -m pip install -q -r tests/requirements-bench.txt; fi
	$(VPY) tests/bench/run_all.py $(BENCH)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Every C file as .clang-format (Debian 12's clang-format 14) has it.
format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-wheel build-fuzz build-tsan frontend/dist
