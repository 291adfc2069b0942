# tests/fuzz/fuzz.mk - included by the top Makefile.
#
# fuzz: builds the libFuzzer targets of the journal scanner and of the
#       gateway frame scan with ASan and UBSan and runs each for
#       FUZZ_SECONDS on a copy of its committed corpus, so new inputs and
#       crash files land under $(BUILD)/fuzz, not in the tree. A crash or
#       a broken invariant makes it exit non-zero.

BUILD        ?= build
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

$(FUZZ_DIR)/fuzz_journal: tests/fuzz/fuzz_journal.c tests/fuzz/ensure.h \
		plugin/journal.c plugin/journal.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Iplugin tests/fuzz/fuzz_journal.c \
		plugin/journal.c -o $@ $$(pkg-config --libs zlib)

$(FUZZ_DIR)/fuzz_frame: tests/fuzz/fuzz_frame.c tests/fuzz/ensure.h \
		plugin/frame.c plugin/internal.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Iplugin -Iinclude $(PKG_CFLAGS) \
		tests/fuzz/fuzz_frame.c plugin/frame.c -o $@ \
		$$(pkg-config --libs libcjson)

.PHONY: fuzz

fuzz: $(FUZZ_DIR)/fuzz_journal $(FUZZ_DIR)/fuzz_frame
	for t in journal frame; do \
		rm -rf $(FUZZ_DIR)/corpus-$$t && \
		mkdir -p $(FUZZ_DIR)/corpus-$$t && \
		cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus-$$t/ && \
		ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz_$$t \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_DIR)/$$t- \
			$(FUZZ_DIR)/corpus-$$t || exit 1; \
	done
