# tests/tests.mk - included by the top Makefile.
#
# unit:        C tests of the engine's parts, built with ASan and UBSan
# symbols:     the .so exports exactly what heartline.h declares
# fake:        the fake Discord's own self-test
# integration: the engine against the fake Discord, driven from Node
# e2e:         the real OpenClaw gateway, with and without heartline
# bench-smoke: (bench/bench.mk) the benchmarks, seconds long, still run

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
NODE_TEST := $(NODE_ENV) $$NODE24 --test --test-reporter=spec \
	--test-concurrency=1

$(BUILD)/tests/%: tests/unit/%.c tests/unit/check.h $(ASAN_OBJS)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g $(SANITIZE) -Iinclude -Iplugin $(PKG_CFLAGS) \
		$< $(ASAN_OBJS) -o $@ $(PKG_LIBS) -lpthread

.PHONY: unit symbols fake-selftest integration e2e

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 \
			$$t || fail=1; \
	done; exit $$fail

symbols: $(LIB)
	bash tests/unit/check-symbols.sh $(LIB) include/heartline.h

fake-selftest:
	$(NODE_TEST) tests/fake-discord/*.test.mjs

integration: $(LIB)
	$(NODE_TEST) tests/integration/*.test.mjs

e2e: $(LIB) package
	$(NODE_TEST) tests/e2e/*.test.mjs

test: deps
	$(MAKE) all
	$(MAKE) check unit symbols fake-selftest integration e2e bench-smoke
