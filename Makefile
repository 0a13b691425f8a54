# The README's commands. Meson + Ninja do the building; this file only
# names the jobs.
BUILD ?= build
PYTHON ?= /usr/bin/python3

.PHONY: all deps build demo check unit e2e bench clean fuzz

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

bench: build
	PYSPRINTER_BUILD=$(abspath $(BUILD)) bench/run-all.sh

clean:
	rm -rf $(BUILD)
