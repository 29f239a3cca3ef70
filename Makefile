# Thin wrapper over CMake. The two commands a newcomer needs:
#   make run   install missing packages, build, start mosquitto + redis-server + aetherisd under
#              ./var, replay the bundled dataset, keep serving until Ctrl-C
#   make test  install missing packages, build with -Werror, run unit tests, build with
#              ASan+UBSan, run unit tests and the end-to-end suite against the sanitized binaries
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_DIR ?= build
SAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
CMAKE_FLAGS ?=

.PHONY: all deps lint build build-asan build-tsan test tsan unit e2e run bench clean format soak

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

# ThreadSanitizer: the threaded unit tests and the whole e2e suite against a TSan daemon (not in
# `make test`: paho's own internals are not TSan-annotated and could make CI flaky).
tsan: deps build-tsan
	@cd $(TSAN_DIR) && ctest --output-on-failure -j $(JOBS) -R 'bqueue|dedupe|store|mqttc|rconn|outbox'
	@AETHERIS_BIN_DIR=$(CURDIR)/$(TSAN_DIR) scripts/e2e.sh

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

run: deps build
	@scripts/run.sh $(BUILD_DIR)

bench: deps build
	@scripts/bench.sh $(BUILD_DIR)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(SAN_DIR) $(TSAN_DIR)
