# Shared rules for building eBPF objects: every *.bpf.c in the including directory
# becomes $(OUT)/*.bpf.o. The includer sets OUT (and may add EXTRA_CFLAGS, DEPS, and
# CFLAGS_<name> for <name>.bpf.c alone).
CLANG ?= clang
ARCH_INC := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I$(ARCH_INC) $(EXTRA_CFLAGS)

SRCS := $(wildcard *.bpf.c)
OBJS := $(patsubst %.bpf.c,$(OUT)/%.bpf.o,$(SRCS))

all: $(OBJS)

$(OUT)/%.bpf.o: %.bpf.c $(DEPS) Makefile
	@mkdir -p $(OUT)
	$(CLANG) $(BPF_CFLAGS) $(CFLAGS_$*) -c $< -o $@

clean:
	rm -f $(OBJS)

.PHONY: all clean
