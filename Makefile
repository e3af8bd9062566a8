# The two commands a newcomer needs: `make run` and `make test`.
BUILD      ?= build
CONFIG     ?= config/keygate.yaml
CMAKE_ARGS ?=
JOBS       ?= $(shell nproc)

.PHONY: all deps build run test bench fuzz format clean mutate

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Starts the gateway on the default config; a demo upstream is started on the
# configured upstream port when nothing listens there.
run: build
	@bash scripts/run.sh $(BUILD)/keygate $(CONFIG)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

bench: build
	@bash scripts/install-deps.sh --bench
	@bash tests/bench/run.sh $(BUILD)

# libFuzzer targets (clang, build-fuzz/): each runs FUZZ_SECONDS under ASan + UBSan.
FUZZ_SECONDS ?= 60
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD)

# Seeds each fault of tests/mutate/faults.txt into a copy of the tree and runs the suite (slow; not CI).
mutate:
	python3 tests/mutate/run.py
