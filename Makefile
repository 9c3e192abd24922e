# msaproxy - build, test, run.
#
#   make            build build/msaproxy (installs missing Debian packages)
#   make check      the inner loop, a few minutes: parallel build of both
#                   trees and the fuzz targets, format check, unit tests
#                   (plain and ASan+UBSan), the parts' rules (make layers),
#                   fuzz regression inputs and seed corpus replayed (no
#                   fuzzing), end-to-end suite once on the ASan+UBSan
#                   binary without the tests marked slow
#   make test       everything CI runs (before pushing): the same build,
#                   format check, unit tests and rules, short fuzz pass
#                   (FUZZ_JOBS targets at a time), end-to-end suite with
#                   every test, plain and ASan+UBSan
#   make run        demo: certificate, user, local backend, proxy on conf/
#   make asan       build build-asan/msaproxy with ASan+UBSan
#   make fuzz       longer fuzzing (FUZZ_SECONDS per target)
#   make fuzz-short the short fuzz pass alone (FUZZ_SHORT_SECONDS per target)
#   make format     reformat the tree with clang-format
#   make install    install binary, man pages, systemd unit (PREFIX, DESTDIR)
#   make bench      run the bench scenarios (bench/run), write the report
#   make bench-build build the bench tools (build/bench/loadgen, hsbench,
#                   limitbench, floodgen, ctxbench, lockbench, lockprobe.so)
#
# check and test build with -j$(JOBS) (the CPUs; or what make -jN says)
# and run the end-to-end suite on E2E_JOBS pytest-xdist workers.
# V=1 shows the full commands.

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral \
            -Wvla -Wimplicit-fallthrough
CFLAGS   ?= -O2 -g
override CFLAGS += -std=c17 -D_GNU_SOURCE -pthread $(WARN) -iquote proxy \
            -fstack-protector-strong -fno-strict-aliasing
LDLIBS   := -lssl -lcrypto -luring -lhiredis -largon2 -lpwquality -lyaml -lcrypt -lpthread -lbpf -lelf -lz -lm \
            -lcap -lseccomp
ALLOC    ?= -ljemalloc
TESTLIBS := -lcmocka

SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=all

