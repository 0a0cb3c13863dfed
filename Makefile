# bucketfs — see README.md.  make | make test | make test-asan | make fuzz | make demo |
# make deps | make install PREFIX= DESTDIR= | make uninstall | make dist
PREFIX  ?= /usr/local
MANDIR  ?= $(PREFIX)/share/man
DIST_DIR ?= .
# the version bucketfs -V prints: fs/options.c says it once
VERSION := $(shell sed -n 's/^\#define BFS_VERSION "\(.*\)"$$/\1/p' fs/options.c)
BUILD   ?= build
SAN     ?=
PKGS     = fuse3 libcurl openssl libxml-2.0 lmdb
CC      ?= cc
BIN     ?= bin
CFLAGS  ?= -g -O2
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Wall -Wextra -Werror \
	-pthread -I. $(SAN)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_LDFLAGS = $(LDFLAGS) -pthread $(SAN)

UTIL_SRC  = $(wildcard util/*.c)
S3_SRC    = $(wildcard s3/*.c)
CACHE_SRC = $(wildcard cache/*.c)
FS_SRC    = $(filter-out fs/main.c,$(wildcard fs/*.c))
LIB_SRC   = $(UTIL_SRC) $(S3_SRC) $(CACHE_SRC)
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/%.o)
FS_OBJ    = $(FS_SRC:%.c=$(BUILD)/%.o)
TOOLS     = $(patsubst tools/%.c,$(BIN)/%,$(wildcard tools/bucketfs-*.c))
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.SECONDARY:
.PHONY: all deps check-deps test unit integration test-asan test-valgrind fuzz fuzz-build demo \
	demo-stop install uninstall dist clean
all: check-deps $(BIN)/bucketfs $(TOOLS)

check-deps:
	@pkg-config --exists $(PKGS) cmocka || { echo "missing build dependencies: running make deps"; $(MAKE) deps; }

deps:
	bash tools/install-deps.sh

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BIN)/bucketfs: $(BUILD)/fs/main.o $(FS_OBJ) $(LIB_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BIN)/bucketfs-%: $(BUILD)/tools/bucketfs-%.o $(FS_OBJ) $(LIB_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# Unit tests are named after the module they test and link only what it needs.
UTIL_OBJ  = $(UTIL_SRC:%.c=$(BUILD)/%.o)
S3_OBJ    = $(S3_SRC:%.c=$(BUILD)/%.o)
CACHE_OBJ = $(CACHE_SRC:%.c=$(BUILD)/%.o)
$(BUILD)/tests/test_util_%: tests/unit/test_util_%.c $(UTIL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka
$(BUILD)/tests/test_s3_%: tests/unit/test_s3_%.c $(S3_OBJ) $(UTIL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka
$(BUILD)/tests/test_cache_%: tests/unit/test_cache_%.c $(CACHE_OBJ) $(UTIL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka
$(BUILD)/tests/test_fs_%: tests/unit/test_fs_%.c $(FS_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka

# Fuzz targets (tests/fuzz/, docs/fuzzing.md), one per parser family, linking the real
# objects. Here they get tests/fuzz/driver.c as main(), which make unit runs over each one's
# seed corpus and the inputs that once crashed; make fuzz links them with libFuzzer instead.
FUZZ_TARGETS = xml sigv4 meta record options creds
FUZZ_S3   = xml sigv4
FUZZ_FS   = meta record options creds
FUZZ_MAIN = tests/fuzz/driver.c
FUZZ_LINK =
FUZZ_BIN  = $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz_%)
$(FUZZ_S3:%=$(BUILD)/tests/fuzz_%): $(BUILD)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h \
		$(FUZZ_MAIN) $(S3_OBJ) $(UTIL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) $(FUZZ_LINK) -o $@ $(filter %.c %.o,$^) $(PKG_LIBS)
$(FUZZ_FS:%=$(BUILD)/tests/fuzz_%): $(BUILD)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h \
		$(FUZZ_MAIN) $(FS_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) $(FUZZ_LINK) -o $@ $(filter %.c %.o,$^) $(PKG_LIBS)

# The MPI job of the integration suite and bench/ (tests/mpi/scratch.c), built with mpich.
MPICC ?= mpicc
$(BUILD)/tests/mpi/scratch: tests/mpi/scratch.c
	@mkdir -p $(dir $@)
	$(MPICC) -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $<

unit: all $(UNIT_BIN) $(FUZZ_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done
	@set -e; for t in $(FUZZ_TARGETS); do echo "== $(BUILD)/tests/fuzz_$$t"; \
		$(BUILD)/tests/fuzz_$$t tests/fuzz/corpus/$$t tests/fuzz/regress/$$t; done

# The unit tests under valgrind: any invalid access, use of uninitialised memory or leak
# fails the run.
VALGRIND ?= valgrind --quiet --error-exitcode=99 --leak-check=full --show-possibly-lost=no \
	--errors-for-leak-kinds=definite,indirect
test-valgrind: all $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== valgrind $$t"; \
		BFS_VALGRIND=1 $(VALGRIND) $$t >/dev/null; done

# The S3 servers the integration suite runs on, one after the other: s3rver and a one-node
# Ceph RGW (tests/s3server/rgw.py). `make test S3_SERVER=rgw` runs one.
S3_SERVER ?= s3rver rgw
integration: all $(BUILD)/tests/mpi/scratch
	@failed=""; for s in $(S3_SERVER); do \
		echo "== integration tests on $$s"; \
		S3_SERVER=$$s BUCKETFS_BIN=$(abspath $(BIN)) \
			BFS_MPI_SCRATCH=$(abspath $(BUILD)/tests/mpi/scratch) \
			bash tests/run-integration.sh || \
			failed="$$failed $$s"; \
	done; \
	if [ -n "$$failed" ]; then echo "== integration tests failed on:$$failed"; exit 1; fi

test: unit integration

# The whole of make test with ASan and UBSan in build-asan/: the daemon aborts at the first
# finding (a leak report at exit is a non-zero status too), which fails the test that ran it.
test-asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/bin CFLAGS="-g -O1" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" test

# Each fuzz target with libFuzzer, ASan and UBSan (clang) in build-fuzz/, run for FUZZ_TIME
# seconds, one after the other, on a working copy of its seed corpus (tests/fuzz/run.sh).
FUZZ_TIME ?= 60
FUZZ_CC   ?= clang
FUZZ_SAN   = -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs $(FUZZ_CC): make deps"; exit 1; }
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) CFLAGS="-g -O1" SAN="$(FUZZ_SAN)" FUZZ_MAIN= \
		FUZZ_LINK=-fsanitize=fuzzer fuzz-build
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_TIME) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BIN)

demo: all
	bash tools/demo.sh start

demo-stop:
	bash tools/demo.sh stop

# Programs to $(PREFIX)/bin, man pages to $(MANDIR)/man1. No mount helper is needed for
# /etc/fstab: mount(8) runs mount.fuse3, which runs bucketfs from sh's default path, where
# /usr/local/bin is (docs/systemd.md).
MAN_PAGES = $(wildcard docs/man/*.1)
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BIN)/bucketfs $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man1/

# Removes the files install put there (directories stay: others may use them).
uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,bucketfs $(notdir $(TOOLS)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN_PAGES)))

# $(DIST_DIR)/bucketfs-VERSION.tar.gz: the files git tracks, under bucketfs-VERSION/.
dist:
	@test -n "$(VERSION)" || { echo "dist: no BFS_VERSION in fs/options.c" >&2; exit 1; }
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || \
		{ echo "dist: needs a git checkout (git ls-files)" >&2; exit 1; }
	@mkdir -p $(DIST_DIR)
	git ls-files -z | tar --null -T - --sort=name --owner=0 --group=0 --numeric-owner \
		--transform 's,^,bucketfs-$(VERSION)/,S' -czf $(DIST_DIR)/bucketfs-$(VERSION).tar.gz
	@echo "$(DIST_DIR)/bucketfs-$(VERSION).tar.gz"

clean:
	rm -rf build build-asan build-fuzz bin
