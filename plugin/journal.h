/*
 * journal.h - the reply journal: a durable append-only file of the replies
 * a bot host asked heartline to send to Discord, written and synced before
 * they go upstream and kept until Discord has them.
 *
 * One thread (the disk thread) uses a journal; it has no locking of its
 * own. Entries never hold a token: they are keyed by the hex SHA-256 of
 * the token, computed by the caller. The file format is described at the
 * top of journal.c.
 */
#ifndef HL_JOURNAL_H
#define HL_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

/* The largest record payload written or accepted: room for a 100 MiB
 * request body (the front door's limit) plus its path and headers. */
#define HL_JOURNAL_MAX_PAYLOAD (128u << 20)

typedef struct hl_jentry {
	uint64_t id;        /* assigned by hl_journal_add, increasing */
	int64_t created_ms; /* wall clock (ms since epoch) when the host asked
	                     */
	char nonce[26];     /* Discord nonce, 1..25 chars, NUL-terminated */
	char key[65];       /* hex sha256 of the bot token, 64 chars */
	char method[8];     /* "POST" or "PATCH" (any short token accepted) */
	char *path;         /* request path and query */
	char *content_type; /* request Content-Type, "" when none */
	unsigned char *body;
	size_t body_len;
} hl_jentry;

/* Frees the strings, the body and e itself. NULL is allowed. */
void hl_jentry_free(hl_jentry *e);

/*
 * Encodes e as one entry record with the given id, in a new buffer the
 * caller frees. Returns 0, -EINVAL when a field breaks the rules a
 * scan checks (nonce 1..25 chars, key 64 hex digits, method 1..7 visible
 * characters, a path, no NUL inside a string), -EMSGSIZE when the record
 * is over HL_JOURNAL_MAX_PAYLOAD, or -ENOMEM.
 */
int hl_jentry_encode(const hl_jentry *e, uint64_t id, unsigned char **out,
                     size_t *outlen);

/* The result of reading a journal image: its entries not yet marked
 * delivered, in id order, and what was damaged. */
typedef struct hl_jscan {
	hl_jentry **pending;
	size_t npending;
	uint64_t max_id;  /* highest id in any valid record, 0 if none */
	size_t bad_bytes; /* bytes skipped as damaged */
	int damaged;      /* number of separate damaged stretches */
} hl_jscan;

/* Reads the records of data[0..len). Returns 0, or -ENOMEM with *out
 * empty. Damage is skipped and counted, never an error. */
int hl_journal_scan(const unsigned char *data, size_t len, hl_jscan *out);
void hl_jscan_free(hl_jscan *s);

typedef struct hl_journal hl_journal;

/*
 * Opens (creating) DIR/journal. DIR is created mode 0700 if missing
 * (parents too); an existing DIR with group or other permission bits is
 * tightened to 0700. The file is 0600. The surviving pending entries of
 * the existing file are handed over in *recovered (the caller frees it
 * with hl_jscan_free; recovered may be NULL to drop them), and the file
 * is rewritten with those entries only: DIR/journal.tmp is written and
 * synced, renamed over DIR/journal, and DIR is synced.
 *
 * DIR/lock is held (flock) until hl_journal_close, so a second journal on
 * the same DIR, in this process or another, fails with "in use".
 *
 * On error returns NULL with a message naming the path and the OS error
 * in err, e.g. "state dir /x: Permission denied".
 */
hl_journal *hl_journal_open(const char *dir, hl_jscan *recovered, char *err,
                            size_t errlen);

/*
 * Appends an entry record, not yet synced, and assigns e->id. The journal
 * keeps only the id and where the record lies; e stays the caller's.
 * Returns 0 or a negative errno (-EINVAL and -EMSGSIZE as for
 * hl_jentry_encode). A failed write (ENOSPC, EFBIG) is cut back off the
 * file, so no torn record is left. The process must ignore SIGXFSZ.
 */
int hl_journal_add(hl_journal *j, hl_jentry *e);

/* fdatasync of everything appended so far: 0 or -errno. Callers batch
 * several adds, then one sync. */
int hl_journal_sync(hl_journal *j);

/*
 * Marks an entry delivered: appends a small done record, not synced (a
 * lost one only means a resend with the same nonce, which Discord
 * deduplicates), and drops the entry from the journal. Unknown ids give
 * -ENOENT and change nothing.
 *
 * When more than half of the file is delivered entries and done records
 * (and that is over 32 KiB), the file is rewritten with the pending
 * entries only, the same crash-safe way as on open. A failed write of the
 * done record or a failed rewrite returns its -errno, but the entry is
 * dropped all the same and the file stays valid; a failed rewrite is
 * tried again once more has been delivered.
 */
int hl_journal_done(hl_journal *j, uint64_t id);

/* The crash-safe rewrite that hl_journal_done does when worthwhile. */
int hl_journal_compact(hl_journal *j);

size_t hl_journal_pending_count(const hl_journal *j);
int64_t hl_journal_file_size(const hl_journal *j);

/* Closes and frees; does not sync. NULL is allowed. */
void hl_journal_close(hl_journal *j);

#endif
