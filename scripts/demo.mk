# demo.mk - `make demo`: heartline inside a real OpenClaw gateway, against
# a fake Discord on this machine (no Discord token, no network). Included
# by the top Makefile, which defines NODE_ENV; run from the top.
#
#   make demo                   about 6 minutes (4 of them live)
#   DEMO_SECONDS=120 make demo  a shorter live part (no gateway restart
#                               below 220)
#   DEMO_KEEP=1 make demo       keep the run directory (logs, config)

demo: deps
	$(MAKE) all package
	$(NODE_ENV) $$NODE24 scripts/demo.mjs
