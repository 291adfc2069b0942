/*
 * frame.c - finds the top-level fields of a gateway frame without
 * building a tree of it.
 *
 * Most of what Discord sends is dispatches that go to the host as they
 * are, with only the sequence number changed. Parsing each into cJSON
 * and printing it back cost more than everything else on the forwarding
 * path, so the net thread first scans the frame here: the scan checks
 * that the whole text is well-formed JSON (RFC 8259), and notes where
 * "op", "t", "s" and "d" are. The caller then splices the bytes of "d"
 * into the frame for the host, and parses with cJSON only the frames it
 * must read or change. No allocation and no state: any thread may call
 * it.
 */
#include <string.h>

#include "internal.h"

/* Nesting deeper than this, the frame's own level included, is refused,
 * as cJSON refuses it. */
#define MAX_DEPTH 1000

typedef struct scan {
	const char *p;
	const char *end;
	int depth;
} scan;

static void skip_ws(scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	                         *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The four hex digits of a \u escape at p, or -1. */
static int hex4(const char *p, const char *end)
{
	int v = 0, i;

	if (end - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		int h = hex_digit(p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/*
 * A \u escape after its "\u". A UTF-16 surrogate must come as a high
 * one followed by an escaped low one, as cJSON requires, so that the
 * scan and the parser that may read the frame later agree.
 */
static int skip_unicode(scan *s)
{
	int v = hex4(s->p, s->end), low;

	if (v < 0 || (v >= 0xDC00 && v <= 0xDFFF))
		return -1;
	s->p += 4;
	if (v < 0xD800 || v > 0xDBFF)
		return 0;
	if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
		return -1;
	low = hex4(s->p + 2, s->end);
	if (low < 0xDC00 || low > 0xDFFF)
		return -1;
	s->p += 6;
	return 0;
}

/* The bytes that end a plain run inside a string: quote, backslash and
 * the control characters, which JSON does not allow unescaped. */
static const unsigned char string_stop[256] = {
	1,         1,          1, 1, 1, 1, 1, 1,
	1,         1,          1, 1, 1, 1, 1, 1, /* 0x00 - 0x0f */
	1,         1,          1, 1, 1, 1, 1, 1,
	1,         1,          1, 1, 1, 1, 1, 1, /* 0x10 - 0x1f */
	['"'] = 1, ['\\'] = 1,
};

/* A string, the opening quote at s->p; sets *escaped if it has any. */
static int skip_string(scan *s, int *escaped)
{
	s->p++;
	while (s->p < s->end) {
		unsigned char c;

		while (s->end - s->p >= 4 &&
		       !(string_stop[(unsigned char)s->p[0]] |
		         string_stop[(unsigned char)s->p[1]] |
		         string_stop[(unsigned char)s->p[2]] |
		         string_stop[(unsigned char)s->p[3]]))
			s->p += 4;
		if (s->p >= s->end)
			break;
		c = (unsigned char)*s->p++;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c != '\\')
			continue;
		*escaped = 1;
		if (s->p >= s->end)
			return -1;
		c = (unsigned char)*s->p++;
		if (c == 'u') {
			if (skip_unicode(s) != 0)
				return -1;
		} else if (c == '\0' || strchr("\"\\/bfnrt", c) == NULL) {
			return -1;
		}
	}
	return -1;
}

static int skip_digits(scan *s)
{
	const char *start = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > start ? 0 : -1;
}

/* cJSON reads a number through a 64-byte buffer and refuses a longer
 * one; so does the scan, so that the two agree on every frame. */
#define MAX_NUMBER_LEN 63

static int skip_number(scan *s)
{
	const char *start = s->p;

	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (skip_digits(s) != 0)
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (skip_digits(s) != 0)
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (skip_digits(s) != 0)
			return -1;
	}
	return s->p - start <= MAX_NUMBER_LEN ? 0 : -1;
}

static int skip_word(scan *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int skip_value(scan *s);

/* An array or an object, the opening bracket at s->p. */
static int skip_container(scan *s)
{
	char close = *s->p == '{' ? '}' : ']';
	int escaped = 0;

	if (++s->depth > MAX_DEPTH)
		return -1;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			if (s->p >= s->end || *s->p != '"' ||
			    skip_string(s, &escaped) != 0)
				return -1;
			skip_ws(s);
			if (s->p >= s->end || *s->p++ != ':')
				return -1;
		}
		if (skip_value(s) != 0)
			return -1;
		skip_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == close) {
			s->p++;
			s->depth--;
			return 0;
		}
		if (*s->p++ != ',')
			return -1;
		skip_ws(s);
	}
}

