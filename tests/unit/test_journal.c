/*
 * test_journal.c - the reply journal on real files under a fresh /tmp
 * directory: round trips, deliveries, torn and flipped files, garbage,
 * permissions, a full disk (RLIMIT_FSIZE in a child) and compaction.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "check.h"
#include "journal.h"

#define KEY "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static char root[64];

/* A path under the test's directory. */
static const char *at(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", root, name);
	return buf;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static unsigned char rnd_byte(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned char)((rng_state * 2685821657736338717ull) >> 56);
}

static unsigned char multipart[300];

/* The three replies most tests write: JSON, multipart with NUL bytes in
 * the body, and an edit with no body at all. */
static void sample(hl_jentry *e, int which)
{
	static const char json[] = "{\"content\":\"hello\",\"nonce\":\"n1\"}";
	size_t i;

	memset(e, 0, sizeof(*e));
	e->created_ms = 1700000000000 + which;
	snprintf(e->nonce, sizeof(e->nonce), "n%d", which + 1);
	memcpy(e->key, KEY, 64);
	if (which == 0) {
		strcpy(e->method, "POST");
		e->path = "/api/v10/channels/1/messages";
		e->content_type = "application/json";
		e->body = (unsigned char *)json;
		e->body_len = strlen(json);
	} else if (which == 1) {
		for (i = 0; i < sizeof(multipart); i++)
			multipart[i] = (unsigned char)(i * 7);
		memcpy(multipart, "--xyz\r\nContent-Disposition: form-data",
		       37);
		strcpy(e->method, "POST");
		e->path = "/api/v10/channels/2/messages";
		e->content_type = "multipart/form-data; boundary=xyz";
		e->body = multipart;
		e->body_len = sizeof(multipart);
	} else {
		strcpy(e->method, "PATCH");
		e->path = "/api/v10/channels/1/messages/99?x=1";
		e->content_type = "";
	}
}

static int same_entry(const hl_jentry *a, const hl_jentry *b)
{
	return a->id == b->id && a->created_ms == b->created_ms &&
	       strcmp(a->nonce, b->nonce) == 0 && strcmp(a->key, b->key) == 0 &&
	       strcmp(a->method, b->method) == 0 &&
	       strcmp(a->path, b->path) == 0 &&
	       strcmp(a->content_type, b->content_type) == 0 &&
	       a->body_len == b->body_len &&
	       (a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0);
}

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	size_t n;

	if (f == NULL)
		return -1;
	n = fwrite(data, 1, len, f);
	return fclose(f) == 0 && n == len ? 0 : -1;
}

static unsigned char *read_whole(const char *path, size_t *len)
{
	unsigned char *buf = NULL;
	FILE *f = fopen(path, "rb");
	long n;

	*len = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL)
			*len = fread(buf, 1, (size_t)n, f);
	}
	fclose(f);
	return buf;
}

