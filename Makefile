# tapearc: set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick lint tools bench man clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) scripts/link_libnbd.py
	touch $@

# Outside judges the tests use (Debian packages): simh's mtdump (SIMH .tap), hercules' tapemap
# and hetmap (AWS), tgt's tgtimg (tgt tape files). Needs root for apt-get; without it the interop
# tests are skipped, and say so.
tools:
	@{ command -v mtdump && command -v tapemap && command -v tgtimg; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq simh hercules tgt >/dev/null) \
	      || echo "note: could not install simh/hercules/tgt; their interop tests will be skipped"; \
	  else echo "note: apt-get install simh hercules tgt for the interop tests (skipped now)"; fi; }
	@{ command -v qemu-nbd && command -v nbdkit && command -v nbdinfo && command -v thin_delta \
	   && [ -e /usr/lib/python3/dist-packages/nbd.py ]; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-utils python3-libnbd \
	       libnbd-bin nbdkit thin-provisioning-tools >/dev/null) \
	      || echo "note: could not install qemu-utils/libnbd/nbdkit; the NBD tests will be skipped"; \
	  else echo "note: apt-get install qemu-utils python3-libnbd libnbd-bin nbdkit thin-provisioning-tools for the NBD tests (skipped now)"; fi; }
	@$(PY) scripts/link_libnbd.py

# Back up a sample volume to a simulated tape, list the tape, restore it, compare.
demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The test suite (hardware tests skip unless TAPEARC_TEST_TAPE names a tape device), the kill
# campaign included (tests marked slow: tests/cli/test_kill_campaign.py, 1-3 minutes).
test: $(STAMP) tools
	$(PY) -m pytest -q

# The same without the slow tests, while working on the code.
test-quick: $(STAMP) tools
	$(PY) -m pytest -q -m 'not slow'

# The linters, as CI runs them before the tests (configured in pyproject.toml): ruff's lint
# rules, ruff's format (check only: `.venv/bin/ruff format` applies it) and mypy --strict on
# tapearc and hw-sim/tapesim. Runs all three, fails when any finds something.
lint: $(STAMP)
	@rc=0; \
	$(VENV)/bin/ruff check --output-format concise . || rc=1; \
	$(VENV)/bin/ruff format --check . || rc=1; \
	$(VENV)/bin/mypy || rc=1; \
	exit $$rc

# The performance benchmark (docs/performance.md): issue 8's section (2 GiB test volumes in /tmp,
# 3 runs, beside dd, partclone and xxh128sum; apt-get install partclone xxhash, skipped without
# them) and issue 14's (a 1 TiB sparse volume; a qcow2 disk over qemu-nbd beside qemu-img convert;
# dirty-bitmap incrementals; tools installs qemu-utils and libnbd). BENCH_ARGS passes options,
# e.g. make bench BENCH_ARGS="--size 256M --runs 2 --sections issue14".
# Installs the references when root (apt-get install partclone xxhash e2fsprogs) and compiles
# tapearc's bytecode first, so no command pays for compiling its modules (PYTHONDONTWRITEBYTECODE).
bench: $(STAMP) tools
	@{ command -v partclone.ext4 && command -v xxh128sum && command -v mke2fs; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq partclone xxhash e2fsprogs >/dev/null) \
	      || echo "note: could not install partclone/xxhash/e2fsprogs; their references will be skipped"; \
	  else echo "note: apt-get install partclone xxhash e2fsprogs for the references (skipped now)"; fi; }
	$(PY) -m compileall -q tapearc hw-sim/tapesim >/dev/null
	$(PY) bench/run.py $(BENCH_ARGS)

# The man page, generated from the command line's help (tapearc/cli/manpage.py); read it with
# man -l docs/man/tapearc.1.
man: $(STAMP)
	$(PY) -m tapearc.cli.manpage docs/man/tapearc.1

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis .mypy_cache .ruff_cache
