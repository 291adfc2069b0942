# tests/fuzz/fuzz.mk - included by the top Makefile.
#
# fuzz: builds the journal scanner's libFuzzer target with ASan and UBSan
#       and runs it for FUZZ_SECONDS on a copy of the committed corpus, so
#       new inputs and crash files land under $(BUILD)/fuzz, not in the
#       tree. A crash or a broken invariant makes it exit non-zero.

BUILD        ?= build
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

$(FUZZ_DIR)/fuzz_journal: tests/fuzz/fuzz_journal.c plugin/journal.c \
		plugin/journal.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Iplugin tests/fuzz/fuzz_journal.c \
		plugin/journal.c -o $@ $$(pkg-config --libs zlib)

.PHONY: fuzz

fuzz: $(FUZZ_DIR)/fuzz_journal
	rm -rf $(FUZZ_DIR)/corpus
	mkdir -p $(FUZZ_DIR)/corpus
	cp tests/fuzz/corpus/journal/* $(FUZZ_DIR)/corpus/
	ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz_journal \
		-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus
