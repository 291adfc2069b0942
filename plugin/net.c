/*
 * net.c - the net thread: one libwebsockets context per engine that holds
 * the local endpoint (downstream vhost, 127.0.0.1) and every upstream
 * gateway connection (client vhost with TLS verification).
 *
 * The host thread creates the context and the thread; from then on only
 * the net thread touches it. Other threads reach it by putting work in
 * the results mailbox and calling lws_cancel_service(), the one lws call
 * that is safe from another thread; the wake-up arrives here as
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *
 * The context runs on a libev loop of our own with the epoll backend
 * (libwebsockets' "foreign loop" mode): a wake-up then costs in
 * proportion to the sockets that are ready, not to every socket open,
 * which with a thousand bots is two thousand.
 *
 * A context can outlive its engine: a detached engine's net thread ends
 * by handing the context, the loop and the live upstream connections to
 * a handover (hand_over), and the net thread of the engine that attaches
 * begins by taking them (take_over), which is how a new build of the
 * library goes on with the sessions of the one before. The context's
 * user data therefore names the engine that serves it now (hl_owner).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>
#include <sys/syscall.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "handover.h"

/* How long a stopping engine waits for its upstream closes to go out. */
#define STOP_GRACE_MS 1000
#define STATUS_PERIOD_US (500 * LWS_US_PER_MS)
#define STATUS_EVERY_TICKS 10 /* 5 s */
#define NET_NICE_BOOST 10

static void timer_fired(struct ev_loop *loop, ev_timer *w, int revents)
{
	hl_timer *t = lws_container_of(w, hl_timer, w);

	(void)loop;
	(void)revents;
	t->cb(t);
}

void hl_timer_start(hl_engine *eng, hl_timer *t, int64_t ms,
                    void (*cb)(hl_timer *t))
{
	hl_timer_stop(t);
	ev_timer_init(&t->w, timer_fired, ms > 0 ? (double)ms / 1000.0 : 0.0,
	              0.0);
	t->cb = cb;
	t->loop = eng->loop;
	/* From now, not from the start of this turn of the loop: a timer
	 * that keeps two IDENTIFYs apart must not fire early. */
	ev_now_update(t->loop);
	ev_timer_start(t->loop, &t->w);
}

void hl_timer_stop(hl_timer *t)
{
	if (t->loop)
		ev_timer_stop(t->loop, &t->w);
}

/* Milliseconds until t fires, or -1 when it is not running. */
int64_t hl_timer_left(hl_timer *t)
{
	if (t->loop == NULL || !ev_is_active(&t->w))
		return -1;
	return (int64_t)(ev_timer_remaining(t->loop, &t->w) * 1000.0);
}

static void drain_results(hl_engine *eng)
{
	hl_job *job = hl_mailbox_take_all(&eng->results);

	while (job) {
		hl_job *next = job->next;
		hl_bot *bot;

		job->next = NULL;
		if (job->kind == HL_JOB_FORWARD) {
			hl_http_on_answer(eng, job);
		} else if (job->kind == HL_JOB_JOURNAL) {
			hl_reply_on_journaled(eng, job);
		} else if (job->kind == HL_JOB_TYPING) {
			hl_typing_on_answer(eng, job);
			hl_job_free(job);
		} else {
			for (bot = eng->bots; bot; bot = bot->next) {
				if (bot->id == job->id)
					break;
			}
			if (bot)
				hl_up_on_gateway(bot, job);
			hl_job_free(job);
		}
		job = next;
	}
}

/* A configuration from hl_reconfigure takes effect here. */
static void apply_reconfig(hl_engine *eng)
{
	hl_config *cfg;

	pthread_mutex_lock(&eng->reconf_lock);
	cfg = eng->reconf;
	eng->reconf = NULL;
	pthread_mutex_unlock(&eng->reconf_lock);
	if (cfg == NULL)
		return;
	hl_config_apply_live(&eng->cfg, cfg);
	hl_config_free(cfg);
	free(cfg);
	hl_logf(eng->log, HL_INFO,
	        "configuration applied to the running engine");
}

