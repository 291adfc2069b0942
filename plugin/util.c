/*
 * util.c - clocks, randomness, token hashing and a growable buffer.
 *
 * Called from every engine thread; nothing here keeps shared state except
 * the per-thread random generator.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "internal.h"

int64_t hl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hl_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*, seeded per thread from the OS; good enough for jitter. */
double hl_random(void)
{
	static _Thread_local uint64_t state;

	if (state == 0) {
		if (RAND_bytes((unsigned char *)&state, sizeof(state)) != 1 ||
		    state == 0)
			state = (uint64_t)hl_mono_ms() | 1;
	}
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return (double)((state * 2685821657736338717ULL) >> 11) /
	       (double)(1ULL << 53);
}

/* SHA-256(token) in hex: keys what is kept on disk for a bot. */
void hl_token_key(const char *token, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The first 4 bytes of SHA-256(token) in hex: names a bot in logs. */
void hl_token_hash(const char *token, char out[9])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL);
	snprintf(out, 9, "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
}

void hl_random_hex(char *out, size_t nbytes)
{
	unsigned char raw[64];
	size_t i;

	if (nbytes > sizeof(raw))
		nbytes = sizeof(raw);
	if (RAND_bytes(raw, (int)nbytes) != 1) {
		for (i = 0; i < nbytes; i++)
			raw[i] = (unsigned char)(hl_random() * 256);
	}
	for (i = 0; i < nbytes; i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	out[2 * nbytes] = '\0';
}

int hl_buf_append(hl_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *data;

		while (cap < b->len + n + 1)
			cap *= 2;
		data = realloc(b->data, cap);
		if (data == NULL)
			return -1;
		b->data = data;
		b->cap = cap;
	}
	if (n && p)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int hl_buf_appendf(hl_buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return hl_buf_append(b, small, (size_t)n);

	if (hl_buf_append(b, NULL, (size_t)n) != 0)
		return -1;
	b->len -= (size_t)n;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void hl_buf_free(hl_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
