# mk/bpf.mk - the XDP blocklist: BPF object, libbpf skeleton, and the
# user-space objects that need the skeleton.  Included by the Makefile.
#
#   $(BUILD)/bpf/blocklist.bpf.o   clang -target bpf, BTF (-g), -O2
#   $(BUILD)/bpf/blocklist.skel.h  bpftool gen skeleton (embeds the object)
#   $(BUILD)/tests/xdp_tool        CLI over proxy/bans/blocklist*.c (tests, ops)
#
# Uses from the Makefile: BUILD, Q, WARN, CFLAGS, LDLIBS.  Debian packages:
# clang, llvm, libbpf-dev, bpftool, libelf-dev, zlib1g-dev, linux-libc-dev.
# The uapi headers need the multiarch directory for <asm/types.h>; there is
# no vmlinux.h, so nothing here depends on the running kernel's BTF.

BPF_CLANG    ?= clang
BPFTOOL      ?= bpftool
BPF_MULTIARCH := $(shell $(BPF_CLANG) -print-multiarch 2>/dev/null)
BPF_CFLAGS   := -O2 -g -target bpf -std=gnu17 -Wall -Wextra -Werror \
                -Wno-unused-parameter -Ibpf \
                $(if $(BPF_MULTIARCH),-I/usr/include/$(BPF_MULTIARCH))
BPF_SRCS     := $(sort $(wildcard bpf/*.bpf.c))
BPF_OBJS     := $(BPF_SRCS:bpf/%.bpf.c=$(BUILD)/bpf/%.bpf.o)
BPF_SKELS    := $(BPF_SRCS:bpf/%.bpf.c=$(BUILD)/bpf/%.skel.h)
BPF_LIBS     := -lbpf -lelf -lz

# Keep the objects (they are intermediate to the skeleton): bpftool and
# the docs inspect them.
.SECONDARY: $(BPF_OBJS)

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h)
	@mkdir -p $(@D)
	@echo "  BPF     $<"
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c -o $@ $<

# bpftool names the skeleton after the object ("blocklist" for
# blocklist.bpf.o): struct blocklist_bpf, blocklist_bpf__open() ...
$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	@echo "  SKEL    $@"
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@.tmp
	$(Q)mv $@.tmp $@

# proxy/bans/blocklist.c (alone) includes the skeleton; a plain order dependency is
# not enough (the skeleton embeds the object, so it must be rebuilt).
$(BUILD)/proxy/bans/blocklist.o: $(BUILD)/bpf/blocklist.skel.h
$(BUILD)/proxy/bans/blocklist.o: override CFLAGS += -I$(BUILD)/bpf -Ibpf

# Test and ops tool: one binary over the library.
$(BUILD)/tests/xdp_tool: tests/xdp/xdp_tool.c $(BUILD)/libmsaproxy.a
	@mkdir -p $(@D)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -Ibpf -o $@ $< $(BUILD)/libmsaproxy.a $(LDLIBS)

.PHONY: bpf xdp-tool
bpf: $(BPF_SKELS)
xdp-tool: $(BUILD)/tests/xdp_tool
