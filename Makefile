# The README's commands. Meson + Ninja do the building; this file only
# names the jobs.
BUILD ?= build
PYTHON ?= /usr/bin/python3
PREFIX ?= /usr/local
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30

.PHONY: all deps build demo check unit e2e bench clean fuzz install

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

demo: build
	./$(BUILD)/src/cli/pysprinter run examples/hello.py -a 5

# Unit (cmocka via meson test) and end-to-end (pytest) tests; prints one
# combined "N passed, N failed, N skipped" line at the end.
check: build
	@tools/run-tests.sh $(BUILD)

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

e2e: build
	PYSPRINTER_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/e2e

# Every benchmark in bench/ (bench-*.sh), one after the other.
bench: build
	bench/run-all.sh $(BUILD)

# libFuzzer targets (fuzz/, -Dfuzz=true) built with clang + ASan + UBSan in
# their own build dir, each run for FUZZ_SECONDS (default 30).
$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false

fuzz: $(FUZZ_BUILD)/build.ninja
	@ninja -C $(FUZZ_BUILD)
	tools/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Binaries, the worker (libexec), docs and the systemd unit under PREFIX
# (DESTDIR for staging). The prefix is built in (the daemon finds the
# worker there), so this reconfigures $(BUILD) with it.
install: build
	meson configure $(BUILD) -Dprefix=$(PREFIX)
	meson install -C $(BUILD) $(if $(DESTDIR),--destdir $(DESTDIR))

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