/* WebSocket connections the front has accepted become ours here. */
static void adopt_pending(hl_engine *eng)
{
	int fds[64], n, i;

	pthread_mutex_lock(&eng->adopt_lock);
	n = eng->nadopt;
	memcpy(fds, eng->adopt_fds, sizeof(int) * (size_t)n);
	eng->nadopt = 0;
	pthread_mutex_unlock(&eng->adopt_lock);
	for (i = 0; i < n; i++) {
		if (lws_adopt_socket_vhost(eng->down_vh, fds[i]) == NULL)
			close(fds[i]);
	}
}

/* How long a WebSocket waits for room in the mailbox before it is closed
 * (the host connects again): a net thread that never comes. */
#define ADOPT_WAIT_MS 5000

void hl_net_adopt(hl_engine *eng, int fd)
{
	int taken = 0, waited;

	for (waited = 0; !taken && waited < ADOPT_WAIT_MS; waited++) {
		pthread_mutex_lock(&eng->adopt_lock);
		if (eng->nadopt < (int)(sizeof(eng->adopt_fds) / sizeof(int))) {
			eng->adopt_fds[eng->nadopt++] = fd;
			taken = 1;
		}
		pthread_mutex_unlock(&eng->adopt_lock);
		lws_cancel_service(eng->lws);
		if (!taken)
			usleep(1000);
	}
	if (!taken)
		close(fd);
}

hl_engine *hl_net_engine(struct lws *wsi)
{
	hl_owner *owner = lws_context_user(lws_get_context(wsi));

	return owner->eng;
}

static int up_protocol_cb(struct lws *wsi, enum lws_callback_reasons reason,
                          void *user, void *in, size_t len)
{
	hl_engine *eng = hl_net_engine(wsi);

	(void)user;
	if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
		if (eng->stopping)
			ev_break(eng->loop, EVBREAK_ALL);
		adopt_pending(eng);
		drain_results(eng);
		apply_reconfig(eng);
		if (eng->status_wanted) {
			eng->status_wanted = 0;
			hl_status_refresh(eng);
		}
		return 0;
	}
	return hl_up_callback(wsi, reason, in, len);
}

static int down_protocol_cb(struct lws *wsi, enum lws_callback_reasons reason,
                            void *user, void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_CLOSED:
		return hl_down_callback(wsi, reason, user, in, len);
	default:
		break;
	}
	return hl_http_callback(wsi, reason, user, in, len);
}

/*
 * Upstream liveness is judged by Discord's heartbeat and its ACK, and a
 * host connection on loopback stays open however long the host stalls.
 * Without this policy libwebsockets would also keep an idle-check timer per
 * connection and move it in its sorted timer list on every frame
 * received, a walk over thousands of timers with a thousand bots.
 */
const lws_retry_bo_t hl_net_no_idle_check = { .secs_since_valid_ping = 0 };

/* Per-connection storage on the local endpoint: what the wsi serves. */
struct down_pss {
	void *obj;
};

/*
 * libwebsockets gives every connection a receive buffer of this size.
 * Messages longer than it arrive in pieces, which the callbacks join, so
 * it only sets the piece size. Each bot has two such buffers (upstream
 * and its host connection) and most of their pages end up touched, so at
 * 4 KiB instead of 16 they cost about 12 KiB less resident memory per
 * bot; a megabyte GUILD_CREATE takes 256 callbacks instead of 64.
 */
#define RX_BUFFER 4096
/*
 * The most one send() may carry. Left at 0 it would be the receive
 * buffer's size, and every longer frame, or run of joined frames, would
 * go out 4 KiB per turn of the loop with the rest copied aside.
 */
#define TX_PACKET (LWS_PRE + HL_TX_JOIN_BYTES)

