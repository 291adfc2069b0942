/*
 * front.c - the door of the local endpoint: the port the host connects to.
 *
 * libwebsockets 4.1 serves HTTP/1.1 request bodies only when they carry
 * a Content-Length, but OpenClaw's Discord channel streams every body
 * (Transfer-Encoding: chunked). So the front owns the public port: a
 * WebSocket upgrade is handed to libwebsockets untouched (we only peek at
 * its head), and plain HTTP connections are relayed, one request at a
 * time, to the engine's inner HTTP port with the body de-chunked and a
 * Content-Length set. Keep-alive with the host is kept; each inner
 * request uses a fresh loopback connection. When a new build takes the
 * engine over, the front is released instead of stopped: it stops
 * accepting, lets each connection finish the request it is in, and
 * hands its listening socket, backlog and all, to the next front.
 *
 * Threads: one acceptor, and one thread per host HTTP connection, which
 * may block on its sockets freely; none of them touches libwebsockets
 * (WebSocket fds go to the net thread through a mailbox).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "internal.h"

#define HEAD_MAX (64 * 1024)
#define BODY_MAX (100u << 20)
#define PEEK_TIMEOUT_MS 10000
#define IDLE_TIMEOUT_S 65
#define THREAD_STACK (256 * 1024)
#define DRAIN_MS 3000

typedef struct front_conn {
	struct front_conn *next;
	struct hl_front *front;
	pthread_t thread;
	int fd;
	int inner; /* the request's connection to libwebsockets, or -1 */
	int idle;  /* waiting for the host's next request */
	int done;
} front_conn;

struct hl_front {
	hl_engine *eng;
	int listen_fd;
	int wake[2];
	pthread_t thread;
	pthread_mutex_t lock;
	front_conn *conns;
	_Atomic int stopping;
	_Atomic int draining; /* no new connections; requests end the open */
	int running;
};

/* ---- small socket helpers --------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads more into b; returns bytes read, 0 at EOF, -1 on error. */
static ssize_t read_more(int fd, hl_buf *b)
{
	char chunk[16384];
	ssize_t r;

	do {
		r = recv(fd, chunk, sizeof(chunk), 0);
	} while (r < 0 && errno == EINTR);
	if (r > 0 && hl_buf_append(b, chunk, (size_t)r) != 0)
		return -1;
	return r;
}

static const char *find_head_end(const hl_buf *b)
{
	return b->len ? memmem(b->data, b->len, "\r\n\r\n", 4) : NULL;
}

/*
 * The value of a header in a request or response head, or NULL. name is
 * without the colon; the value is copied, trimmed, into out.
 */
static const char *head_value(const char *head, size_t len, const char *name,
                              char *out, size_t outlen)
{
	const char *p = memchr(head, '\n', len), *end = head + len;
	size_t n = strlen(name);

	while (p && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', end - line);

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - line) > n && line[n] == ':' &&
		    strncasecmp(line, name, n) == 0) {
			const char *v = line + n + 1, *ve = eol;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			snprintf(out, outlen, "%.*s", (int)(ve - v), v);
			return out;
		}
		p = eol;
	}
	return NULL;
}

/* ---- requests ----------------------------------------------------------- */

/*
 * Decodes a chunked body starting at in[*at]. Returns 1 when complete
 * (trailers consumed), 0 when more bytes are needed, -1 when malformed.
 */
static int dechunk(const hl_buf *in, size_t *at, hl_buf *body)
{
	size_t p = *at;

	for (;;) {
		const char *line = in->data + p;
		const char *eol = memmem(line, in->len - p, "\r\n", 2);
		char *stop;
		unsigned long size;

		if (eol == NULL)
			return in->len - p > 1024 ? -1 : 0;
		size = strtoul(line, &stop, 16);
		if (stop == line)
			return -1;
		if (size == 0) {
			/* Trailers, if any, end with an empty line. */
			const char *end = memmem(
			        eol, in->len - (eol - in->data), "\r\n\r\n", 4);

			if (eol + 2 <= in->data + in->len &&
			    strncmp(eol, "\r\n\r\n", 4) == 0)
				end = eol;
			if (end == NULL)
				return 0;
			*at = (size_t)(end - in->data) + 4;
			return 1;
		}
		if (body->len + size > BODY_MAX)
			return -1;
		if ((size_t)(eol + 2 - in->data) + size + 2 > in->len)
			return 0;
		hl_buf_append(body, eol + 2, size);
		p = (size_t)(eol + 2 - in->data) + size + 2;
		*at = p;
	}
}