# proxy/<part>/*.c: the parts (docs/ARCHITECTURE.md); proxy/main.c on top.
PARTS    := smtp io limits bans config ops lib auth cluster
SRCS     := $(sort $(wildcard proxy/*.c $(PARTS:%=proxy/%/*.c)))
LIB_SRCS := $(filter-out proxy/main.c,$(SRCS))
OBJS     := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS:= $(sort $(wildcard tests/unit/test_*.c))
UNITS    := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# The DATA scan's portable 16-byte path, which an x86-64 build never
# compiles otherwise (data_scan.c takes AVX2 there): the same tests on it.
UNITS    += $(BUILD)/tests/test_data_scan_portable
# libFuzzer targets, tests/fuzz/fuzz_<name>.c: clang, ASan+UBSan, linked
# straight from the modules each one tests (no jemalloc, no liburing).
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -std=c17 -D_GNU_SOURCE -iquote proxy \
                $(WARN)
FUZZ_LIBS    := -lssl -lcrypto -lyaml -lcrypt -lpthread
FUZZ_SECONDS ?= 300
FUZZ_SHORT_SECONDS ?= 5
FUZZ_TARGETS := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,\
                $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_SRCS_buf        := proxy/lib/buf.c
FUZZ_SRCS_config     := proxy/config/config.c proxy/config/config_class.c \
                        proxy/config/config_check.c \
                        proxy/config/config_resolve.c \
                        proxy/config/config_schema.c \
                        proxy/config/config_value.c proxy/config/config_yaml.c \
                        proxy/lib/ipnet.c proxy/lib/log.c proxy/smtp/sasl.c \
                        proxy/lib/bit_names.c
FUZZ_SRCS_data_scan  := proxy/smtp/data_scan.c
FUZZ_SRCS_sasl       := proxy/smtp/sasl.c proxy/lib/bit_names.c
FUZZ_SRCS_sasl_oauth := proxy/smtp/sasl.c proxy/lib/bit_names.c
FUZZ_SRCS_smtp       := proxy/smtp/smtp.c proxy/smtp/relay.c proxy/smtp/sasl.c \
                        proxy/lib/buf.c \
                        proxy/smtp/data_scan.c proxy/lib/bit_names.c
FUZZ_SRCS_relay      := proxy/smtp/relay.c proxy/smtp/smtp.c proxy/smtp/sasl.c \
                        proxy/lib/buf.c proxy/smtp/data_scan.c \
                        proxy/lib/bit_names.c
FUZZ_SRCS_smtp_reply := proxy/smtp/smtp_reply.c
FUZZ_SRCS_xtext      := proxy/smtp/xtext.c
FUZZ_SRCS_xclient    := proxy/smtp/xclient.c proxy/smtp/xtext.c \
                        proxy/lib/ipnet.c proxy/lib/bit_names.c
FUZZ_SRCS_proxy_v2   := proxy/smtp/proxy_v2.c
FUZZ_SRCS_cluster_msg := proxy/cluster/cluster_msg.c proxy/lib/ipnet.c
FUZZ_SRCS_proxy_header := proxy/smtp/proxy_header.c
FUZZ_SRCS_upstream   := proxy/smtp/upstream.c proxy/smtp/smtp_reply.c \
                        proxy/smtp/xclient.c proxy/smtp/xtext.c \
                        proxy/lib/ipnet.c proxy/lib/bit_names.c
FUZZ_SRCS_blocklist_file := proxy/bans/blocklist_file.c proxy/lib/ipnet.c
FUZZ_SRCS_dovecot_proto := proxy/auth/dovecot_proto.c proxy/smtp/sasl.c \
                           proxy/lib/bit_names.c
FUZZ_SRCS_http_auth_proto := proxy/auth/http_auth_proto.c proxy/smtp/sasl.c \
                             proxy/lib/bit_names.c
FUZZ_SRCS_metrics_http := proxy/ops/metrics_http.c proxy/ops/status_page.c \
                          proxy/lib/timer.c proxy/lib/json.c $(FUZZ_SRCS_config)
# Bench tools: build/bench/NAME from bench/NAME.c plus the sources listed
# with its rule below; always optimized, same warnings.
BENCH    := $(BUILD)/bench/loadgen $(BUILD)/bench/hsbench \
            $(BUILD)/bench/limitbench $(BUILD)/bench/floodgen \
            $(BUILD)/bench/ctxbench $(BUILD)/bench/lockbench \
            $(BUILD)/bench/lockprobe.so
BENCH_CFLAGS := -O2 -g -std=c17 -D_GNU_SOURCE -pthread $(WARN)
BENCHLIBS:= -lssl -lcrypto -lm -lpthread

# Parallelism of check and test.  A sub-make gets -j$(JOBS) unless this
# make was given -j (then the sub-make shares its jobserver).
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PAR        = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS))
FUZZ_JOBS  ?= 2
# Three pytest workers on two cores: the end-to-end tests mostly wait
# (sockets, timers), so a third worker fills the idle CPU (the plain run
# 214 -> 146 s, the ASan run 202 -> 155 s, all passing).
E2E_JOBS   ?= 3
# pytest arguments after the suite's own, e.g. E2E_SELECT="-m 'not slow'"
# or E2E_SELECT="-k xdp".
E2E_SELECT ?=
# $(call e2e,DIR): the end-to-end suite against DIR/msaproxy and
# DIR/tests/xdp_tool, on E2E_JOBS workers.  Tests in one xdist_group run
# on one worker (--dist loadgroup).
e2e = MSAPROXY_BIN=$(CURDIR)/$(1)/msaproxy \
	XDP_TOOL=$(CURDIR)/$(1)/tests/xdp_tool \
	LOADGEN_BIN=$(CURDIR)/$(BUILD)/bench/loadgen \
	scripts/pytest -n $(E2E_JOBS) --dist loadgroup tests/integration

ifeq ($(V),1)
Q :=
else
Q := @
endif

# The XDP program, its skeleton, and the test tool (mk/bpf.mk).
.DEFAULT_GOAL := all
include mk/bpf.mk
include mk/install.mk

.DELETE_ON_ERROR:
.PHONY: all deps check test test-build unit unit-build asan asan-build \
        asan-unit integration integration-asan fuzz fuzz-build fuzz-short \
        fuzz-replay layers run format format-check bench bench-build clean \
        alerts-check browser-deps

all: deps $(BUILD)/msaproxy $(BUILD)/msaproxyctl

deps:
	$(Q)scripts/install-deps.sh

$(BUILD)/libmsaproxy.a: $(OBJS)
	@echo "  AR      $@"
	$(Q)ar rcs $@ $^

$(BUILD)/msaproxy: $(BUILD)/proxy/main.o $(BUILD)/libmsaproxy.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(ALLOC)

$(BUILD)/msaproxyctl: $(BUILD)/proxy/ctl/msaproxyctl.o
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# The version the status page shows (server_overview.c): git's description
# of the tree, or MSAPROXY_VERSION=... given to make (a release build);
# the object is rebuilt when it changes (the stamp file).
MSAPROXY_VERSION ?= $(shell git describe --always --tags --dirty 2>/dev/null || echo dev)
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(@D)
	@echo '$(MSAPROXY_VERSION)' | cmp -s - $@ || echo '$(MSAPROXY_VERSION)' > $@
$(BUILD)/proxy/ops/server_overview.o: $(BUILD)/version.stamp
$(BUILD)/proxy/ops/server_overview.o: override CFLAGS += \
	-DMSAPROXY_VERSION='"$(MSAPROXY_VERSION)"'
FORCE:

# test_smtp fails chosen allocations: its own malloc() wraps the library's.
TEST_LDFLAGS_test_smtp := -Wl,--wrap=malloc

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(TEST_LDFLAGS_$*) -o $@ $< $(BUILD)/libmsaproxy.a \
		$(LDLIBS) $(TESTLIBS)

$(BUILD)/tests/test_data_scan_portable: tests/unit/test_data_scan.c \
                                        proxy/smtp/data_scan.c \
                                        $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -DDATA_SCAN_PORTABLE -o $@ $(filter %.c,$^) \
		$(BUILD)/libmsaproxy.a $(LDLIBS) $(TESTLIBS)

$(BUILD)/bench/loadgen: bench/loadgen_setup.c bench/loadgen_stats.c \
                        bench/loadgen.h bench/target.c bench/target.h
$(BUILD)/bench/floodgen: bench/target.c bench/target.h
# limitbench times proxy/limits/ratelimit.c itself: linked with the proxy library.
$(BUILD)/bench/limitbench: bench/limitbench.c $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(BENCH_CFLAGS) -iquote proxy -o $@ $< $(BUILD)/libmsaproxy.a \
		$(LDLIBS)
# The lock-counting probe: a shared object for LD_PRELOAD (bench/lockprobe.c).
$(BUILD)/bench/lockprobe.so: bench/lockprobe.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(BENCH_CFLAGS) -fPIC -shared -o $@ $< -ldl -lgcc_s
$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(BENCH_CFLAGS) -o $@ $(filter %.c,$^) $(BENCHLIBS)

bench-build: deps $(BENCH)

unit-build: deps $(UNITS)

unit: unit-build
	$(Q)set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

# The same tree again with ASan+UBSan, without jemalloc (ASan brings its own
# allocator).
ASAN_ARGS = BUILD=build-asan ALLOC= CFLAGS="$(SAN_FLAGS)"
asan:
	$(Q)$(MAKE) --no-print-directory $(ASAN_ARGS) build-asan/msaproxy build-asan/msaproxyctl
# Everything the ASan+UBSan tree has: binaries, test tool, unit tests.
asan-build:
	$(Q)$(MAKE) --no-print-directory $(ASAN_ARGS) build-asan/msaproxy build-asan/msaproxyctl \
		build-asan/tests/xdp_tool unit-build
asan-unit:
	$(Q)$(MAKE) --no-print-directory $(ASAN_ARGS) unit

# The bench tools the end-to-end suite drives (test_bench_tools.py).
E2E_BENCH := $(BUILD)/bench/loadgen $(BUILD)/bench/ctxbench \
             $(BUILD)/bench/lockbench $(BUILD)/bench/lockprobe.so

integration: all $(BUILD)/tests/xdp_tool $(E2E_BENCH)
	$(Q)$(call e2e,$(BUILD)) $(E2E_SELECT)

# The whole end-to-end suite again against the ASan+UBSan binary: a
# sanitizer report in its log fails the test that caused it.
integration-asan: deps asan-build $(E2E_BENCH)
	$(Q)$(call e2e,build-asan) \
		--ignore=tests/integration/test_testssl.py $(E2E_SELECT)

# Everything check and test run, built at once: both trees, the unit
# tests, the tools the end-to-end suite drives, the fuzz targets.
test-build: all unit-build $(BUILD)/tests/xdp_tool $(E2E_BENCH) \
            asan-build fuzz-build browser-deps

# The inner loop.  Steps run one after the other (make -j check too), so
# the end-to-end suite never shares the CPUs with a build or a fuzzer.
check: deps
	$(Q)$(MAKE) --no-print-directory $(PAR) format-check test-build
	$(Q)$(MAKE) --no-print-directory $(PAR) -Otarget unit asan-unit fuzz-replay \
		layers alerts-check
	$(Q)$(MAKE) --no-print-directory integration-asan E2E_SELECT="-m 'not slow' $(E2E_SELECT)"
	@echo "make check: all passed (make test runs everything, as CI does)"

# The parts' one-way rules (docs/ARCHITECTURE.md): the includes each part
# may have, and no two files of proxy/ calling each other in a loop.
layers: all
	@echo "  LAYERS  check"
	$(Q)scripts/check-layers
	$(Q)scripts/call-cycles $(BUILD)

# playwright-core for the status page's browser test (tests/browser/:
# package.json and its lock; Debian's chromium is the browser, nothing is
# downloaded but the npm package).  Again only when the lock changed.
browser-deps: deps
	$(Q)cd tests/browser && [ node_modules/.package-lock.json -nt package-lock.json ] || \
		npm ci --no-audit --no-fund --ignore-scripts

# The Prometheus alert rules (contrib/prometheus/): valid, and their unit
# tests (which alert fires on which series) pass.
alerts-check: deps
	@echo "  PROMTOOL check"
	$(Q)promtool check rules contrib/prometheus/msaproxy-alerts.yml >/dev/null
	$(Q)cd contrib/prometheus && promtool test rules msaproxy-alerts.test.yml

# Benchmarks (not part of test): BENCH_ARGS="headline nginx --seconds 20".
bench: all bench-build
	$(Q)scripts/install-deps.sh --bench
	$(Q)bench/run $(BENCH_ARGS)

# One rule per fuzz target: its harness and FUZZ_SRCS_<name>.
define fuzz_rule
$(FUZZ_BUILD)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $$(FUZZ_SRCS_$(1)) \
		$$(wildcard proxy/*/*.h tests/fuzz/*.h)
	@mkdir -p $$(@D)
	@echo "  FUZZCC  $$@"
	$$(Q)$$(FUZZ_CC) $$(FUZZ_FLAGS) -o $$@ $$< $$(FUZZ_SRCS_$(1)) \
		$$(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rule,$(t))))

fuzz-build: deps $(FUZZ_BINS)

# Regression inputs, then fuzzing on a scratch copy of each seed corpus
# (tests/fuzz/run.sh); fails on any crash.
fuzz-short: fuzz-build
	$(Q)tests/fuzz/run.sh -j $(FUZZ_JOBS) $(FUZZ_SHORT_SECONDS) $(FUZZ_BUILD) \
		$(FUZZ_TARGETS)

# Regression inputs and seed corpus run once each, no fuzzing (make check).
fuzz-replay: fuzz-build
	$(Q)tests/fuzz/run.sh -j $(FUZZ_JOBS) 0 $(FUZZ_BUILD) $(FUZZ_TARGETS)

fuzz: fuzz-build
	$(Q)tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BUILD) $(FUZZ_TARGETS)

format:
	$(Q)clang-format -i $(SRCS) $(wildcard proxy/*/*.h proxy/ctl/*.c) \
		$(wildcard tests/unit/*.c tests/fuzz/*.[ch] bench/*.c bench/*.h) \
		$(wildcard bpf/*.c bpf/*.h tests/xdp/*.c)

format-check:
	@echo "  FORMAT  check"
	$(Q)clang-format --dry-run --Werror $(SRCS) \
		$(wildcard proxy/*/*.h proxy/ctl/*.c) \
		$(wildcard tests/unit/*.c tests/fuzz/*.[ch] bench/*.c bench/*.h) \
		$(wildcard bpf/*.c bpf/*.h tests/xdp/*.c)

# What CI runs (.ci/run): every test, slow ones included.  Like check, one
# step after the other; the builds and the unit tests in parallel.
test: deps
	$(Q)$(MAKE) --no-print-directory $(PAR) format-check test-build
	$(Q)$(MAKE) --no-print-directory $(PAR) -Otarget unit asan-unit layers \
		alerts-check
	$(Q)$(MAKE) --no-print-directory fuzz-short
	$(Q)$(MAKE) --no-print-directory integration
	$(Q)$(MAKE) --no-print-directory integration-asan
	@echo "make test: all passed"

run: all
	$(Q)scripts/run-demo.sh $(BUILD)/msaproxy

clean:
	rm -rf build build-*

-include $(OBJS:.o=.d) $(BUILD)/proxy/main.d
