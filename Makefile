# heartline - build, test, demo, bench and package.
#
#   make          build/libheartline.so and build/heartline
#   make deps     install what building and testing need (idempotent)
#   make test     everything under tests/, C tests under ASan and UBSan
#   make demo     the embedded demo: fake Discord, slow model, 5 bots
#   make check    style: clang-format over the C sources
#   make package  the OpenClaw plugin tarball
#   make fuzz     the journal loader and the frame scan under libFuzzer,
#                 FUZZ_SECONDS each

BUILD   ?= build
LIB     := $(BUILD)/libheartline.so
CC      ?= cc
PKGS    := libwebsockets libcjson libcurl openssl zlib
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev

SRCS    := $(wildcard plugin/*.c)
OBJS    := $(SRCS:plugin/%.c=$(BUILD)/obj/%.o)
ASAN_OBJS := $(SRCS:plugin/%.c=$(BUILD)/asan/%.o)
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer

NODE_ENV := . scripts/env.sh &&

.PHONY: all deps test unit check demo bench package clean
.SECONDARY:

all: $(LIB) $(BUILD)/heartline

$(BUILD)/obj/%.o: plugin/%.c plugin/internal.h plugin/journal.h plugin/handover.h \
		include/heartline.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden -Iinclude \
		$(PKG_CFLAGS) -c $< -o $@

# -Bsymbolic: a second copy of the library loaded beside this one (a new
# build taking over in the same process) binds its calls to itself.
# -z nodelete: a build that handed its network context over stays mapped,
# since libwebsockets keeps pointers to its constant data.
$(LIB): $(OBJS)
	$(CC) -shared -Wl,-z,defs -Wl,-Bsymbolic -Wl,-z,nodelete -o $@ $(OBJS) $(PKG_LIBS) -lpthread

# The same engine built with sanitizers, linked into the C tests.
$(BUILD)/asan/%.o: plugin/%.c plugin/internal.h plugin/journal.h plugin/handover.h \
		include/heartline.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g $(SANITIZE) -Iinclude $(PKG_CFLAGS) -c $< -o $@

include host-shim/host-shim.mk
include tests/tests.mk
include scripts/demo.mk
include tests/fuzz/fuzz.mk
include bench/bench.mk

deps:
	bash scripts/deps.sh

check:
	clang-format --dry-run --Werror plugin/*.c plugin/*.h include/*.h \
		host-shim/*.c tests/unit/*.c tests/unit/*.h

clean:
	rm -rf $(BUILD)
