/*
 * ensure.h - the invariant check the fuzz targets share: a broken one
 * prints where and what, and aborts, which libFuzzer reports as a crash
 * and keeps the input that caused it.
 */
#ifndef HL_ENSURE_H
#define HL_ENSURE_H

#include <stdio.h>
#include <stdlib.h>

#define ENSURE(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__,       \
			        __LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
