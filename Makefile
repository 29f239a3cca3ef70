# Thin wrapper over CMake. The two commands a newcomer needs:
#   make run   install missing packages, build, start mosquitto + redis-server + aetherisd under
#              ./var, replay the bundled dataset, keep serving until Ctrl-C
#   make test  install missing packages, build with -Werror, run unit tests, build with
#              ASan+UBSan, run unit tests and the end-to-end suite against the sanitized binaries,
#              then every fuzz target briefly (FUZZ_CI_SECONDS each)
#   make fuzz  build the libFuzzer targets (clang) and run each FUZZ_SECONDS (default 60)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_DIR ?= build
SAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 10
CMAKE_FLAGS ?=

.PHONY: all deps lint build build-asan build-tsan test tsan unit e2e run bench quality clean format \
	fuzz fuzz-build fuzz-ci soak

all: build

deps:
	@scripts/deps.sh

build:
	@cmake -S . -B $(BUILD_DIR) -DAETHERIS_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

build-asan:
	@cmake -S . -B $(SAN_DIR) -DAETHERIS_WERROR=ON -DENABLE_ASAN=ON -DENABLE_UBSAN=ON \
		-DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(SAN_DIR) -j $(JOBS)

unit: build build-asan
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	@cd $(SAN_DIR) && ctest --output-on-failure -j $(JOBS)

build-tsan:
	@cmake -S . -B $(TSAN_DIR) -DAETHERIS_WERROR=ON -DENABLE_TSAN=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(TSAN_DIR) -j $(JOBS)

# ThreadSanitizer: every unit test (a report makes the program exit 66) and the whole e2e suite
# against a TSan daemon (the harness fails a test whose daemon log holds a report). Not in
# `make test`: the e2e suite under TSan takes 5-8 minutes on 2 cores (docs/benchmarks.md).
tsan: deps build-tsan
	@cd $(TSAN_DIR) && ctest --output-on-failure -j $(JOBS)
	@AETHERIS_BIN_DIR=$(CURDIR)/$(TSAN_DIR) scripts/e2e.sh

# libFuzzer targets (tests/fuzz): clang, ASan+UBSan, a build directory of their own.
fuzz-build:
	@cmake -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang -DBUILD_FUZZERS=ON -DAETHERIS_WERROR=ON \
		-DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(FUZZ_DIR) --target fuzzers -j $(JOBS)

fuzz: deps fuzz-build
	@FUZZ_BUILD_DIR=$(FUZZ_DIR) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

fuzz-ci: fuzz-build
	@FUZZ_BUILD_DIR=$(FUZZ_DIR) FUZZ_SECONDS=$(FUZZ_CI_SECONDS) scripts/fuzz.sh

e2e: build build-asan
	@AETHERIS_BIN_DIR=$(CURDIR)/$(SAN_DIR) scripts/e2e.sh

# The 10-minute soak at 1,000 events/s (tests/e2e/test_soak.py; not in `make test`, which runs its
# 60 s version): zero loss and RSS growth after warm-up <= 16 MiB, on the release build.
soak: deps build
	@AETHERIS_SOAK=1 E2E_TIMEOUT_S=1500 scripts/e2e.sh -k soak -s

lint:
	@scripts/lint.sh

test: deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e
	@$(MAKE) --no-print-directory fuzz-ci

run: deps build
	@scripts/run.sh $(BUILD_DIR)

bench: deps build
	@scripts/bench.sh $(BUILD_DIR)

# Detection quality: precision, recall and F1 per planted anomaly kind and detector on seeded
# aetheris-gen data, scored by aetheris-backtest; updates docs/detection-quality.md.
quality: build
	@scripts/quality.sh $(BUILD_DIR)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(SAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
