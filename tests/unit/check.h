/*
 * check.h - the few macros the C unit tests share. Each test binary runs
 * its cases in order and ends with one line "N passed, N failed"; a
 * failed check prints where and what, and the binary exits non-zero.
 */
#ifndef HL_CHECK_H
#define HL_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failed;
static int check_passed_cases;
static int check_failed_cases;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
			        __LINE__, #cond);                              \
			check_failed = 1;                                      \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *a_ = (a), *b_ = (b);                               \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {         \
			fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, \
			        __LINE__, a_ ? a_ : "(null)",                  \
			        b_ ? b_ : "(null)");                           \
			check_failed = 1;                                      \
		}                                                              \
	} while (0)

#define RUN(fn)                                                                \
	do {                                                                   \
		check_failed = 0;                                              \
		fn();                                                          \
		printf("%s %s\n", check_failed ? "FAIL" : "ok  ", #fn);        \
		if (check_failed)                                              \
			check_failed_cases++;                                  \
		else                                                           \
			check_passed_cases++;                                  \
	} while (0)

#define CHECK_DONE()                                                           \
	(printf("%d passed, %d failed\n", check_passed_cases,                  \
	        check_failed_cases),                                           \
	 check_failed_cases ? 1 : 0)

#endif
