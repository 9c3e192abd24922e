# msaproxy - build, test, run.
#
#   make            build build/msaproxy (installs missing Debian packages)
#   make test       everything CI runs: format check, unit tests (plain and
#                   ASan+UBSan), short fuzz pass, end-to-end suite (plain
#                   and ASan+UBSan)
#   make run        demo: certificate, user, local backend, proxy on conf/
#   make asan       build build-asan/msaproxy with ASan+UBSan
#   make fuzz       longer fuzzing (FUZZ_SECONDS per target)
#   make fuzz-short the short fuzz pass alone (FUZZ_SHORT_SECONDS per target)
#   make format     reformat the tree with clang-format
#   make install    install binary, man pages, systemd unit (PREFIX, DESTDIR)
#   make bench      run the bench scenarios (bench/run), write the report
#   make bench-build build the bench tools (build/bench/loadgen, hsbench,
#                   limitbench, floodgen)
#
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
LDLIBS   := -lssl -lcrypto -luring -lyaml -lcrypt -lpthread -lbpf -lelf -lz -lm \
            -lcap -lseccomp
ALLOC    ?= -ljemalloc
TESTLIBS := -lcmocka

SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=all

# proxy/<part>/*.c: the parts (docs/ARCHITECTURE.md); proxy/main.c on top.
PARTS    := smtp io limits bans config ops lib auth
SRCS     := $(sort $(wildcard proxy/*.c $(PARTS:%=proxy/%/*.c)))
LIB_SRCS := $(filter-out proxy/main.c,$(SRCS))
OBJS     := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS:= $(sort $(wildcard tests/unit/test_*.c))
UNITS    := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# libFuzzer targets, tests/fuzz/fuzz_<name>.c: clang, ASan+UBSan, linked
# straight from the modules each one tests (no jemalloc, no liburing).
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -std=c17 -D_GNU_SOURCE -iquote proxy \
                $(WARN)
FUZZ_LIBS    := -lssl -lcrypto -lyaml -lcrypt -lpthread
FUZZ_SECONDS ?= 300
FUZZ_SHORT_SECONDS ?= 20
FUZZ_TARGETS := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,\
                $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_SRCS_buf        := proxy/lib/buf.c
FUZZ_SRCS_config     := proxy/config/config.c proxy/config/config_class.c \
                        proxy/config/config_check.c \
                        proxy/config/config_schema.c \
                        proxy/config/config_value.c proxy/config/config_yaml.c \
                        proxy/lib/ipnet.c proxy/lib/log.c
FUZZ_SRCS_data_scan  := proxy/smtp/data_scan.c
FUZZ_SRCS_sasl       := proxy/smtp/sasl.c
FUZZ_SRCS_smtp       := proxy/smtp/smtp.c proxy/smtp/relay.c proxy/smtp/sasl.c \
                        proxy/lib/buf.c \
                        proxy/smtp/data_scan.c
FUZZ_SRCS_relay      := proxy/smtp/relay.c proxy/smtp/smtp.c proxy/smtp/sasl.c \
                        proxy/lib/buf.c proxy/smtp/data_scan.c
FUZZ_SRCS_smtp_reply := proxy/smtp/smtp_reply.c
FUZZ_SRCS_xtext      := proxy/smtp/xtext.c
FUZZ_SRCS_xclient    := proxy/smtp/xclient.c proxy/smtp/xtext.c \
                        proxy/lib/ipnet.c
FUZZ_SRCS_proxy_v2   := proxy/smtp/proxy_v2.c
FUZZ_SRCS_upstream   := proxy/smtp/upstream.c proxy/smtp/smtp_reply.c \
                        proxy/smtp/xclient.c proxy/smtp/xtext.c \
                        proxy/lib/ipnet.c
FUZZ_SRCS_blocklist_file := proxy/bans/blocklist_file.c proxy/lib/ipnet.c
# Bench tools: build/bench/NAME from bench/NAME.c plus the sources listed
# with its rule below; always optimized, same warnings.
BENCH    := $(BUILD)/bench/loadgen $(BUILD)/bench/hsbench \
            $(BUILD)/bench/limitbench $(BUILD)/bench/floodgen
BENCH_CFLAGS := -O2 -g -std=c17 -D_GNU_SOURCE -pthread $(WARN)
BENCHLIBS:= -lssl -lcrypto -lm -lpthread

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
.PHONY: all deps test unit asan asan-unit integration integration-asan fuzz \
        fuzz-build fuzz-short run format format-check bench bench-build clean

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

# test_smtp fails chosen allocations: its own malloc() wraps the library's.
TEST_LDFLAGS_test_smtp := -Wl,--wrap=malloc

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(TEST_LDFLAGS_$*) -o $@ $< $(BUILD)/libmsaproxy.a \
		$(LDLIBS) $(TESTLIBS)

$(BUILD)/bench/loadgen: bench/loadgen_setup.c bench/loadgen_stats.c \
                        bench/loadgen.h bench/target.c bench/target.h
$(BUILD)/bench/floodgen: bench/target.c bench/target.h
# limitbench times proxy/limits/ratelimit.c itself: linked with the proxy library.
$(BUILD)/bench/limitbench: bench/limitbench.c $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(BENCH_CFLAGS) -iquote proxy -o $@ $< $(BUILD)/libmsaproxy.a \
		$(LDLIBS)
$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(BENCH_CFLAGS) -o $@ $(filter %.c,$^) $(BENCHLIBS)

bench-build: deps $(BENCH)

unit: deps $(UNITS)
	$(Q)set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

# The same tree again with ASan+UBSan, without jemalloc (ASan brings its own
# allocator).
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan ALLOC= \
		CFLAGS="$(SAN_FLAGS)" build-asan/msaproxy build-asan/msaproxyctl
asan-unit:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan ALLOC= \
		CFLAGS="$(SAN_FLAGS)" unit

integration: all $(BUILD)/tests/xdp_tool $(BUILD)/bench/loadgen
	$(Q)MSAPROXY_BIN=$(CURDIR)/$(BUILD)/msaproxy \
		XDP_TOOL=$(CURDIR)/$(BUILD)/tests/xdp_tool \
		LOADGEN_BIN=$(CURDIR)/$(BUILD)/bench/loadgen \
		scripts/pytest tests/integration

# The whole end-to-end suite again against the ASan+UBSan binary: a
# sanitizer report in its log fails the test that caused it.
integration-asan: deps asan $(BUILD)/bench/loadgen
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan ALLOC= \
		CFLAGS="$(SAN_FLAGS)" build-asan/tests/xdp_tool
	$(Q)MSAPROXY_BIN=$(CURDIR)/build-asan/msaproxy \
		XDP_TOOL=$(CURDIR)/build-asan/tests/xdp_tool \
		LOADGEN_BIN=$(CURDIR)/$(BUILD)/bench/loadgen \
		scripts/pytest tests/integration \
		--ignore=tests/integration/test_testssl.py

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
	$(Q)tests/fuzz/run.sh $(FUZZ_SHORT_SECONDS) $(FUZZ_BUILD) $(FUZZ_TARGETS)

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

test: deps format-check unit asan-unit fuzz-short integration integration-asan
	@echo "make test: all passed"

run: all
	$(Q)scripts/run-demo.sh $(BUILD)/msaproxy

clean:
	rm -rf build build-*

-include $(OBJS:.o=.d) $(BUILD)/proxy/main.d