/* Any value, with the white space before it. */
static int skip_value(scan *s)
{
	int escaped = 0;

	skip_ws(s);
	if (s->p >= s->end)
		return -1;
	switch (*s->p) {
	case '"':
		return skip_string(s, &escaped);
	case '{':
	case '[':
		return skip_container(s);
	case 't':
		return skip_word(s, "true");
	case 'f':
		return skip_word(s, "false");
	case 'n':
		return skip_word(s, "null");
	default:
		return skip_number(s);
	}
}

/* A non-negative integer of up to 18 digits, else -1. */
static int64_t small_int(const char *p, size_t n)
{
	int64_t v = 0;
	size_t i;

	if (n == 0 || n > 18)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static int key_is(const char *key, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(key, name, n) == 0;
}

enum { SEEN_OP = 1, SEEN_T = 2, SEEN_S = 4, SEEN_D = 8 };

/* Notes one top-level member; of a repeated key the first counts. */
static void note_member(hl_frame *f, const char *key, size_t klen,
                        const char *v, size_t vlen, int escaped)
{
	int null = key_is(v, vlen, "null");

	if (key_is(key, klen, "op") && !(f->seen & SEEN_OP)) {
		int64_t op = small_int(v, vlen);

		f->seen |= SEEN_OP;
		f->op = op >= 0 && op < 256 ? (int)op : HL_FRAME_ODD;
	} else if (key_is(key, klen, "t") && !(f->seen & SEEN_T)) {
		f->seen |= SEEN_T;
		if (*v == '"' && !escaped) {
			f->t = v + 1;
			f->tlen = vlen - 2;
		} else if (!null) {
			f->odd = 1;
		}
	} else if (key_is(key, klen, "s") && !(f->seen & SEEN_S)) {
		f->seen |= SEEN_S;
		f->s = null ? HL_FRAME_NONE : small_int(v, vlen);
		if (f->s < 0 && !null)
			f->s = HL_FRAME_ODD;
	} else if (key_is(key, klen, "d") && !(f->seen & SEEN_D)) {
		f->seen |= SEEN_D;
		f->d = v;
		f->dlen = vlen;
	}
}

int hl_frame_scan(const char *text, size_t len, hl_frame *f)
{
	scan s = { text, text + len, 1 }; /* the frame is the first level */

	memset(f, 0, sizeof(*f));
	f->op = HL_FRAME_NONE;
	f->s = HL_FRAME_NONE;
	skip_ws(&s);
	if (s.p >= s.end || *s.p++ != '{')
		return -1;
	skip_ws(&s);
	if (s.p < s.end && *s.p == '}') {
		s.p++;
		goto tail;
	}
	for (;;) {
		const char *key, *key_end, *v;
		int kesc = 0, vesc = 0;

		if (s.p >= s.end || *s.p != '"')
			return -1;
		key = s.p + 1;
		if (skip_string(&s, &kesc) != 0)
			return -1;
		key_end = s.p - 1;
		skip_ws(&s);
		if (s.p >= s.end || *s.p++ != ':')
			return -1;
		skip_ws(&s);
		v = s.p;
		if (s.p < s.end && *s.p == '"') {
			if (skip_string(&s, &vesc) != 0)
				return -1;
		} else if (skip_value(&s) != 0) {
			return -1;
		}
		if (kesc)
			f->odd = 1; /* it could spell any of the four */
		else
			note_member(f, key, (size_t)(key_end - key), v,
			            (size_t)(s.p - v), vesc);
		skip_ws(&s);
		if (s.p >= s.end)
			return -1;
		if (*s.p == '}') {
			s.p++;
			break;
		}
		if (*s.p++ != ',')
			return -1;
		skip_ws(&s);
	}
tail:
	skip_ws(&s);
	return s.p == s.end ? 0 : -1;
}
