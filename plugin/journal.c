/*
 * journal.c - the reply journal on disk: encoding records, scanning a
 * possibly damaged image, appending, and the crash-safe rewrite.
 *
 * Disk thread only; nothing here locks. The only library used is zlib,
 * for CRC-32, so that the scanner builds on its own for fuzzing.
 *
 * The file is a sequence of records. Each is a 16-byte header and a
 * payload, every integer little-endian:
 *
 *   "HLJ1"  u32 type  u32 payload length  u32 CRC-32  payload
 *
 * The CRC-32 (zlib's) covers the type, the length and the payload. The
 * payload is at most HL_JOURNAL_MAX_PAYLOAD bytes and must parse exactly:
 *
 *   type 1, entry  u64 id, i64 created_ms, then six fields, each a u32
 *                  length and its bytes: nonce, key, method, path,
 *                  content_type, body
 *   type 2, done   u64 id of an entry that Discord now has
 *   type 3, mark   u64 highest id handed out so far; a rewrite puts it
 *                  first, so ids stay unique once delivered entries go
 *
 * An entry's nonce is 1..25 bytes, its key 64 hex digits, its method 1..7
 * visible characters, its path not empty, and no string holds a NUL.
 * Entry and done ids are never 0.
 *
 * A scan never stops at damage: it skips ahead to the next "HLJ1" that
 * begins a valid record and carries on, so a flipped bit costs the one
 * record it is in, and a torn tail is one damaged stretch at the end.
 * Appends go at the end of the last good record; a failed one is cut
 * back off the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "journal.h"

#define MAGIC "HLJ1"
#define HDR_LEN 16
#define ID_REC_LEN (HDR_LEN + 8)

#define REC_ENTRY 1
#define REC_DONE 2
#define REC_MARK 3

enum { F_NONCE, F_KEY, F_METHOD, F_PATH, F_CTYPE, F_BODY, NFIELDS };

/* id and created_ms, then a length for each field. */
#define ENTRY_FIXED (16 + 4 * NFIELDS)

/* A rewrite is worth it once this much of the file is dead, and more of
 * it is dead than alive: its cost then stays below what was appended. */
#define COMPACT_MIN ((int64_t)32 << 10)

#define COPY_CHUNK (64 << 10)

/* The fields of an entry, pointing into a payload or into an hl_jentry. */
struct fields {
	const unsigned char *p[NFIELDS];
	size_t len[NFIELDS];
};

/* A record that passed every check. */
struct rec {
	uint32_t type;
	uint64_t id;
	int64_t created_ms;
	struct fields f; /* entries only */
};

/* Where a pending entry's record lies in the file. */
struct live {
	uint64_t id;
	int64_t off;
	int64_t len;
};

struct hl_journal {
	char *path;         /* DIR/journal */
	char *tmp;          /* DIR/journal.tmp */
	int fd;             /* the journal, read-write */
	int dirfd;          /* DIR, synced after a rename */
	int lockfd;         /* DIR/lock, flock'd while the journal is open */
	int64_t size;       /* where the next record goes */
	int64_t keep;       /* bytes of the mark and the pending entries */
	int64_t retry_dead; /* dead bytes needed before the next rewrite */
	uint64_t last_id;   /* highest id handed out or seen */
	struct live *live;  /* pending entries, in id order */
	size_t nlive;
	size_t cap;
};

/* ---- byte packing ------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void put_u64(unsigned char *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Folds n bytes into a running CRC-32. zlib treats a NULL buffer as a
 * request for the initial value, so empty pieces are left out. */
static uint32_t crc_add(uint32_t crc, const unsigned char *p, size_t n)
{
	if (n == 0)
		return crc;
	return (uint32_t)crc32(crc, p, (uInt)n);
}

static void put_header(unsigned char *h, uint32_t type, uint32_t len)
{
	memcpy(h, MAGIC, 4);
	put_u32(h + 4, type);
	put_u32(h + 8, len);
	put_u32(h + 12, 0);
}