static const struct lws_protocols down_protocols[] = {
	{ "discord", down_protocol_cb, sizeof(struct down_pss), RX_BUFFER, 0,
	  NULL, TX_PACKET },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static const struct lws_protocols up_protocols[] = {
	{ "discord-up", up_protocol_cb, 0, RX_BUFFER, 0, NULL, TX_PACKET },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* Checkpoints on a timer, and now and then a status snapshot nobody
 * asked for, so that a reader that cannot wait still finds a recent one. */
struct status_timer {
	lws_sorted_usec_list_t sul;
	hl_engine *eng;
	int ticks;
};

static void status_tick(lws_sorted_usec_list_t *sul)
{
	struct status_timer *st =
	        lws_container_of(sul, struct status_timer, sul);

	if (++st->ticks % STATUS_EVERY_TICKS == 0)
		hl_status_refresh(st->eng);
	hl_session_checkpoint(st->eng, 0);
	lws_sul_schedule(st->eng->lws, 0, sul, status_tick, STATUS_PERIOD_US);
}

static void shut_upstreams(hl_engine *eng)
{
	hl_bot *bot;

	for (bot = eng->bots; bot; bot = bot->next)
		hl_up_shutdown(bot);
}

static int upstreams_open(hl_engine *eng)
{
	hl_bot *bot;

	for (bot = eng->bots; bot; bot = bot->next) {
		if (bot->up_wsi)
			return 1;
	}
	return 0;
}

/*
 * Heartbeats must not wait for a host that is busy on every core. The
 * net thread asks for a better nice value than the rest of the process;
 * that needs CAP_SYS_NICE or a RLIMIT_NICE allowance, and without either
 * it runs at the host's priority, as before.
 */
static void raise_priority(hl_engine *eng)
{
	id_t tid = (id_t)syscall(SYS_gettid);
	int nice_now = getpriority(PRIO_PROCESS, tid);

	if (setpriority(PRIO_PROCESS, tid, nice_now - NET_NICE_BOOST) != 0)
		hl_logf(eng->log, HL_DEBUG,
		        "net thread priority unchanged error=\"%s\"",
		        strerror(errno));
}

/*
 * TLS reads ahead (one read() takes what the socket has, several records
 * at once, instead of a read for each record's header and another for its
 * body), so whole records can wait inside OpenSSL with the socket drained
 * and no readiness to wake the loop; libwebsockets only asks SSL_pending,
 * which does not count them, and serves a connection one record per call.
 *
 * So OpenSSL tells us (its message callback) which upstream connections
 * read a record this turn, and before the loop waits each of them is
 * served as if its socket were readable for as long as OpenSSL holds a
 * whole record for it (SSL_peek finds one) and each turn takes some of
 * it; a partial record waits for the rest to arrive on the socket.
 */
static void mark_tls_read(hl_bot *bot)
{
	hl_engine *eng = bot->eng;

	if (bot->tls_read)
		return;
	bot->tls_read = 1;
	bot->next_tls_read = eng->tls_readers;
	eng->tls_readers = bot;
}

static void tls_message(int write_p, int version, int content_type,
                        const void *buf, size_t len, SSL *ssl, void *arg)
{
	hl_engine *eng = arg;
	int fd;

	(void)version;
	(void)buf;
	(void)len;
	if (write_p || content_type != SSL3_RT_HEADER)
		return;
	fd = SSL_get_fd(ssl);
	if (fd >= 0 && fd < eng->up_by_fd_len && eng->up_by_fd[fd])
		mark_tls_read(eng->up_by_fd[fd]);
}

void hl_net_track_up(hl_bot *bot, struct lws *wsi)
{
	hl_engine *eng = bot->eng;
	int fd = lws_get_socket_fd(wsi);

	if (fd < 0)
		return;
	if (fd >= eng->up_by_fd_len) {
		int len = fd + 64;
		hl_bot **by_fd = realloc(eng->up_by_fd, sizeof(*by_fd) * len);

		if (by_fd == NULL)
			return;
		memset(by_fd + eng->up_by_fd_len, 0,
		       sizeof(*by_fd) * (size_t)(len - eng->up_by_fd_len));
		eng->up_by_fd = by_fd;
		eng->up_by_fd_len = len;
	}
	eng->up_by_fd[fd] = bot;
	bot->up_fd = fd;
	/* A connection taken over from another engine still tells that
	 * one about its records. */
	if (lws_get_ssl(wsi)) {
		SSL_set_msg_callback(lws_get_ssl(wsi), tls_message);
		SSL_set_msg_callback_arg(lws_get_ssl(wsi), eng);
	}
	/* What came with the handshake may already wait inside OpenSSL. */
	mark_tls_read(bot);
}

void hl_net_untrack_up(hl_bot *bot)
{
	hl_engine *eng = bot->eng;

	if (bot->up_fd >= 0 && bot->up_fd < eng->up_by_fd_len &&
	    eng->up_by_fd[bot->up_fd] == bot)
		eng->up_by_fd[bot->up_fd] = NULL;
	bot->up_fd = -1;
	/* Its records tell this engine nothing more (it may be going). */
	if (bot->up_wsi && lws_get_ssl(bot->up_wsi))
		SSL_set_msg_callback(lws_get_ssl(bot->up_wsi), NULL);
}

static void serve_buffered(hl_engine *eng, hl_bot *bot)
{
	struct lws_pollfd pfd;
	SSL *ssl;
	char c;
	int held, n;

	while (bot->up_wsi && (ssl = lws_get_ssl(bot->up_wsi)) &&
	       SSL_has_pending(ssl)) {
		n = SSL_peek(ssl, &c, 1);
		if (n <= 0) {
			n = SSL_get_error(ssl, n);
			ERR_clear_error();
			if (n == SSL_ERROR_WANT_READ ||
			    n == SSL_ERROR_WANT_WRITE)
				break;
			/* Let libwebsockets meet the failure. */
		}
		held = SSL_pending(ssl);
		pfd.fd = lws_get_socket_fd(bot->up_wsi);
		pfd.events = POLLIN;
		pfd.revents = POLLIN;
		lws_service_fd(eng->lws, &pfd);
		if (n <= 0 || bot->up_wsi == NULL || SSL_pending(ssl) == held)
			break; /* no progress: it does not read now */
	}
}

static void read_buffered(hl_engine *eng)
{
	hl_bot *list = eng->tls_readers, *bot;

	/* Serving reads records, which marks the bots again: those wait for
	 * the next turn, with nothing whole left to read. */
	eng->tls_readers = NULL;
	while ((bot = list) != NULL) {
		list = bot->next_tls_read;
		bot->tls_read = 0;
		serve_buffered(eng, bot);
	}
}

/* Before the loop waits: what TLS holds is read, frames queued for the
 * host go out. */
static void before_wait(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	read_buffered(w->data);
	hl_down_flush(w->data);
}

/* Wakes the loop now and then while the engine waits for its closes. */
static void stop_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* ---- handing the context from one engine to the next ------------------ */

/*
 * Lets go of every host connection and HTTP request: their objects are
 * this engine's and go with it. The connections are cut without a close
 * frame, which a Discord client answers with a RESUME.
 */
static void let_go_of_host(hl_engine *eng)
{
	hl_down *down;
	hl_http *h;

	for (down = eng->downs; down; down = down->next) {
		*(hl_down **)lws_wsi_user(down->wsi) = NULL;
		lws_set_timeout(down->wsi, PENDING_TIMEOUT_CLOSE_SEND,
		                LWS_TO_KILL_SYNC);
		down->bot = NULL;
	}
	for (h = eng->https; h; h = h->next) {
		if (h->wsi == NULL)
			continue;
		*(hl_http **)lws_wsi_user(h->wsi) = NULL;
		lws_set_timeout(h->wsi, PENDING_TIMEOUT_CLOSE_SEND,
		                LWS_TO_KILL_SYNC);
		h->wsi = NULL;
	}
	for (hl_bot *bot = eng->bots; bot; bot = bot->next)
		bot->down = NULL;
}

/* The net thread's last act when the engine is detached: the context,
 * the loop and the sessions go into eng->given. */
static void hand_over(hl_engine *eng)
{
	hl_handover *ho = eng->given;
	hl_bot *bot;
	int n = 0, live = 0;

	/* No final checkpoint: the sessions go on, and the next engine saves
	 * them within a second, as this one did all along. */
	let_go_of_host(eng);
	for (bot = eng->bots; bot; bot = bot->next)
		n++;
	ho->bots = n ? calloc((size_t)n, sizeof(*ho->bots)) : NULL;
	for (bot = eng->bots; ho->bots && bot; bot = bot->next) {
		hl_handover_pack(bot, &ho->bots[ho->nbots++]);
		live += ho->bots[ho->nbots - 1].wsi != NULL;
	}
	/* Without memory for it the connections are cut: the next engine
	 * RESUMEs from the checkpoints on disk, if there is a state_dir. */
	if (n && ho->bots == NULL)
		hl_session_checkpoint(eng, 1);
	for (bot = eng->bots; bot && ho->bots == NULL; bot = bot->next)
		hl_up_release(bot, 0);

	/* The rest and disk threads may still wake the context, so the
	 * engine keeps it until they end (hl_detach). */
	ev_prepare_stop(eng->loop, &eng->flush);
	SSL_CTX_set_msg_callback(eng->tls, NULL);
	ho->lws = eng->lws;
	ho->loop = eng->loop;
	ho->down_vh = eng->down_vh;
	ho->up_vh = eng->up_vh;
	ho->tls = eng->tls;
	ho->owner = eng->owner;
	ho->inner_port = eng->inner_port;
	hl_logf(eng->log, HL_INFO, "engine handing over sessions=%d live=%d",
	        ho->nbots, live);
}

/* Points a vhost's protocol at this build's callback. libwebsockets keeps
 * its own copy of each vhost's protocol table, which is what it calls. */
static void claim_protocol(struct lws_vhost *vh, const char *name,
                           lws_callback_function *cb)
{
	struct lws_protocols *p =
	        (struct lws_protocols *)lws_vhost_name_to_protocol(vh, name);

	if (p)
		p->callback = cb;
}

/* The net thread's first act when the engine was attached: from here on
 * every callback of the context reaches this engine. */
static void take_over(hl_engine *eng)
{
	hl_handover *ho = eng->taken;
	int i, live = 0;

	eng->taken = NULL;
	eng->owner->eng = eng;
	claim_protocol(eng->down_vh, "discord", down_protocol_cb);
	claim_protocol(eng->up_vh, "discord-up", up_protocol_cb);
	for (i = 0; i < ho->nbots; i++)
		live += hl_handover_unpack(eng, &ho->bots[i]) == 1;
	hl_logf(eng->log, HL_INFO, "engine took over sessions=%d live=%d",
	        ho->nbots, live);
	hl_handover_free(ho);
	hl_status_refresh(eng);
}

static void *net_main(void *arg)
{
	hl_engine *eng = arg;
	struct status_timer status = { .eng = eng };
	ev_timer wake;
	int64_t deadline;

	raise_priority(eng);
	if (eng->taken)
		take_over(eng);
	memset(&status.sul, 0, sizeof(status.sul));
	lws_sul_schedule(eng->lws, 0, &status.sul, status_tick, 1);
	while (!eng->stopping)
		ev_run(eng->loop, 0);
	lws_sul_cancel(&status.sul);
	if (eng->given) {
		hand_over(eng);
		return NULL;
	}

	/* Close upstream sessions resumably and give the closes time to go. */
	shut_upstreams(eng);
	ev_timer_init(&wake, stop_poll, 0.05, 0.05);
	ev_timer_start(eng->loop, &wake);
	deadline = hl_mono_ms() + STOP_GRACE_MS;
	while (upstreams_open(eng) && hl_mono_ms() < deadline)
		ev_run(eng->loop, EVRUN_ONCE);
	ev_timer_stop(eng->loop, &wake);
	ev_prepare_stop(eng->loop, &eng->flush);
	hl_session_checkpoint(eng, 1);
	hl_status_refresh(eng);
	return NULL;
}

void hl_net_wake(hl_engine *eng)
{
	lws_cancel_service(eng->lws);
}

static void lws_log_sink(int level, const char *line)
{
	(void)level;
	(void)line;
}

/*
 * The TLS context for Discord: peer verification on, the system's CAs
 * plus the configured file. Ours rather than lws's, so that it is freed
 * with the engine.
 */
static SSL_CTX *client_tls_new(const hl_config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create the TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* An idle bot holds no 16 KiB record buffers, in and out. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1 ||
	    (cfg->ca_file &&
	     SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1)) {
		snprintf(err, errlen, "config: ca_file: cannot load %s",
		         cfg->ca_file ? cfg->ca_file
		                      : "the system's CA certificates");
		goto fail;
	}
	if (cfg->tls_groups &&
	    SSL_CTX_set1_groups_list(ctx, cfg->tls_groups) != 1) {
		snprintf(err, errlen,
		         "config: tls_groups: \"%s\" names a group this TLS "
		         "library does not offer",
		         cfg->tls_groups);
		goto fail;
	}
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int hl_net_start(hl_engine *eng, char *err, size_t errlen)
{
	struct lws_context_creation_info info;
	const char *lws_debug = getenv("HEARTLINE_LWS_DEBUG");
	void *loops[1];

	lws_set_log_level(lws_debug ? atoi(lws_debug) : 0,
	                  lws_debug ? NULL : lws_log_sink);

	eng->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
	if (eng->loop == NULL) {
		snprintf(err, errlen, "cannot create the event loop");
		return -1;
	}
	eng->owner = calloc(1, sizeof(*eng->owner));
	if (eng->owner == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	eng->owner->eng = eng;
	ev_prepare_init(&eng->flush, before_wait);
	eng->flush.data = eng;
	ev_prepare_start(eng->loop, &eng->flush);
	loops[0] = eng->loop;
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
	               LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
	               LWS_SERVER_OPTION_LIBEV;
	info.foreign_loops = loops;
	info.user = eng->owner;
	eng->lws = lws_create_context(&info);
	if (eng->lws == NULL) {
		snprintf(err, errlen,
		         "cannot create the network context (is "
		         "libwebsockets-evlib-ev installed?)");
		goto fail;
	}

	memset(&info, 0, sizeof(info));
	info.vhost_name = "local";
	info.port = 0; /* the inner port: the front relays to it */
	info.iface = "127.0.0.1";
	info.protocols = down_protocols;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	info.keepalive_timeout = 60;
	info.retry_and_idle_policy = &hl_net_no_idle_check;
	eng->down_vh = lws_create_vhost(eng->lws, &info);
	if (eng->down_vh == NULL) {
		snprintf(err, errlen, "cannot listen on 127.0.0.1");
		goto fail;
	}
	eng->inner_port = lws_get_vhost_listen_port(eng->down_vh);
	snprintf(eng->origin, sizeof(eng->origin), "http://127.0.0.1:%d",
	         eng->port);
	snprintf(eng->ws_origin, sizeof(eng->ws_origin), "ws://127.0.0.1:%d",
	         eng->port);

	eng->tls = client_tls_new(&eng->cfg, err, errlen);
	if (eng->tls == NULL)
		goto fail;
	SSL_CTX_set_msg_callback(eng->tls, tls_message);
	SSL_CTX_set_msg_callback_arg(eng->tls, eng);
	memset(&info, 0, sizeof(info));
	info.vhost_name = "upstream";
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = up_protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.provided_client_ssl_ctx = eng->tls;
	info.retry_and_idle_policy = &hl_net_no_idle_check;
	eng->up_vh = lws_create_vhost(eng->lws, &info);
	if (eng->up_vh == NULL) {
		snprintf(err, errlen, "cannot set up the upstream client");
		goto fail;
	}

	/* The host may ask for status before the first timer tick. */
	hl_status_refresh(eng);
	if (pthread_create(&eng->net_thread, NULL, net_main, eng) != 0) {
		snprintf(err, errlen, "cannot start the net thread");
		goto fail;
	}
	return 0;

fail:
	hl_net_destroy(eng);
	return -1;
}

/*
 * Starts the net thread on the context lent by hl_net_borrow; the thread
 * takes the handover over before anything else. Nothing of the handover
 * changes unless the thread starts.
 */
int hl_net_attach(hl_engine *eng, char *err, size_t errlen)
{
	const char *lws_debug = getenv("HEARTLINE_LWS_DEBUG");

	ev_prepare_init(&eng->flush, before_wait);
	eng->flush.data = eng;
	ev_prepare_start(eng->loop, &eng->flush);
	/* Library logs and TLS records, from now on, to this build; an
	 * engine that takes the handover back sets its own again. */
	lws_set_log_level(lws_debug ? atoi(lws_debug) : 0,
	                  lws_debug ? NULL : lws_log_sink);
	SSL_CTX_set_msg_callback(eng->tls, tls_message);
	SSL_CTX_set_msg_callback_arg(eng->tls, eng);
	hl_status_refresh(eng);
	if (pthread_create(&eng->net_thread, NULL, net_main, eng) != 0) {
		snprintf(err, errlen, "cannot start the net thread");
		ev_prepare_stop(eng->loop, &eng->flush);
		return -1;
	}
	return 0;
}

/*
 * Destroys the network context of a handover no engine took, with the
 * connections in it. Its callbacks reach no engine meanwhile.
 */
void hl_net_discard(hl_handover *ho)
{
	int i;

	claim_protocol(ho->down_vh, "discord", lws_callback_http_dummy);
	claim_protocol(ho->up_vh, "discord-up", lws_callback_http_dummy);
	ho->owner->eng = NULL;
	for (i = 0; i < ho->nbots; i++)
		ho->bots[i].wsi = NULL; /* the context closes them */
	lws_context_destroy(ho->lws);
	ev_loop_destroy(ho->loop);
	SSL_CTX_free(ho->tls);
	free(ho->owner);
	ho->lws = NULL;
	ho->loop = NULL;
	ho->tls = NULL;
	ho->owner = NULL;
}

/*
 * Lends the engine the context, the loop and the vhosts of eng->taken,
 * which stay the handover's until hl_net_attach: the front may wake the
 * context before the net thread runs.
 */
void hl_net_borrow(hl_engine *eng)
{
	hl_handover *ho = eng->taken;

	eng->lws = ho->lws;
	eng->loop = ho->loop;
	eng->down_vh = ho->down_vh;
	eng->up_vh = ho->up_vh;
	eng->tls = ho->tls;
	eng->owner = ho->owner;
	eng->inner_port = ho->inner_port;
	snprintf(eng->origin, sizeof(eng->origin), "http://127.0.0.1:%d",
	         eng->port);
	snprintf(eng->ws_origin, sizeof(eng->ws_origin), "ws://127.0.0.1:%d",
	         eng->port);
}

/* The engine lets go of the network context it was lent, or handed on. */
void hl_net_unborrow(hl_engine *eng)
{
	eng->lws = NULL;
	eng->loop = NULL;
	eng->down_vh = NULL;
	eng->up_vh = NULL;
	eng->tls = NULL;
	eng->owner = NULL;
}

/*
 * Ends the net thread; the context stays until hl_net_destroy, and the
 * loop until the engine is freed, since its bots' timers refer to it.
 * With eng->given set (the caller allocated it) the upstream sessions
 * stay open, and the context and the loop go into the handover instead.
 */
void hl_net_stop(hl_engine *eng)
{
	eng->stopping = 1;
	lws_cancel_service(eng->lws);
	pthread_join(eng->net_thread, NULL);
}

void hl_net_destroy(hl_engine *eng)
{
	if (eng->lws)
		lws_context_destroy(eng->lws);
	eng->lws = NULL;
	SSL_CTX_free(eng->tls);
	eng->tls = NULL;
	free(eng->owner);
	eng->owner = NULL;
}
