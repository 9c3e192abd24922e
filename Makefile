# msaproxy - build, test, run.
#
#   make            build build/msaproxy (installs missing Debian packages)
#   make test       everything CI runs: format check, unit tests (plain and
#                   ASan+UBSan), end-to-end suite, short fuzz pass
#   make run        demo: certificate, user, local backend, proxy on conf/
#   make asan       build build-asan/msaproxy with ASan+UBSan
#   make fuzz       longer fuzzing (FUZZ_SECONDS per target)
#   make format     reformat the tree with clang-format
#
# V=1 shows the full commands.

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral \
            -Wvla -Wimplicit-fallthrough
CFLAGS   ?= -O2 -g
override CFLAGS += -std=c17 -D_GNU_SOURCE -pthread $(WARN) -Iproxy \
            -fstack-protector-strong -fno-strict-aliasing
LDLIBS   := -lssl -lcrypto -luring -lyaml -lcrypt -lpthread
ALLOC    ?= -ljemalloc
TESTLIBS := -lcmocka

SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=all

SRCS     := $(sort $(wildcard proxy/*.c proxy/auth/*.c))
LIB_SRCS := $(filter-out proxy/main.c,$(SRCS))
OBJS     := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS:= $(sort $(wildcard tests/unit/test_*.c))
UNITS    := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

ifeq ($(V),1)
Q :=
else
Q := @
endif

.DELETE_ON_ERROR:
.PHONY: all deps test unit asan asan-unit integration fuzz fuzz-short run \
        format format-check clean

all: deps $(BUILD)/msaproxy

deps:
	$(Q)scripts/install-deps.sh

$(BUILD)/libmsaproxy.a: $(OBJS)
	@echo "  AR      $@"
	$(Q)ar rcs $@ $^

$(BUILD)/msaproxy: $(BUILD)/proxy/main.o $(BUILD)/libmsaproxy.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(ALLOC)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmsaproxy.a $(LDLIBS) $(TESTLIBS)

unit: deps $(UNITS)
	$(Q)set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

# The same tree again with ASan+UBSan, without jemalloc (ASan brings its own
# allocator).
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan ALLOC= \
		CFLAGS="$(SAN_FLAGS)" build-asan/msaproxy
asan-unit:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan ALLOC= \
		CFLAGS="$(SAN_FLAGS)" unit

integration: all
	$(Q)MSAPROXY_BIN=$(CURDIR)/$(BUILD)/msaproxy scripts/pytest tests/integration

format:
	$(Q)clang-format -i $(SRCS) $(wildcard proxy/*.h proxy/auth/*.h) \
		$(wildcard tests/unit/*.c tests/fuzz/*.c bench/*.c)

format-check:
	@echo "  FORMAT  check"
	$(Q)clang-format --dry-run --Werror $(SRCS) \
		$(wildcard proxy/*.h proxy/auth/*.h) \
		$(wildcard tests/unit/*.c tests/fuzz/*.c bench/*.c)

test: deps format-check unit asan-unit integration
	@echo "make test: all passed"

run: all
	$(Q)scripts/run-demo.sh $(BUILD)/msaproxy

clean:
	rm -rf build build-*

-include $(OBJS:.o=.d) $(BUILD)/proxy/main.d
