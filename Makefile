# The two commands a newcomer needs: `make run` and `make test`.
BUILD      ?= build
CONFIG     ?= config/keygate.yaml
CMAKE_ARGS ?=
JOBS       ?= $(shell nproc)

.PHONY: all deps build run test bench fuzz format clean mutate soak chaos

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

# Reliability (README "Reliability"): the long versions of test_reliability.
# soak: mixed traffic at ~80% of the measured maximum for SOAK_SECONDS (600).
soak: build
	@bash scripts/install-deps.sh --bench
	KEYGATE_BIN=$(abspath $(BUILD))/keygate python3 tests/reliability/soak.py

# chaos: 1,000 key writes under kill -9, upstream chaos, floods (CHAOS_ONLY=crash|upstream|floods).
chaos: build
	@bash scripts/install-deps.sh --bench
	KEYGATE_BIN=$(abspath $(BUILD))/keygate python3 tests/reliability/chaos.py