/*
 * Hop-by-hop headers that the relay sets itself. A request's framing
 * changes (de-chunked, new length); a response's length stays.
 */
static int relay_drops(const char *line, size_t n, int response)
{
	static const char *const names[] = { "connection:", "keep-alive:",
		                             "transfer-encoding:", "expect:",
		                             "content-length:" };
	size_t i, count = sizeof(names) / sizeof(names[0]) - (response != 0);

	for (i = 0; i < count; i++) {
		size_t k = strlen(names[i]);

		if (n >= k && strncasecmp(line, names[i], k) == 0)
			return 1;
	}
	return 0;
}

/* Writes head (without its blank line) minus hop headers into out. */
static void copy_head(hl_buf *out, const char *head, size_t len, int response)
{
	const char *p = head, *end = head + len;

	while (p < end) {
		const char *eol = memmem(p, end - p, "\r\n", 2);
		size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);

		if (n > 0 && (p == head || !relay_drops(p, n, response))) {
			hl_buf_append(out, p, n);
			hl_buf_append(out, "\r\n", 2);
		}
		p += n + 2;
	}
}

/*
 * Reads one whole request from the host into out, rewritten for the
 * inner port. in holds bytes already read (and keeps what follows).
 * Returns 1 with a request, 0 when the host closed, -1 on a bad request.
 */
