/*
 * fuzz_frame.c - libFuzzer target for the gateway frame scan: whatever
 * the scan accepts must be JSON that cJSON reads as an object, with the
 * same "op" unless the scan marked the frame odd, and the bytes it marks
 * as "d" must be one JSON value on their own, so that splicing them into
 * another frame keeps it valid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ensure.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *text = (const char *)data;
	cJSON *msg, *op, *d;
	hl_frame f;

	if (hl_frame_scan(text, size, &f) != 0)
		return 0;
	msg = cJSON_ParseWithLength(text, size);
	ENSURE(cJSON_IsObject(msg));
	op = cJSON_GetObjectItemCaseSensitive(msg, "op");
	if (f.op >= 0 && !f.odd)
		ENSURE(cJSON_IsNumber(op) && op->valueint == f.op);
	if (f.t != NULL)
		ENSURE(memchr(f.t, '"', f.tlen) == NULL &&
		       memchr(f.t, '\\', f.tlen) == NULL);
	if (f.d != NULL) {
		ENSURE(f.d >= text && f.d + f.dlen <= text + size);
		const char *end = NULL;

		d = cJSON_ParseWithLengthOpts(f.d, f.dlen, &end, 0);
		ENSURE(d != NULL && end == f.d + f.dlen);
		cJSON_Delete(d);
	}
	cJSON_Delete(msg);
	return 0;
}
