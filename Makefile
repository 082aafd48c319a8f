# Microlog: the two commands a newcomer needs are `make demo` and `make test`.
#   make build  dependencies, C build (build/), Python package (.venv), web UI
#   make demo   build, start a standalone micrologd, profile an example, print its URL
#   make test   build, then every test suite (C, Python, end-to-end, browser) twice:
#               a normal build and an address+undefined sanitizer build
#   make bench  the benchmarks in tests/bench (see tests/bench/README.md)

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: build deps native venv ui demo test test-fast bench format clean stop-demo

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

stop-demo:
	@pkill -f 'build/collector/micrologd --standalone' || true

test: build
	@bash deploy/install-deps.sh --test
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	ctest --test-dir build --output-on-failure -j2
	cmake -S . -B build-asan -DML_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug \
	      -DPython3_EXECUTABLE=$(abspath $(VPY)) $(CMAKE_FLAGS)
	cmake --build build-asan -j$(JOBS)
	ctest --test-dir build-asan --output-on-failure -j2

bench: build
	$(VPY) tests/bench/run_all.py

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-wheel frontend/dist