static int64_t size_on_disk(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/*
 * Writes the three samples into a fresh DIR (named under the root) and
 * closes it. bounds[k] is where record k ends, bounds[0] = 0.
 */
static int write_three(const char *name, int64_t bounds[4])
{
	char dir[128], err[256] = "";
	hl_journal *j = hl_journal_open(at(dir, sizeof(dir), name), NULL, err,
	                                sizeof(err));
	hl_jentry e;
	int i, rc = 0;

	if (j == NULL) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	bounds[0] = hl_journal_file_size(j);
	for (i = 0; i < 3; i++) {
		sample(&e, i);
		rc |= hl_journal_add(j, &e);
		bounds[i + 1] = hl_journal_file_size(j);
	}
	rc |= hl_journal_sync(j);
	hl_journal_close(j);
	return rc;
}

/* A done record made here by hand, from the format's description. */
static void done_record(unsigned char rec[24], uint64_t id)
{
	uLong crc;
	int i;

	memcpy(rec, "HLJ1", 4);
	memcpy(rec + 4, "\2\0\0\0\10\0\0\0\0\0\0\0", 12);
	for (i = 0; i < 8; i++)
		rec[16 + i] = (unsigned char)(id >> (8 * i));
	crc = crc32(0, rec + 4, 8);
	crc = crc32(crc, rec + 16, 8);
	for (i = 0; i < 4; i++)
		rec[12 + i] = (unsigned char)(crc >> (8 * i));
}

static void round_trip(void)
{
	char dir[128], err[256] = "";
	hl_jentry e[3];
	hl_jscan got;
	hl_journal *j;
	int i;

	at(dir, sizeof(dir), "round");
	j = hl_journal_open(dir, &got, err, sizeof(err));
	CHECK(j != NULL);
	if (j == NULL)
		return;
	CHECK(got.npending == 0 && got.damaged == 0 && got.max_id == 0);
	hl_jscan_free(&got);

	for (i = 0; i < 3; i++) {
		sample(&e[i], i);
		CHECK(hl_journal_add(j, &e[i]) == 0);
		CHECK(e[i].id == (uint64_t)i + 1);
	}
	CHECK(hl_journal_sync(j) == 0);
	CHECK(hl_journal_pending_count(j) == 3);
	hl_journal_close(j);

	j = hl_journal_open(dir, &got, err, sizeof(err));
	CHECK(j != NULL);
	CHECK(got.npending == 3 && got.damaged == 0 && got.bad_bytes == 0);
	CHECK(got.max_id == 3);
	for (i = 0; i < 3 && i < (int)got.npending; i++) {
		CHECK(same_entry(got.pending[i], &e[i]));
	}
	CHECK(hl_journal_pending_count(j) == 3);
	hl_jscan_free(&got);
	hl_journal_close(j);
}

static void format_bytes(void)
{
	unsigned char *rec = NULL;
	size_t len = 0;
	uLong crc;
	hl_jentry e;

	sample(&e, 0);
	CHECK(hl_jentry_encode(&e, 0x0102030405060708ull, &rec, &len) == 0);
	if (rec == NULL)
		return;
	CHECK(len > 16 && memcmp(rec, "HLJ1\1\0\0\0", 8) == 0);
	CHECK(rec[8] + (rec[9] << 8) + ((size_t)rec[10] << 16) == len - 16);
	crc = crc32(crc32(0, rec + 4, 8), rec + 16, (uInt)(len - 16));
	CHECK(rec[12] == (crc & 0xff) && rec[15] == (crc >> 24));
	CHECK(rec[16] == 8 && rec[23] == 1);
	/* The nonce is the first field, after id and created_ms. */
	CHECK(memcmp(rec + 32, "\2\0\0\0n1", 6) == 0);
	CHECK(memcmp(rec + len - e.body_len, e.body, e.body_len) == 0);
	free(rec);
}

static void bad_entries_are_refused(void)
{
	char dir[128], err[256] = "";
	hl_journal *j;
	hl_jentry e;
	int64_t size;

	j = hl_journal_open(at(dir, sizeof(dir), "refuse"), NULL, err,
	                    sizeof(err));
	CHECK(j != NULL);
	if (j == NULL)
		return;
	size = hl_journal_file_size(j);

	sample(&e, 0);
	e.key[10] = 'g';
	CHECK(hl_journal_add(j, &e) == -EINVAL);
	sample(&e, 0);
	memset(e.nonce, 'a', sizeof(e.nonce));
	CHECK(hl_journal_add(j, &e) == -EINVAL);
	sample(&e, 0);
	e.nonce[0] = '\0';
	CHECK(hl_journal_add(j, &e) == -EINVAL);
	sample(&e, 0);
	strcpy(e.method, "PO ST");
	CHECK(hl_journal_add(j, &e) == -EINVAL);
	sample(&e, 0);
	e.path = NULL;
	CHECK(hl_journal_add(j, &e) == -EINVAL);

	CHECK(hl_journal_file_size(j) == size);
	CHECK(hl_journal_pending_count(j) == 0);
	hl_journal_close(j);
}

static void done_and_ids(void)
{
	char dir[128], err[256] = "";
	int64_t bounds[4];
	hl_journal *j;
	hl_jscan got;
	hl_jentry e;

	CHECK(write_three("done", bounds) == 0);
	at(dir, sizeof(dir), "done");
	j = hl_journal_open(dir, NULL, err, sizeof(err));
	CHECK(j != NULL);
	if (j == NULL)
		return;
	CHECK(hl_journal_done(j, 2) == 0);
	CHECK(hl_journal_done(j, 2) == -ENOENT);
	CHECK(hl_journal_done(j, 77) == -ENOENT);
	CHECK(hl_journal_pending_count(j) == 2);
	hl_journal_close(j);

	j = hl_journal_open(dir, &got, err, sizeof(err));
	CHECK(j != NULL && got.npending == 2 && got.damaged == 0);
	if (j == NULL || got.npending != 2)
		return;
	CHECK(got.pending[0]->id == 1 && got.pending[1]->id == 3);
	CHECK_STR(got.pending[1]->nonce, "n3");
	hl_jscan_free(&got);

	/* New ids follow every id the file ever held, delivered or not. */
	sample(&e, 0);
	CHECK(hl_journal_add(j, &e) == 0 && e.id == 4);
	CHECK(hl_journal_done(j, 1) == 0 && hl_journal_done(j, 3) == 0);
	CHECK(hl_journal_done(j, 4) == 0);
	hl_journal_close(j);

	j = hl_journal_open(dir, &got, err, sizeof(err));
	CHECK(j != NULL && got.npending == 0 && got.max_id == 4);
	hl_jscan_free(&got);
	hl_journal_close(j);

	/* That open dropped every entry; the id mark still stands. */
	j = hl_journal_open(dir, &got, err, sizeof(err));
	CHECK(j != NULL && got.npending == 0 && got.max_id == 4);
	hl_jscan_free(&got);
	if (j == NULL)
		return;
	CHECK(hl_journal_add(j, &e) == 0 && e.id == 5);
	hl_journal_close(j);
}

static void scan_rules(void)
{
	unsigned char *a = NULL, *b = NULL, img[4096], done[24];
	size_t alen = 0, blen = 0, n = 0;
	hl_jentry e;
	hl_jscan s;

	CHECK(hl_journal_scan(NULL, 0, &s) == 0);
	CHECK(s.npending == 0 && s.pending == NULL && s.damaged == 0);

	/* Id 9 twice: the first copy stands. */
	sample(&e, 0);
	CHECK(hl_jentry_encode(&e, 9, &a, &alen) == 0);
	sample(&e, 2);
	CHECK(hl_jentry_encode(&e, 9, &b, &blen) == 0);
	if (a == NULL || b == NULL || alen + blen > 1024)
		goto out;
	memcpy(img, a, alen);
	n += alen;
	memcpy(img + n, b, blen);
	n += blen;
	CHECK(hl_journal_scan(img, n, &s) == 0);
	CHECK(s.npending == 1 && s.damaged == 0 && s.max_id == 9);
	if (s.npending == 1)
		CHECK_STR(s.pending[0]->nonce, "n1");
	hl_jscan_free(&s);

	/* Then id 5, out of order, and a done for 7, which the file never
	 * held: it only raises max_id. */
	free(b);
	b = NULL;
	sample(&e, 1);
	CHECK(hl_jentry_encode(&e, 5, &b, &blen) == 0);
	if (b == NULL || blen > 1024)
		goto out;
	memcpy(img + n, b, blen);
	n += blen;
	done_record(done, 7);
	memcpy(img + n, done, 24);
	n += 24;
	CHECK(hl_journal_scan(img, n, &s) == 0);
	CHECK(s.npending == 2 && s.damaged == 0 && s.max_id == 9);
	if (s.npending == 2)
		CHECK(s.pending[0]->id == 5 && s.pending[1]->id == 9);
	hl_jscan_free(&s);

	/* A done for 9 delivers it; the later copy does not come back. */
	done_record(done, 9);
	memcpy(img + n, done, 24);
	n += 24;
	memcpy(img + n, a, alen);
	n += alen;
	CHECK(hl_journal_scan(img, n, &s) == 0);
	CHECK(s.npending == 1 && s.damaged == 0);
	if (s.npending == 1)
		CHECK(s.pending[0]->id == 5);
	hl_jscan_free(&s);

out:
	free(a);
	free(b);
}

/* How many of the records ending at bounds[1..3] lie wholly before cut. */
static size_t whole_before(const int64_t bounds[4], size_t cut)
{
	size_t k = 0;

	while (k < 3 && (size_t)bounds[k + 1] <= cut)
		k++;
	return k;
}

static void torn_tail(void)
{
	char dir[128], path[160], err[256] = "";
	unsigned char *img;
	int64_t bounds[4];
	size_t len, cut, k, opened = 0;
	hl_jentry e;
	hl_journal *j;
	hl_jscan s;

	CHECK(write_three("torn", bounds) == 0);
	at(dir, sizeof(dir), "torn");
	snprintf(path, sizeof(path), "%s/journal", dir);
	img = read_whole(path, &len);
	CHECK(img != NULL && len == (size_t)bounds[3]);
	if (img == NULL || len != (size_t)bounds[3])
		goto out;

	/* Every cut, in memory. */
	for (cut = 0; cut <= len; cut++) {
		size_t bad;

		k = whole_before(bounds, cut);
		bad = cut - (size_t)bounds[k];
		CHECK(hl_journal_scan(img, cut, &s) == 0);
		CHECK(s.npending == k && s.bad_bytes == bad);
		CHECK(s.damaged == (bad > 0));
		if (s.npending == k && k > 0) {
			sample(&e, (int)k - 1);
			e.id = k;
			CHECK(same_entry(s.pending[k - 1], &e));
		}
		hl_jscan_free(&s);
	}

	/* A sample of cuts through open: it recovers the same and leaves
	 * a clean file behind. */
	for (cut = 0; cut <= len; cut++) {
		int edge = 0;

		for (k = 0; k < 4; k++)
			edge |= cut + 1 >= (size_t)bounds[k] &&
			        cut <= (size_t)bounds[k] + 1;
		if (!edge && cut % 23 != 0)
			continue;
		opened++;
		k = whole_before(bounds, cut);
		CHECK(write_file(path, img, cut) == 0);
		j = hl_journal_open(dir, &s, err, sizeof(err));
		CHECK(j != NULL);
		CHECK(s.npending == k);
		CHECK(s.bad_bytes == cut - (size_t)bounds[k]);
		hl_jscan_free(&s);
		hl_journal_close(j);

		j = hl_journal_open(dir, &s, err, sizeof(err));
		CHECK(j != NULL && s.npending == k && s.bad_bytes == 0);
		hl_jscan_free(&s);
		hl_journal_close(j);
	}
	CHECK(opened > 40);

out:
	free(img);
}

static void flipped_bit(void)
{
	char dir[128], path[160], err[256] = "";
	unsigned char *img;
	int64_t bounds[4];
	size_t len, bit;
	hl_journal *j;
	hl_jscan s;

	CHECK(write_three("flip", bounds) == 0);
	at(dir, sizeof(dir), "flip");
	snprintf(path, sizeof(path), "%s/journal", dir);
	img = read_whole(path, &len);
	CHECK(img != NULL && len == (size_t)bounds[3]);
	if (img == NULL || len != (size_t)bounds[3])
		goto out;

	/* Any one bit of the middle record, header or payload, costs that
	 * record and nothing else. */
	for (bit = (size_t)bounds[1] * 8; bit < (size_t)bounds[2] * 8; bit++) {
		img[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		CHECK(hl_journal_scan(img, len, &s) == 0);
		CHECK(s.npending == 2 && s.damaged == 1);
		CHECK(s.bad_bytes == (size_t)(bounds[2] - bounds[1]));
		if (s.npending == 2)
			CHECK(s.pending[0]->id == 1 && s.pending[1]->id == 3);
		hl_jscan_free(&s);
		img[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}

	img[(bounds[1] + bounds[2]) / 2] ^= 0x10;
	CHECK(write_file(path, img, len) == 0);
	j = hl_journal_open(dir, &s, err, sizeof(err));
	CHECK(j != NULL && s.npending == 2 && s.damaged == 1);
	hl_jscan_free(&s);
	hl_journal_close(j);

out:
	free(img);
}

static void garbage_around(void)
{
	char dir[128], path[160], err[256] = "";
	unsigned char *img, *buf = NULL;
	int64_t bounds[4];
	size_t len, i, n;
	hl_journal *j;
	hl_jscan s;

	CHECK(write_three("garbage", bounds) == 0);
	at(dir, sizeof(dir), "garbage");
	snprintf(path, sizeof(path), "%s/journal", dir);
	img = read_whole(path, &len);
	buf = malloc(len + 4000);
	if (img == NULL || buf == NULL)
		goto out;

	/* 1000 random bytes ending in a false header, the records, 777
	 * more random bytes. */
	for (i = 0; i < 1000; i++)
		buf[i] = rnd_byte();
	memcpy(buf + 988, "HLJ1\1\0\0\0\200\0\0\0", 12);
	memcpy(buf + 1000, img, len);
	for (i = 0; i < 777; i++)
		buf[1000 + len + i] = rnd_byte();
	n = 1000 + len + 777;
	CHECK(hl_journal_scan(buf, n, &s) == 0);
	CHECK(s.npending == 3 && s.damaged == 2 && s.bad_bytes == 1777);
	hl_jscan_free(&s);

	/* Garbage between the first and second record. */
	memcpy(buf, img, (size_t)bounds[1]);
	for (i = 0; i < 500; i++)
		buf[bounds[1] + (int64_t)i] = rnd_byte();
	memcpy(buf + bounds[1] + 500, img + bounds[1], len - (size_t)bounds[1]);
	CHECK(hl_journal_scan(buf, len + 500, &s) == 0);
	CHECK(s.npending == 3 && s.damaged == 1 && s.bad_bytes == 500);
	hl_jscan_free(&s);

	CHECK(write_file(path, buf, len + 500) == 0);
	j = hl_journal_open(dir, &s, err, sizeof(err));
	CHECK(j != NULL && s.npending == 3 && s.damaged == 1);
	hl_jscan_free(&s);
	hl_journal_close(j);
	CHECK(size_on_disk(path) == 24 + (int64_t)len);

out:
	free(img);
	free(buf);
}

static int mode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static void permissions(void)
{
	char dir[128], path[160], err[256] = "";
	hl_journal *j;

	j = hl_journal_open(at(dir, sizeof(dir), "p1/p2/state"), NULL, err,
	                    sizeof(err));
	CHECK(j != NULL);
	hl_journal_close(j);
	CHECK(mode_of(dir) == 0700);
	CHECK(mode_of(at(path, sizeof(path), "p1")) == 0700);
	CHECK(mode_of(at(path, sizeof(path), "p1/p2")) == 0700);
	snprintf(path, sizeof(path), "%s/journal", dir);
	CHECK(mode_of(path) == 0600);

	/* An open dir and an open file are tightened. */
	CHECK(chmod(dir, 0755) == 0 && chmod(path, 0644) == 0);
	j = hl_journal_open(dir, NULL, err, sizeof(err));
	CHECK(j != NULL);
	hl_journal_close(j);
	CHECK(mode_of(dir) == 0700);
	CHECK(mode_of(path) == 0600);

	at(dir, sizeof(dir), "made0755");
	CHECK(mkdir(dir, 0755) == 0 && chmod(dir, 0755) == 0);
	j = hl_journal_open(dir, NULL, err, sizeof(err));
	CHECK(j != NULL);
	hl_journal_close(j);
	CHECK(mode_of(dir) == 0700);
}

static void unopenable_dir(void)
{
	char file[128], dir[160], err[256] = "";

	at(file, sizeof(file), "plainfile");
	CHECK(write_file(file, "x", 1) == 0);
	snprintf(dir, sizeof(dir), "%s/state", file);
	CHECK(hl_journal_open(dir, NULL, err, sizeof(err)) == NULL);
	CHECK(strstr(err, dir) != NULL);
	CHECK(strstr(err, "Not a directory") != NULL);

	CHECK(hl_journal_open(file, NULL, err, sizeof(err)) == NULL);
	CHECK(strstr(err, file) != NULL);

	/* A directory where the journal file should be. */
	at(dir, sizeof(dir), "jdir/journal");
	CHECK(mkdir(at(file, sizeof(file), "jdir"), 0700) == 0);
	CHECK(mkdir(dir, 0700) == 0);
	CHECK(hl_journal_open(file, NULL, err, sizeof(err)) == NULL);
	CHECK(strstr(err, dir) != NULL);
	CHECK(strstr(err, "Is a directory") != NULL);
}

/* In a child limited to a few bytes past the file's end, an add fails
 * part way; the file must come out as it went in. */
static void child_full_disk(const char *dir)
{
	unsigned char body[500];
	char path[160], err[256] = "";
	struct rlimit lim;
	hl_journal *j;
	hl_jentry e;
	int64_t size;

	signal(SIGXFSZ, SIG_IGN);
	j = hl_journal_open(dir, NULL, err, sizeof(err));
	CHECK(j != NULL);
	if (j == NULL)
		return;
	snprintf(path, sizeof(path), "%s/journal", dir);
	size = hl_journal_file_size(j);
	CHECK(size_on_disk(path) == size);

	lim.rlim_cur = lim.rlim_max = (rlim_t)size + 100;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	sample(&e, 0);
	memset(body, 'b', sizeof(body));
	e.body = body;
	e.body_len = sizeof(body);
	CHECK(hl_journal_add(j, &e) == -EFBIG);
	CHECK(hl_journal_file_size(j) == size);
	CHECK(size_on_disk(path) == size);
	CHECK(hl_journal_pending_count(j) == 3);
	CHECK(hl_journal_sync(j) == 0);
	hl_journal_close(j);
}

static void full_disk(void)
{
	char dir[128], err[256] = "";
	int64_t bounds[4];
	hl_jscan s;
	hl_journal *j;
	pid_t pid;
	int status = -1;

	CHECK(write_three("full", bounds) == 0);
	at(dir, sizeof(dir), "full");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		child_full_disk(dir);
		_exit(check_failed ? 1 : 0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	j = hl_journal_open(dir, &s, err, sizeof(err));
	CHECK(j != NULL && s.npending == 3);
	CHECK(s.damaged == 0 && s.bad_bytes == 0);
	hl_jscan_free(&s);
	hl_journal_close(j);
}

static void compaction(void)
{
	char dir[128], path[160], err[256] = "";
	unsigned char body[1024];
	int64_t biggest = 0;
	hl_jentry e;
	hl_journal *j;
	hl_jscan s;
	size_t i, k;
	int bad = 0;

	at(dir, sizeof(dir), "compact");
	j = hl_journal_open(dir, NULL, err, sizeof(err));
	CHECK(j != NULL);
	if (j == NULL)
		return;

	/* 2000 replies of 1 KiB; every 400th stays pending. */
	for (i = 0; i < 2000; i++) {
		sample(&e, 0);
		for (k = 0; k < sizeof(body); k++)
			body[k] = (unsigned char)(i + k);
		e.body = body;
		e.body_len = sizeof(body);
		bad |= hl_journal_add(j, &e) != 0 || e.id != i + 1;
		if (i % 400 != 0)
			bad |= hl_journal_done(j, e.id) != 0;
		if (hl_journal_file_size(j) > biggest)
			biggest = hl_journal_file_size(j);
	}
	CHECK(!bad);
	CHECK(hl_journal_pending_count(j) == 5);
	CHECK(biggest < 64 << 10);
	snprintf(path, sizeof(path), "%s/journal", dir);
	CHECK(size_on_disk(path) == hl_journal_file_size(j));
	CHECK(hl_journal_file_size(j) < 50 << 10);
	snprintf(path, sizeof(path), "%s/journal.tmp", dir);
	CHECK(access(path, F_OK) != 0);
	hl_journal_close(j);

	j = hl_journal_open(dir, &s, err, sizeof(err));
	CHECK(j != NULL && s.npending == 5 && s.damaged == 0);
	CHECK(s.max_id == 2000);
	for (i = 0; i < s.npending; i++) {
		CHECK(s.pending[i]->id == 400 * i + 1);
		CHECK(s.pending[i]->body_len == sizeof(body));
		CHECK(s.pending[i]->body[5] == (unsigned char)(400 * i + 5));
	}
	hl_jscan_free(&s);
	hl_journal_close(j);
}

static int remove_one(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	int rc;

	strcpy(root, "/tmp/hl-journal-XXXXXX");
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	signal(SIGXFSZ, SIG_IGN);

	RUN(round_trip);
	RUN(format_bytes);
	RUN(bad_entries_are_refused);
	RUN(done_and_ids);
	RUN(scan_rules);
	RUN(torn_tail);
	RUN(flipped_bit);
	RUN(garbage_around);
	RUN(permissions);
	RUN(unopenable_dir);
	RUN(full_disk);
	RUN(compaction);
	rc = CHECK_DONE();

	nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
