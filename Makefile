# Makefile - the front door: `make demo` and `make test` bootstrap the
# machine (ops/bootstrap.sh), build with CMake and run. The real build is CMake's.
BUILD ?= build
SAN_BUILD ?= build-san
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all bootstrap build demo test test-san test-fuzz bench drift soak config-doc package clean

all: build

bootstrap:
	@ops/bootstrap.sh

build: bootstrap
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The embedded demo: mock broker, synthetic stream, the real pipeline, a report.
DEMO_ARGS ?=
demo: build
	$(BUILD)/driftrec demo $(DEMO_ARGS)

# Every test: the normal build, then the unit and integration tests again
# under AddressSanitizer + UBSan, then a bounded libFuzzer run of the decoders.
test: build
	cd $(BUILD) && ctest --output-on-failure -j 2
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory test-fuzz

test-san: bootstrap
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDR_SANITIZE=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 2 -L 'unit|integration'

# libFuzzer on the Avro decoders and the stored-record decoders, FUZZ_SECONDS
# per target (clang is installed by `ops/bootstrap.sh fuzz` when missing).
FUZZ_SECONDS ?= 30
test-fuzz: bootstrap
	JOBS=$(JOBS) tests/fuzz/run.sh $(FUZZ_SECONDS)

# The benchmark suite (bench/all.sh): figures beside their ceilings.
bench: build
	BUILD=$(BUILD) bench/all.sh

# The closed-loop demo over three seeds: the drift figures of docs/DRIFT.md.
drift: build
	bench/drift.sh

# 120 SIGKILLs with a small cache, lagging deliveries and erases
# (bench/crash_soak.sh; `make test` runs 25 of them).
soak: build
	bench/crash_soak.sh

# ops/CONFIG.md is generated from the settings table in src/config.c.
config-doc: build
	$(BUILD)/driftrec config --markdown > ops/CONFIG.md

# A .deb (CPack): build/driftrec_VERSION_ARCH.deb
package: build
	cd $(BUILD) && cpack -G DEB

clean:
	rm -rf $(BUILD) $(SAN_BUILD) build-fuzz
