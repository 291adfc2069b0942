# bench/bench.mk - included by the top Makefile.
#
#   make bench        heartline against @discordjs/ws (simple and worker
#                     strategy) and OpenClaw's own gateway client, on the
#                     fake Discord; report in bench/results/ (latest.md,
#                     latest.json, heartbeat-lateness-N.png). ~25 minutes.
#   make bench-smoke  the same code with a few bots and short phases, in
#                     under a minute; fails if a contender does not run.
#                     Its report goes to build/bench-smoke/.
#
# The bench's own npm packages (bench/package.json) are installed into
# bench/node_modules once, and again when package.json or the lockfile
# changes.

BENCH_STAMP := bench/node_modules/.bench-stamp

$(BENCH_STAMP): bench/package.json $(wildcard bench/package-lock.json)
	@echo "bench: installing bench/package.json's packages"
	$(NODE_ENV) cd bench && PATH="$$(dirname "$$NODE24"):$$PATH" \
		npm install --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: bench-smoke

bench: deps $(LIB) $(BENCH_STAMP)
	$(NODE_ENV) $$NODE24 bench/run.mjs

bench-smoke: deps $(LIB) $(BENCH_STAMP)
	$(NODE_ENV) $$NODE24 bench/run.mjs --smoke
