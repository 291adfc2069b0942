/*
 * test_engine.c - the exported ABI without any Discord: configuration
 * errors, status and logs, several engines at once, start/stop and
 * detach/attach repeated many times (leaks show up under LeakSanitizer).
 */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "handover.h"

static void bad_config_gives_no_engine(void)
{
	char err[256] = "";

	CHECK(hl_start("{\"listen_port\":-1}", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "listen_port") != NULL);
	CHECK(hl_start("{\"gateway_url\":42}", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "gateway_url") != NULL);
	CHECK(hl_start("not json", NULL, 0) == NULL);
}

static void status_names_the_port(void)
{
	char err[256] = "", status[4096], needle[64];
	hl_engine *e = hl_start("{}", err, sizeof(err));
	size_t n = 0;
	int i;

	CHECK(e != NULL);
	if (e == NULL)
		return;
	for (i = 0; i < 100 && n <= 2; i++) {
		n = hl_status(e, status, sizeof(status));
		usleep(10000);
	}
	CHECK(n > 2 && n < sizeof(status));
	CHECK(strstr(status, "\"origin\":\"http://127.0.0.1:") != NULL);
	CHECK(strstr(status, "\"bots\":[]") != NULL);
	snprintf(needle, sizeof(needle), "\"abi\":%d", HL_ABI_VERSION);
	CHECK(strstr(status, needle) != NULL);
	/* A short buffer gets a cut, terminated copy and the full length. */
	CHECK(hl_status(e, status, 8) == n && strlen(status) == 7);
	hl_stop(e);
}

static void logs_drain(void)
{
	char logs[8192];
	hl_engine *e = hl_start("{}", NULL, 0);

	CHECK(e != NULL);
	CHECK(hl_logs_drain(e, logs, sizeof(logs)) > 0);
	CHECK(strstr(logs, "engine started") != NULL);
	CHECK(hl_logs_drain(e, logs, sizeof(logs)) == 0);
	hl_stop(e);
}

static void port_in_use_is_an_error(void)
{
	char err[256] = "", status[4096], cfg[64];
	hl_engine *a = hl_start("{}", err, sizeof(err)), *b;
	const char *p;

	CHECK(a != NULL);
	while (hl_status(a, status, sizeof(status)) <= 2)
		usleep(10000);
	p = strstr(status, "\"port\":");
	CHECK(p != NULL);
	if (p == NULL) {
		hl_stop(a);
		return;
	}
	snprintf(cfg, sizeof(cfg), "{\"listen_port\":%d}", atoi(p + 7));
	b = hl_start(cfg, err, sizeof(err));
	CHECK(b == NULL);
	CHECK(strstr(err, "listen_port") != NULL);
	hl_stop(b);
	hl_stop(a);
}

static void many_engines_many_times(void)
{
	hl_engine *e[4];
	int round, i;

	for (round = 0; round < 25; round++) {
		for (i = 0; i < 4; i++) {
			e[i] = hl_start("{\"log_level\":\"debug\"}", NULL, 0);
			CHECK(e[i] != NULL);
		}
		for (i = 0; i < 4; i++)
			hl_stop(e[i]);
	}
}

/* The origin in e's status, into origin. */
static void origin_of(hl_engine *e, char *origin, size_t len)
{
	char status[4096];
	const char *p, *end;

	while (hl_status(e, status, sizeof(status)) <= 2)
		usleep(10000);
	p = strstr(status, "\"origin\":\"");
	end = p ? strchr(p + 10, '"') : NULL;
	snprintf(origin, len, "%.*s", end ? (int)(end - p - 10) : 0,
	         p ? p + 10 : "");
}

/*
 * An engine detached and attached again, many times: the same port, the
 * first engine's last records in the next one's log, a handover of
 * another configuration refused and still good, nothing leaked.
 */
static void detach_attach_again_and_again(void)
{
	char err[256] = "", first[64], now[64], logs[65536];
	hl_engine *e = hl_start("{\"log_level\":\"debug\"}", err, sizeof(err));
	hl_handover *h;
	int round;

	CHECK(e != NULL);
	if (e == NULL)
		return;
	CHECK(hl_handover_version() > 0);
	origin_of(e, first, sizeof(first));
	for (round = 0; round < 20 && e; round++) {
		h = hl_detach(e, err, sizeof(err));
		CHECK(h != NULL);
		if (h == NULL)
			return;
		if (round == 0) {
			CHECK(hl_attach("{\"api_base\":\"https://"
			                "example.invalid\"}",
			                h, err, sizeof(err)) == NULL);
			CHECK(strstr(err, "api_base differs") != NULL);
			/* As another build's handover would look. */
			h->version++;
			CHECK(hl_attach("{}", h, err, sizeof(err)) == NULL);
			CHECK(strstr(err, "state version") != NULL);
			h->version--;
		}
		e = hl_attach("{\"log_level\":\"debug\"}", h, err, sizeof(err));
		CHECK(e != NULL);
		if (e == NULL)
			return;
		origin_of(e, now, sizeof(now));
		CHECK(strcmp(now, first) == 0);
	}
	CHECK(hl_logs_drain(e, logs, sizeof(logs)) > 0);
	CHECK(strstr(logs, "engine handing over sessions=0") != NULL);
	CHECK(strstr(logs, "engine took over sessions=0") != NULL);
	CHECK(hl_detach(NULL, err, sizeof(err)) == NULL);
	CHECK(hl_attach("{}", NULL, err, sizeof(err)) == NULL);

	/* A handover nobody takes is closed, and its port is free again. */
	h = hl_detach(e, err, sizeof(err));
	CHECK(h != NULL);
	hl_handover_close(h);
	hl_handover_close(NULL);
	snprintf(logs, sizeof(logs), "{\"listen_port\":%s}",
	         strrchr(first, ':') + 1);
	e = hl_start(logs, err, sizeof(err));
	CHECK(e != NULL);
	hl_stop(e);
}

int main(void)
{
	RUN(bad_config_gives_no_engine);
	RUN(status_names_the_port);
	RUN(logs_drain);
	RUN(port_in_use_is_an_error);
	RUN(many_engines_many_times);
	RUN(detach_attach_again_and_again);
	return CHECK_DONE();
}