/* A done or mark record: header and an id. */
static void id_record(unsigned char rec[ID_REC_LEN], uint32_t type, uint64_t id)
{
	uint32_t crc;

	put_header(rec, type, 8);
	put_u64(rec + HDR_LEN, id);
	crc = crc_add(0, rec + 4, 8);
	crc = crc_add(crc, rec + HDR_LEN, 8);
	put_u32(rec + 12, crc);
}

/* ---- entries ------------------------------------------------------ */

static int is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

/* The rules every entry keeps, checked on write and on scan alike. */
static int fields_ok(const struct fields *f)
{
	size_t i;
	int k;

	if (f->len[F_NONCE] < 1 || f->len[F_NONCE] > 25)
		return 0;
	if (f->len[F_KEY] != 64 || f->len[F_METHOD] < 1 ||
	    f->len[F_METHOD] > 7 || f->len[F_PATH] < 1)
		return 0;

	for (k = F_NONCE; k <= F_CTYPE; k++) {
		if (memchr(f->p[k], '\0', f->len[k]) != NULL)
			return 0;
	}
	for (i = 0; i < 64; i++) {
		if (!is_hex(f->p[F_KEY][i]))
			return 0;
	}
	for (i = 0; i < f->len[F_METHOD]; i++) {
		if (f->p[F_METHOD][i] < 0x21 || f->p[F_METHOD][i] > 0x7e)
			return 0;
	}
	return 1;
}

/* Points f at the fields of e and checks them; *payload gets the size
 * of the entry's payload. */
static int entry_fields(const hl_jentry *e, struct fields *f, size_t *payload)
{
	const char *ctype = e->content_type ? e->content_type : "";
	uint64_t total = ENTRY_FIXED;
	int k;

	if (e->path == NULL || (e->body == NULL && e->body_len > 0))
		return -EINVAL;

	f->p[F_NONCE] = (const unsigned char *)e->nonce;
	f->len[F_NONCE] = strnlen(e->nonce, sizeof(e->nonce));
	f->p[F_KEY] = (const unsigned char *)e->key;
	f->len[F_KEY] = strnlen(e->key, sizeof(e->key));
	f->p[F_METHOD] = (const unsigned char *)e->method;
	f->len[F_METHOD] = strnlen(e->method, sizeof(e->method));
	f->p[F_PATH] = (const unsigned char *)e->path;
	f->len[F_PATH] = strlen(e->path);
	f->p[F_CTYPE] = (const unsigned char *)ctype;
	f->len[F_CTYPE] = strlen(ctype);
	f->p[F_BODY] = e->body;
	f->len[F_BODY] = e->body_len;
	if (!fields_ok(f))
		return -EINVAL;

	for (k = 0; k < NFIELDS; k++) {
		if (f->len[k] > HL_JOURNAL_MAX_PAYLOAD)
			return -EMSGSIZE;
		total += f->len[k];
	}
	if (total > HL_JOURNAL_MAX_PAYLOAD)
		return -EMSGSIZE;
	*payload = (size_t)total;
	return 0;
}

/*
 * Encodes e as an entry record with the given id, all but the body bytes,
 * which follow the returned head in the record. The CRC in the head
 * already covers the body, so a large body is written without a copy.
 */
static int encode_head(const hl_jentry *e, uint64_t id, unsigned char **out,
                       size_t *outlen)
{
	struct fields f;
	unsigned char *head, *q;
	size_t payload, headlen;
	uint32_t crc;
	int rc, k;

	rc = entry_fields(e, &f, &payload);
	if (rc != 0)
		return rc;
	headlen = HDR_LEN + payload - f.len[F_BODY];
	head = malloc(headlen);
	if (head == NULL)
		return -ENOMEM;

	put_header(head, REC_ENTRY, (uint32_t)payload);
	q = head + HDR_LEN;
	put_u64(q, id);
	put_u64(q + 8, (uint64_t)e->created_ms);
	q += 16;
	for (k = 0; k < NFIELDS; k++) {
		put_u32(q, (uint32_t)f.len[k]);
		q += 4;
		if (k != F_BODY && f.len[k] > 0) {
			memcpy(q, f.p[k], f.len[k]);
			q += f.len[k];
		}
	}

	crc = crc_add(0, head + 4, 8);
	crc = crc_add(crc, head + HDR_LEN, headlen - HDR_LEN);
	crc = crc_add(crc, f.p[F_BODY], f.len[F_BODY]);
	put_u32(head + 12, crc);
	*out = head;
	*outlen = headlen;
	return 0;
}

