# host-shim.mk - the hosts of libheartline.so: the `heartline` CLI and the
# OpenClaw plugin package. Included by the top Makefile, which defines
# BUILD (build) and LIB ($(BUILD)/libheartline.so); run from the top.
#
#   $(BUILD)/heartline   the CLI host (host-shim/serve.c)
#   plugin-manifest      host-shim/openclaw.plugin.json from manifest.json
#   package              $(BUILD)/heartline-openclaw-$(SHIM_VERSION).tgz
#   plugin-manifest-check  fails when package.json lags manifest.json

BUILD ?= build
LIB ?= $(BUILD)/libheartline.so

# The version is manifest.json's; its first "version" key is the top one.
SHIM_VERSION := $(shell sed -n \
	's/^ *"version": *"\([^"]*\)".*/\1/p' manifest.json | head -n 1)
SHIM_PACKAGE := $(BUILD)/heartline-openclaw-$(SHIM_VERSION).tgz
SHIM_STAGE := $(BUILD)/package-stage

SHIM_CC ?= $(CC)
SHIM_CFLAGS ?= -std=c11 -Wall -Wextra -Werror $(or $(CFLAGS),-O2 -g)
SHIM_LDLIBS := -ldl -lcjson

# Node 24 and its npm: the cached Node goes first on PATH so that npm's
# `#!/usr/bin/env node` runs on it.
SHIM_NODE_ENV := . scripts/env.sh && PATH="$$(dirname "$$NODE24"):$$PATH"

.PHONY: plugin-manifest plugin-manifest-check package

$(BUILD)/heartline: host-shim/serve.c include/heartline.h
	@mkdir -p $(BUILD)
	$(SHIM_CC) $(SHIM_CFLAGS) -Iinclude -o $@ host-shim/serve.c \
		$(SHIM_LDLIBS)

host-shim/openclaw.plugin.json: manifest.json include/heartline.h \
		host-shim/gen-plugin-manifest.mjs host-shim/package.json
	$(SHIM_NODE_ENV) && node host-shim/gen-plugin-manifest.mjs

plugin-manifest: host-shim/openclaw.plugin.json

plugin-manifest-check:
	$(SHIM_NODE_ENV) && node host-shim/gen-plugin-manifest.mjs --check

# npm pack of a staging copy, so that the .so never lands in host-shim/.
$(SHIM_PACKAGE): $(LIB) host-shim/index.js host-shim/package.json \
		host-shim/openclaw.plugin.json
	rm -rf $(SHIM_STAGE) && mkdir -p $(SHIM_STAGE)/lib $(SHIM_STAGE)/out
	cp host-shim/index.js host-shim/package.json \
		host-shim/openclaw.plugin.json $(SHIM_STAGE)/
	cp $(LIB) $(SHIM_STAGE)/lib/libheartline.so
	$(SHIM_NODE_ENV) && cd $(SHIM_STAGE) && \
		npm pack --ignore-scripts --loglevel=warn \
			--pack-destination out >/dev/null
	mv $(SHIM_STAGE)/out/*.tgz $@
	rm -rf $(SHIM_STAGE)

package: $(SHIM_PACKAGE)