static int read_request(int fd, hl_buf *in, hl_buf *out, int *keep_alive)
{
	const char *end;
	char value[64];
	size_t head_len, at;
	hl_buf body = { 0 };
	int chunked, rc;

	while ((end = find_head_end(in)) == NULL) {
		if (in->len > HEAD_MAX)
			return -1;
		rc = (int)read_more(fd, in);
		if (rc <= 0)
			return in->len ? -1 : 0;
	}
	head_len = (size_t)(end - in->data) + 2;
	at = head_len + 2;
	chunked = head_value(in->data, head_len, "transfer-encoding", value,
	                     sizeof(value)) &&
	          strcasestr(value, "chunked");
	*keep_alive = !(head_value(in->data, head_len, "connection", value,
	                           sizeof(value)) &&
	                strcasestr(value, "close"));

	if (chunked) {
		while ((rc = dechunk(in, &at, &body)) == 0) {
			if (read_more(fd, in) <= 0) {
				hl_buf_free(&body);
				return -1;
			}
		}
		if (rc < 0) {
			hl_buf_free(&body);
			return -1;
		}
	} else {
		unsigned long cl = 0;

		if (head_value(in->data, head_len, "content-length", value,
		               sizeof(value)))
			cl = strtoul(value, NULL, 10);
		if (cl > BODY_MAX)
			return -1;
		while (in->len < at + cl) {
			if (read_more(fd, in) <= 0)
				return -1;
		}
		hl_buf_append(&body, in->data + at, cl);
		at += cl;
	}

	out->len = 0;
	copy_head(out, in->data, head_len - 2, 0);
	hl_buf_appendf(out, "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	               body.len);
	hl_buf_append(out, body.data, body.len);
	hl_buf_free(&body);

	/* Keep what the host sent after this request. */
	memmove(in->data, in->data + at, in->len - at);
	in->len -= at;
	return 1;
}

/* ---- the relay ---------------------------------------------------------- */

static int inner_connect(int port)
{
	struct sockaddr_in a = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends the inner answer to the host with keep-alive set as agreed. */
static int relay_response(int host, const hl_buf *resp, int keep_alive)
{
	const char *end = find_head_end(resp);
	hl_buf out = { 0 };
	int rc;

	if (end == NULL)
		return -1;
	copy_head(&out, resp->data, (size_t)(end - resp->data), 1);
	hl_buf_appendf(&out, "Connection: %s\r\n\r\n",
	               keep_alive ? "keep-alive" : "close");
	rc = write_all(host, out.data, out.len);
	hl_buf_free(&out);
	if (rc == 0)
		rc = write_all(host, end + 4,
		               resp->len - (size_t)(end + 4 - resp->data));
	return rc;
}

static const char bad_request[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        "Content-Length: 52\r\nConnection: close\r\n\r\n"
        "{\"message\":\"heartline: malformed request\",\"code\":0}";

static const char bad_gateway[] =
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
        "Content-Length: 52\r\nConnection: close\r\n\r\n"
        "{\"message\":\"heartline: endpoint unavailable\",\"code\":0}";

/*
 * Records the inner connection of c, closing the one before: under the
 * lock, so that a stopping front never shuts down a reused descriptor.
 */
static void set_inner(front_conn *c, int fd)
{
	pthread_mutex_lock(&c->front->lock);
	if (c->inner >= 0)
		close(c->inner);
	c->inner = fd;
	pthread_mutex_unlock(&c->front->lock);
}

static void set_idle(front_conn *c, int idle)
{
	pthread_mutex_lock(&c->front->lock);
	c->idle = idle;
	pthread_mutex_unlock(&c->front->lock);
}

static void relay(front_conn *c)
{
	hl_front *f = c->front;
	hl_buf in = { 0 }, req = { 0 }, resp = { 0 };
	struct timeval idle = { IDLE_TIMEOUT_S, 0 };
	int keep_alive = 1;

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof(idle));
	while (keep_alive && !f->stopping) {
		int rc, inner;

		/* Idle until the first byte of the next request: a draining
		 * front may end the connection until then, never after. */
		if (in.len == 0) {
			set_idle(c, 1);
			rc = (int)read_more(c->fd, &in);
			set_idle(c, 0);
			if (rc <= 0)
				break;
		}
		rc = read_request(c->fd, &in, &req, &keep_alive);
		if (rc == 0)
			break;
		if (rc < 0) {
			write_all(c->fd, bad_request, sizeof(bad_request) - 1);
			break;
		}
		inner = inner_connect(f->eng->inner_port);
		set_inner(c, inner);
		if (inner < 0 || write_all(inner, req.data, req.len) != 0) {
			set_inner(c, -1);
			write_all(c->fd, bad_gateway, sizeof(bad_gateway) - 1);
			break;
		}
		resp.len = 0;
		while (read_more(inner, &resp) > 0)
			;
		set_inner(c, -1);
		/* The host's next request goes to the engine after this. */
		if (f->draining)
			keep_alive = 0;
		if (relay_response(c->fd, &resp, keep_alive) != 0)
			break;
	}
	hl_buf_free(&in);
	hl_buf_free(&req);
	hl_buf_free(&resp);
}

/*
 * Looks at the head without consuming it: a WebSocket upgrade goes to
 * libwebsockets with every byte still in the socket.
 */
static int is_upgrade(int fd)
{
	char head[4096], value[64];
	int waited = 0;

	for (;;) {
		ssize_t n = recv(fd, head, sizeof(head) - 1, MSG_PEEK);

		if (n <= 0)
			return -1;
		head[n] = '\0';
		if (strstr(head, "\r\n\r\n") || n == sizeof(head) - 1)
			return head_value(head, (size_t)n, "upgrade", value,
			                  sizeof(value)) &&
			       strcasecmp(value, "websocket") == 0;
		if (waited++ > PEEK_TIMEOUT_MS)
			return -1;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
}

static void *conn_main(void *arg)
{
	front_conn *c = arg;
	hl_front *f = c->front;
	int up;

	/* A connection that has sent nothing yet is idle (see drain). */
	set_idle(c, 1);
	up = is_upgrade(c->fd);
	set_idle(c, 0);

	if (up == 1) {
		hl_net_adopt(f->eng, c->fd);
		c->fd = -1;
	} else if (up == 0) {
		relay(c);
	}
	pthread_mutex_lock(&f->lock);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->done = 1;
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* Joins connection threads that have finished. */
static void reap(hl_front *f, int all)
{
	front_conn **p = &f->conns;

	while (*p) {
		front_conn *c = *p;
		int done;

		pthread_mutex_lock(&f->lock);
		done = c->done;
		/* A thread waiting on a slow answer wakes up too. */
		if (all && !done && c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
		if (all && !done && c->inner >= 0)
			shutdown(c->inner, SHUT_RDWR);
		pthread_mutex_unlock(&f->lock);
		if (!done && !all) {
			p = &c->next;
			continue;
		}
		pthread_join(c->thread, NULL);
		*p = c->next;
		free(c);
	}
}

static void accept_one(hl_front *f)
{
	pthread_attr_t attr;
	front_conn *c;
	int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC), one = 1;

	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->front = f;
	c->fd = fd;
	c->inner = -1;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	if (pthread_create(&c->thread, &attr, conn_main, c) != 0) {
		close(fd);
		free(c);
	} else {
		c->next = f->conns;
		f->conns = c;
	}
	pthread_attr_destroy(&attr);
}

/*
 * A draining front ends each connection once it has answered the request
 * it is in (with Connection: close), for at most DRAIN_MS: those that
 * wait for the host's next request end now, unless it has begun to
 * arrive.
 */
static void drain(hl_front *f)
{
	int64_t deadline = hl_mono_ms() + DRAIN_MS;

	while (f->conns && hl_mono_ms() < deadline) {
		front_conn *c;
		int pending;

		pthread_mutex_lock(&f->lock);
		for (c = f->conns; c; c = c->next) {
			if (c->idle && c->fd >= 0 &&
			    ioctl(c->fd, FIONREAD, &pending) == 0 &&
			    pending == 0)
				shutdown(c->fd, SHUT_RD);
		}
		pthread_mutex_unlock(&f->lock);
		reap(f, 0);
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
}

static void *front_main(void *arg)
{
	hl_front *f = arg;

	while (!f->stopping && !f->draining) {
		struct pollfd pfd[2] = { { f->listen_fd, POLLIN, 0 },
			                 { f->wake[0], POLLIN, 0 } };

		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN)
			accept_one(f);
		reap(f, 0);
	}
	if (f->draining)
		drain(f);
	reap(f, 1);
	return NULL;
}

/*
 * A front on listen_fd, which it owns from now on, listening or not:
 * connections wait in the backlog until hl_front_run(), once the net
 * thread is there to take WebSockets.
 */
static hl_front *front_new(hl_engine *eng, int listen_fd)
{
	hl_front *f = calloc(1, sizeof(*f));

	if (f == NULL || pipe2(f->wake, O_CLOEXEC) != 0) {
		if (listen_fd >= 0)
			close(listen_fd);
		free(f);
		return NULL;
	}
	f->eng = eng;
	f->listen_fd = listen_fd;
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

/* The port f listens on, or -1. */
static int listening_port(hl_front *f)
{
	struct sockaddr_in a = { 0 };
	socklen_t alen = sizeof(a);

	if (getsockname(f->listen_fd, (struct sockaddr *)&a, &alen) != 0)
		return -1;
	return ntohs(a.sin_port);
}

/* Binds the host's port. */
hl_front *hl_front_bind(hl_engine *eng, int port, char *err, size_t errlen)
{
	struct sockaddr_in a = { 0 };
	int one = 1;
	hl_front *f =
	        front_new(eng, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));

	if (f == NULL || f->listen_fd < 0) {
		snprintf(err, errlen, "cannot start the local endpoint");
		hl_front_stop(f);
		return NULL;
	}
	setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(f->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(f->listen_fd, 128) != 0 ||
	    (eng->port = listening_port(f)) < 0) {
		snprintf(err, errlen,
		         "config: listen_port %d: cannot listen on 127.0.0.1: "
		         "%s",
		         port, strerror(errno));
		hl_front_stop(f);
		return NULL;
	}
	return f;
}

/* Takes over the listening socket of a front released before; fd is the
 * front's from then on, also when this fails. */
hl_front *hl_front_adopt(hl_engine *eng, int fd, char *err, size_t errlen)
{
	hl_front *f = front_new(eng, fd);

	if (f == NULL || (eng->port = listening_port(f)) < 0) {
		snprintf(err, errlen, "cannot take over the local endpoint");
		hl_front_stop(f);
		return NULL;
	}
	return f;
}

int hl_front_run(hl_front *f)
{
	if (pthread_create(&f->thread, NULL, front_main, f) != 0)
		return -1;
	f->running = 1;
	return 0;
}

/* Ends the front's threads and frees it; returns its listening socket. */
static int front_end(hl_front *f)
{
	int fd = f->listen_fd;

	if (write(f->wake[1], "x", 1) < 0) {
		/* The poll timeout ends the loop within a second anyway. */
	}
	if (f->running)
		pthread_join(f->thread, NULL);
	close(f->wake[0]);
	close(f->wake[1]);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return fd;
}

void hl_front_stop(hl_front *f)
{
	int fd;

	if (f == NULL)
		return;
	f->stopping = 1;
	fd = front_end(f);
	if (fd >= 0)
		close(fd);
}

/*
 * Stops taking connections and lets the open ones finish the requests
 * they are in (see drain), then frees the front. Returns its listening
 * socket, still listening, for hl_front_adopt: the connections the host
 * makes meanwhile wait in its backlog.
 */
int hl_front_release(hl_front *f)
{
	f->draining = 1;
	return front_end(f);
}