int hl_jentry_encode(const hl_jentry *e, uint64_t id, unsigned char **out,
                     size_t *outlen)
{
	unsigned char *head, *rec;
	size_t headlen;
	int rc;

	rc = encode_head(e, id, &head, &headlen);
	if (rc != 0)
		return rc;
	rec = realloc(head, headlen + e->body_len);
	if (rec == NULL) {
		free(head);
		return -ENOMEM;
	}
	if (e->body_len > 0)
		memcpy(rec + headlen, e->body, e->body_len);
	*out = rec;
	*outlen = headlen + e->body_len;
	return 0;
}

void hl_jentry_free(hl_jentry *e)
{
	if (e == NULL)
		return;
	free(e->path);
	free(e->content_type);
	free(e->body);
	free(e);
}

/* A NUL-terminated copy of n bytes. */
static void *dup_bytes(const unsigned char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static hl_jentry *entry_new(const struct rec *r)
{
	const struct fields *f = &r->f;
	hl_jentry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->id = r->id;
	e->created_ms = r->created_ms;
	memcpy(e->nonce, f->p[F_NONCE], f->len[F_NONCE]);
	memcpy(e->key, f->p[F_KEY], f->len[F_KEY]);
	memcpy(e->method, f->p[F_METHOD], f->len[F_METHOD]);

	e->path = dup_bytes(f->p[F_PATH], f->len[F_PATH]);
	e->content_type = dup_bytes(f->p[F_CTYPE], f->len[F_CTYPE]);
	e->body = dup_bytes(f->p[F_BODY], f->len[F_BODY]);
	e->body_len = f->len[F_BODY];
	if (e->path == NULL || e->content_type == NULL || e->body == NULL) {
		hl_jentry_free(e);
		return NULL;
	}
	return e;
}

/* ---- parsing ------------------------------------------------------ */

static int parse_entry(const unsigned char *pl, size_t len, struct rec *r)
{
	size_t off = 16, n;
	int k;

	if (len < ENTRY_FIXED)
		return 0;
	r->id = get_u64(pl);
	r->created_ms = (int64_t)get_u64(pl + 8);

	for (k = 0; k < NFIELDS; k++) {
		if (len - off < 4)
			return 0;
		n = get_u32(pl + off);
		off += 4;
		if (n > len - off)
			return 0;
		r->f.p[k] = pl + off;
		r->f.len[k] = n;
		off += n;
	}
	return off == len && r->id != 0 && fields_ok(&r->f);
}

/* The length of the valid record at p, or 0 when none begins there. */
static size_t parse_record(const unsigned char *p, size_t avail, struct rec *r)
{
	const unsigned char *pl = p + HDR_LEN;
	uint32_t len, crc;

	if (avail < HDR_LEN || memcmp(p, MAGIC, 4) != 0)
		return 0;
	r->type = get_u32(p + 4);
	len = get_u32(p + 8);
	if (len > HL_JOURNAL_MAX_PAYLOAD || len > avail - HDR_LEN)
		return 0;
	crc = crc_add(0, p + 4, 8);
	crc = crc_add(crc, pl, len);
	if (crc != get_u32(p + 12))
		return 0;

	switch (r->type) {
	case REC_ENTRY:
		if (!parse_entry(pl, len, r))
			return 0;
		break;
	case REC_DONE:
	case REC_MARK:
		if (len != 8)
			return 0;
		r->id = get_u64(pl);
		if (r->type == REC_DONE && r->id == 0)
			return 0;
		break;
	default:
		return 0;
	}
	return HDR_LEN + len;
}

/* ---- scanning ----------------------------------------------------- */

/* The entries met so far, in order of appearance, and a hash of their
 * ids. A delivered entry stays as a NULL so a later copy is not taken. */
struct seen {
	hl_jentry **list;
	uint64_t *ids;
	size_t n, cap;
	size_t *slots; /* index + 1 into list; 0 is empty */
	size_t nslots; /* a power of two, at least twice n */
};

static size_t slot_of(const struct seen *s, uint64_t id)
{
	uint64_t h = id * 0x9e3779b97f4a7c15ull;

	return (size_t)(h ^ (h >> 32)) & (s->nslots - 1);
}

/* The index of id in s->list, or -1. */
static long seen_find(const struct seen *s, uint64_t id)
{
	size_t i;

	if (s->nslots == 0)
		return -1;
	for (i = slot_of(s, id); s->slots[i] != 0;
	     i = (i + 1) & (s->nslots - 1)) {
		if (s->ids[s->slots[i] - 1] == id)
			return (long)(s->slots[i] - 1);
	}
	return -1;
}

static int seen_grow(struct seen *s)
{
	size_t cap = s->cap ? s->cap * 2 : 16, i, k;
	hl_jentry **list;
	uint64_t *ids;
	size_t *slots;

	list = realloc(s->list, cap * sizeof(*list));
	if (list == NULL)
		return -ENOMEM;
	s->list = list;
	ids = realloc(s->ids, cap * sizeof(*ids));
	if (ids == NULL)
		return -ENOMEM;
	s->ids = ids;
	slots = calloc(cap * 2, sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;

	free(s->slots);
	s->slots = slots;
	s->nslots = cap * 2;
	s->cap = cap;
	for (k = 0; k < s->n; k++) {
		for (i = slot_of(s, s->ids[k]); slots[i] != 0;
		     i = (i + 1) & (s->nslots - 1))
			;
		slots[i] = k + 1;
	}
	return 0;
}

static int seen_add(struct seen *s, uint64_t id, hl_jentry *e)
{
	size_t i;

	if (s->n == s->cap && seen_grow(s) != 0)
		return -ENOMEM;
	s->list[s->n] = e;
	s->ids[s->n] = id;
	for (i = slot_of(s, id); s->slots[i] != 0;
	     i = (i + 1) & (s->nslots - 1))
		;
	s->slots[i] = ++s->n;
	return 0;
}

static void seen_free(struct seen *s, int entries_too)
{
	size_t i;

	if (entries_too) {
		for (i = 0; i < s->n; i++)
			hl_jentry_free(s->list[i]);
	}
	free(s->list);
	free(s->ids);
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

/* Applies one valid record: a new entry, or a delivery. */
static int apply(struct seen *s, const struct rec *r)
{
	hl_jentry *e;
	long i;

	if (r->type == REC_MARK)
		return 0;
	i = seen_find(s, r->id);

	if (r->type == REC_DONE) {
		if (i >= 0) {
			hl_jentry_free(s->list[i]);
			s->list[i] = NULL;
		}
		return 0;
	}

	if (i >= 0)
		return 0; /* a duplicate id: the first one stands */
	e = entry_new(r);
	if (e == NULL)
		return -ENOMEM;
	if (seen_add(s, r->id, e) != 0) {
		hl_jentry_free(e);
		return -ENOMEM;
	}
	return 0;
}

static int by_id(const void *a, const void *b)
{
	uint64_t x = (*(hl_jentry *const *)a)->id;
	uint64_t y = (*(hl_jentry *const *)b)->id;

	return x < y ? -1 : x > y;
}

/* Moves the entries still pending into out, in id order. */
static int collect(struct seen *s, hl_jscan *out)
{
	size_t i, n = 0;

	for (i = 0; i < s->n; i++)
		n += s->list[i] != NULL;
	if (n == 0)
		return 0;
	out->pending = malloc(n * sizeof(*out->pending));
	if (out->pending == NULL)
		return -ENOMEM;

	for (i = 0; i < s->n; i++) {
		if (s->list[i] != NULL)
			out->pending[out->npending++] = s->list[i];
		s->list[i] = NULL;
	}
	qsort(out->pending, n, sizeof(*out->pending), by_id);
	return 0;
}

int hl_journal_scan(const unsigned char *data, size_t len, hl_jscan *out)
{
	struct seen s = { 0 };
	int in_damage = 0, rc = 0;
	size_t pos = 0, n;
	struct rec r;

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		n = parse_record(data + pos, len - pos, &r);
		if (n == 0) {
			const unsigned char *next;

			/* Damage: skip to the next magic and try again. */
			out->damaged += !in_damage;
			in_damage = 1;
			next = memmem(data + pos + 1, len - pos - 1, MAGIC, 4);
			n = next ? (size_t)(next - data) - pos : len - pos;
			out->bad_bytes += n;
			pos += n;
			continue;
		}

		in_damage = 0;
		if (r.id > out->max_id)
			out->max_id = r.id;
		rc = apply(&s, &r);
		if (rc != 0)
			goto fail;
		pos += n;
	}

	rc = collect(&s, out);
	if (rc != 0)
		goto fail;
	seen_free(&s, 0);
	return 0;

fail:
	seen_free(&s, 1);
	memset(out, 0, sizeof(*out));
	return rc;
}

void hl_jscan_free(hl_jscan *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->npending; i++)
		hl_jentry_free(s->pending[i]);
	free(s->pending);
	memset(s, 0, sizeof(*s));
}

/* ---- files -------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n, int64_t off)
{
	const unsigned char *p = buf;
	ssize_t w;

	while (n > 0) {
		w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

/* Writes e as an entry record with the given id at off of fd. */
static int write_entry(int fd, int64_t off, const hl_jentry *e, uint64_t id,
                       int64_t *len)
{
	unsigned char *head;
	size_t headlen;
	int rc;

	rc = encode_head(e, id, &head, &headlen);
	if (rc != 0)
		return rc;

	rc = write_all(fd, head, headlen, off);
	if (rc == 0 && e->body_len > 0)
		rc = write_all(fd, e->body, e->body_len,
		               off + (int64_t)headlen);
	free(head);
	*len = (int64_t)(headlen + e->body_len);
	return rc;
}

static int copy_range(int from, int64_t off, int64_t len, int to, int64_t toff)
{
	unsigned char *buf = malloc(COPY_CHUNK);
	ssize_t r;
	int rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	while (len > 0) {
		r = pread(from, buf,
		          len < COPY_CHUNK ? (size_t)len : COPY_CHUNK,
		          (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			break;
		}
		rc = write_all(to, buf, (size_t)r, toff);
		if (rc != 0)
			break;
		off += r;
		toff += r;
		len -= r;
	}
	free(buf);
	return rc;
}

/* Reads the whole file at path; a missing file reads as empty. */
static int read_file(const char *path, unsigned char **out, size_t *outlen)
{
	unsigned char *buf = NULL;
	size_t len = 0, size;
	struct stat st;
	ssize_t r;
	int fd, rc = 0;

	*out = NULL;
	*outlen = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}

	size = (size_t)st.st_size;
	buf = malloc(size ? size : 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (len < size) {
		r = read(fd, buf + len, size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	*out = buf;
	*outlen = len;
	buf = NULL;

out:
	free(buf);
	close(fd);
	return rc;
}

/* Creates dir and its parents as 0700; tightens an existing dir to 0700. */
static int state_dir(const char *dir)
{
	struct stat st;
	char *p, *s;
	int rc = 0;

	p = strdup(dir);
	if (p == NULL)
		return -ENOMEM;
	for (s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			rc = -errno;
			goto out;
		}
		*s = '/';
	}
	if (mkdir(p, 0700) != 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}

	if (stat(p, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	else if ((st.st_mode & 077) != 0 && chmod(p, 0700) != 0)
		rc = -errno;

out:
	free(p);
	return rc;
}

/*
 * Writes the mark and the pending entries to DIR/journal.tmp, syncs it,
 * renames it over DIR/journal and syncs DIR. The entries are src when
 * given (on open), else copied from the current file. A failure before
 * the rename changes nothing; after it, the journal is the new file.
 */
static int rewrite(hl_journal *j, hl_jentry *const *src, size_t nsrc)
{
	size_t n = src ? nsrc : j->nlive, i;
	unsigned char mark[ID_REC_LEN];
	struct live *nl;
	int64_t off = 0, len;
	int fd = -1, rc;

	nl = calloc(n ? n : 1, sizeof(*nl));
	if (nl == NULL)
		return -ENOMEM;
	if (unlink(j->tmp) != 0 && errno != ENOENT) {
		rc = -errno;
		goto fail;
	}
	fd = open(j->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || fchmod(fd, 0600) != 0) {
		rc = -errno;
		goto fail;
	}

	if (j->last_id > 0) {
		id_record(mark, REC_MARK, j->last_id);
		rc = write_all(fd, mark, sizeof(mark), off);
		if (rc != 0)
			goto fail;
		off += ID_REC_LEN;
	}
	for (i = 0; i < n; i++) {
		if (src) {
			nl[i].id = src[i]->id;
			rc = write_entry(fd, off, src[i], src[i]->id, &len);
		} else {
			nl[i].id = j->live[i].id;
			len = j->live[i].len;
			rc = copy_range(j->fd, j->live[i].off, len, fd, off);
		}
		if (rc != 0)
			goto fail;
		nl[i].off = off;
		nl[i].len = len;
		off += len;
	}

	if (fsync(fd) != 0 || rename(j->tmp, j->path) != 0) {
		rc = -errno;
		goto fail;
	}

	if (j->fd >= 0)
		close(j->fd);
	free(j->live);
	j->fd = fd;
	j->live = nl;
	j->nlive = n;
	j->cap = n ? n : 1;
	j->size = j->keep = off;
	j->retry_dead = COMPACT_MIN;
	return fsync(j->dirfd) != 0 ? -errno : 0;

fail:
	if (fd >= 0) {
		close(fd);
		unlink(j->tmp);
	}
	free(nl);
	return rc;
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *s = malloc(n);

	if (s != NULL)
		snprintf(s, n, "%s/%s", dir, name);
	return s;
}

static void set_err(char *err, size_t errlen, const char *what,
                    const char *path, int rc)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-rc));
}

hl_journal *hl_journal_open(const char *dir, hl_jscan *recovered, char *err,
                            size_t errlen)
{
	unsigned char *image = NULL;
	hl_jscan scan = { 0 };
	hl_journal *j = NULL;
	size_t imagelen;
	int rc;

	if (recovered != NULL)
		memset(recovered, 0, sizeof(*recovered));
	if (dir == NULL) {
		set_err(err, errlen, "state dir", "(null)", -EINVAL);
		return NULL;
	}

	rc = state_dir(dir);
	if (rc == 0) {
		j = calloc(1, sizeof(*j));
		rc = j ? 0 : -ENOMEM;
	}
	if (rc == 0) {
		j->fd = j->dirfd = j->lockfd = -1;
		j->path = join(dir, "journal");
		j->tmp = join(dir, "journal.tmp");
		rc = j->path && j->tmp ? 0 : -ENOMEM;
	}
	if (rc == 0) {
		j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		rc = j->dirfd >= 0 ? 0 : -errno;
	}
	if (rc != 0) {
		set_err(err, errlen, "state dir", dir, rc);
		goto fail;
	}

	/* One engine per directory, in this process or another: two would
	 * overwrite each other's records. The kernel drops the lock with
	 * the process, so a crash leaves nothing to clean up. */
	j->lockfd =
	        openat(j->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lockfd < 0) {
		set_err(err, errlen, "state dir", dir, -errno);
		goto fail;
	}
	if (flock(j->lockfd, LOCK_EX | LOCK_NB) != 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen,
			         "state dir %s: in use by another engine", dir);
		goto fail;
	}

	rc = read_file(j->path, &image, &imagelen);
	if (rc == 0)
		rc = hl_journal_scan(image, imagelen, &scan);
	free(image);
	if (rc == 0) {
		j->last_id = scan.max_id;
		rc = rewrite(j, scan.pending, scan.npending);
	}
	if (rc != 0) {
		set_err(err, errlen, "journal", j->path, rc);
		goto fail;
	}

	if (recovered != NULL)
		*recovered = scan;
	else
		hl_jscan_free(&scan);
	return j;

fail:
	hl_jscan_free(&scan);
	hl_journal_close(j);
	return NULL;
}

/* ---- appending ---------------------------------------------------- */

/* Cuts a failed append back off the file. Should that fail too, the
 * next append overwrites the torn bytes, and a scan skips any left. */
static void cut_back(hl_journal *j)
{
	while (ftruncate(j->fd, (off_t)j->size) != 0 && errno == EINTR)
		;
}

int hl_journal_add(hl_journal *j, hl_jentry *e)
{
	struct live *live;
	int64_t len;
	int rc;

	if (j->last_id == UINT64_MAX)
		return -EOVERFLOW;
	if (j->nlive == j->cap) {
		live = realloc(j->live, 2 * j->cap * sizeof(*live));
		if (live == NULL)
			return -ENOMEM;
		j->live = live;
		j->cap *= 2;
	}

	rc = write_entry(j->fd, j->size, e, j->last_id + 1, &len);
	if (rc != 0) {
		cut_back(j);
		return rc;
	}

	e->id = ++j->last_id;
	j->live[j->nlive].id = e->id;
	j->live[j->nlive].off = j->size;
	j->live[j->nlive].len = len;
	j->nlive++;
	j->size += len;
	j->keep += len;
	return 0;
}

int hl_journal_sync(hl_journal *j)
{
	return fdatasync(j->fd) != 0 ? -errno : 0;
}

/* The index of id among the pending entries, or -1. */
static long find_live(const hl_journal *j, uint64_t id)
{
	size_t lo = 0, hi = j->nlive, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (j->live[mid].id == id)
			return (long)mid;
		if (j->live[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int hl_journal_compact(hl_journal *j)
{
	int rc = rewrite(j, NULL, 0);

	/* Wait for more dead bytes before trying again. */
	if (rc != 0)
		j->retry_dead = j->size - j->keep + COMPACT_MIN;
	return rc;
}

int hl_journal_done(hl_journal *j, uint64_t id)
{
	unsigned char rec[ID_REC_LEN];
	long i = find_live(j, id);
	int64_t dead;
	int rc;

	if (i < 0)
		return -ENOENT;

	id_record(rec, REC_DONE, id);
	rc = write_all(j->fd, rec, sizeof(rec), j->size);
	if (rc == 0)
		j->size += ID_REC_LEN;
	else
		cut_back(j);

	j->keep -= j->live[i].len;
	memmove(&j->live[i], &j->live[i + 1],
	        (j->nlive - (size_t)i - 1) * sizeof(*j->live));
	j->nlive--;

	dead = j->size - j->keep;
	if (rc == 0 && dead >= j->retry_dead && dead > j->keep)
		rc = hl_journal_compact(j);
	return rc;
}

size_t hl_journal_pending_count(const hl_journal *j)
{
	return j->nlive;
}

int64_t hl_journal_file_size(const hl_journal *j)
{
	return j->size;
}

void hl_journal_close(hl_journal *j)
{
	if (j == NULL)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	if (j->lockfd >= 0)
		close(j->lockfd);
	free(j->path);
	free(j->tmp);
	free(j->live);
	free(j);
}
