/*
 * disk.c - the disk thread: it owns the reply journal.
 *
 * The net thread hands it three kinds of job. HL_JOB_JOURNAL carries a
 * reply to make durable; it comes back through the engine's results
 * mailbox once the entry is synced, or with the error that kept it from
 * disk. HL_JOB_JOURNAL_DONE says Discord has a reply; nothing comes back.
 * HL_JOB_SESSION replaces a session checkpoint (session.c); only the
 * newest of a batch for one file is written. The thread takes every
 * queued job at once, appends them all and syncs once, so a burst of
 * replies costs one fsync rather than one each.
 *
 * The journal is opened on the host's thread in hl_start(), before this
 * thread exists, so a bad state directory is a start error and the
 * entries an earlier run left unsent are known from the first moment.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct hl_disk {
	hl_engine *eng;
	hl_journal *journal;
	int dirfd; /* the state directory, for session checkpoints */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	hl_job *head;
	hl_job *tail;
	int quit;
	int running;      /* the thread was started */
	int failing;      /* the last write failed: said once until one works */
	int ckpt_failing; /* the same, for session checkpoints */
};

/* A later job of the batch replaces the same checkpoint file. */
static int superseded(const hl_job *job)
{
	const hl_job *later;

	for (later = job->next; later; later = later->next) {
		if (later->kind == HL_JOB_SESSION &&
		    strcmp(later->file, job->file) == 0)
			return 1;
	}
	return 0;
}

static void write_checkpoint(hl_disk *disk, const hl_job *job)
{
	int rc = superseded(job) ? 0 : hl_session_write(disk->dirfd, job);

	if (rc != 0 && !disk->ckpt_failing)
		hl_logf(disk->eng->log, HL_ERROR,
		        "session checkpoint write failed error=\"%s\"; a "
		        "restart may have to IDENTIFY",
		        strerror(-rc));
	disk->ckpt_failing = rc != 0;
}

/* Waits for jobs; returns all of them, or NULL when told to quit. */
static hl_job *take_jobs(hl_disk *disk)
{
	hl_job *all;

	pthread_mutex_lock(&disk->lock);
	while (disk->head == NULL && !disk->quit)
		pthread_cond_wait(&disk->wake, &disk->lock);
	all = disk->head;
	disk->head = disk->tail = NULL;
	pthread_mutex_unlock(&disk->lock);
	return all;
}

static void note_result(hl_disk *disk, int rc)
{
	hl_log *log = disk->eng->log;

	if (rc != 0 && !disk->failing)
		hl_logf(log, HL_ERROR,
		        "journal write failed error=\"%s\"; replies go out "
		        "without a durable copy until it works again",
		        strerror(-rc));
	else if (rc == 0 && disk->failing)
		hl_logf(log, HL_INFO, "journal writes work again");
	disk->failing = rc != 0;
}

/* Appends the batch, syncs it once, answers every add. */
static void run_batch(hl_disk *disk, hl_job *jobs)
{
	hl_job *job, *next;
	int added = 0, answered = 0, rc;

	for (job = jobs; job; job = job->next) {
		if (job->kind == HL_JOB_JOURNAL) {
			job->jerr = hl_journal_add(disk->journal, job->entry);
			added += job->jerr == 0;
			if (job->jerr)
				note_result(disk, job->jerr);
		} else if (job->kind == HL_JOB_SESSION) {
			write_checkpoint(disk, job);
		} else {
			hl_journal_done(disk->journal, job->jid);
		}
	}
	rc = added ? hl_journal_sync(disk->journal) : 0;
	if (added)
		note_result(disk, rc);

	for (job = jobs; job; job = next) {
		next = job->next;
		if (job->kind != HL_JOB_JOURNAL) {
			hl_job_free(job);
			continue;
		}
		if (job->jerr == 0)
			job->jerr = rc;
		hl_mailbox_put(&disk->eng->results, job);
		answered++;
	}
	/* Every answer wakes the net thread, failed writes too: a reply
	 * the journal could not take still waits there to go out. */
	if (answered)
		hl_net_wake(disk->eng);
}

static void *disk_main(void *arg)
{
	hl_disk *disk = arg;
	hl_job *jobs;
	sigset_t set;

	/* A file size limit must give EFBIG, not end the host process. */
	sigemptyset(&set);
	sigaddset(&set, SIGXFSZ);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	while ((jobs = take_jobs(disk)) != NULL)
		run_batch(disk, jobs);
	return NULL;
}

hl_disk *hl_disk_start(hl_engine *eng, char *err, size_t errlen)
{
	hl_disk *disk = calloc(1, sizeof(*disk));
	char why[512];

	if (disk == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	disk->eng = eng;
	disk->dirfd = -1;
	disk->journal = hl_journal_open(eng->cfg.state_dir, &eng->recovered,
	                                why, sizeof(why));
	if (disk->journal == NULL) {
		snprintf(err, errlen, "config: state_dir: %s", why);
		free(disk);
		return NULL;
	}
	disk->dirfd =
	        open(eng->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (disk->dirfd < 0) {
		snprintf(err, errlen, "config: state_dir: %s: %s",
		         eng->cfg.state_dir, strerror(errno));
		hl_journal_close(disk->journal);
		free(disk);
		return NULL;
	}
	hl_sessions_load(eng);
	if (eng->recovered.damaged)
		hl_logf(eng->log, HL_WARN,
		        "journal damaged dir=%s stretches=%d bytes_dropped=%zu "
		        "entries_kept=%zu",
		        eng->cfg.state_dir, eng->recovered.damaged,
		        eng->recovered.bad_bytes, eng->recovered.npending);
	else if (eng->recovered.npending)
		hl_logf(eng->log, HL_INFO,
		        "journal holds replies from an earlier run "
		        "entries=%zu; "
		        "they go out when their bots connect",
		        eng->recovered.npending);
	pthread_mutex_init(&disk->lock, NULL);
	pthread_cond_init(&disk->wake, NULL);
	if (pthread_create(&disk->thread, NULL, disk_main, disk) != 0) {
		snprintf(err, errlen, "cannot start the disk thread");
		hl_disk_stop(disk);
		return NULL;
	}
	disk->running = 1;
	return disk;
}

void hl_disk_submit(hl_disk *disk, hl_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&disk->lock);
	if (disk->tail)
		disk->tail->next = job;
	else
		disk->head = job;
	disk->tail = job;
	pthread_cond_signal(&disk->wake);
	pthread_mutex_unlock(&disk->lock);
}

/* Finishes what is queued, then stops the thread and closes the file. */
void hl_disk_stop(hl_disk *disk)
{
	if (disk == NULL)
		return;
	if (disk->running) {
		pthread_mutex_lock(&disk->lock);
		disk->quit = 1;
		pthread_cond_signal(&disk->wake);
		pthread_mutex_unlock(&disk->lock);
		pthread_join(disk->thread, NULL);
	}
	hl_journal_close(disk->journal);
	if (disk->dirfd >= 0)
		close(disk->dirfd);
	pthread_cond_destroy(&disk->wake);
	pthread_mutex_destroy(&disk->lock);
	free(disk);
}
