/*
 * serve.c - `heartline`, the command-line host of libheartline.so.
 *
 *   heartline serve --config FILE [--library PATH] [--status-json]
 *   heartline version [--library PATH]
 *
 * `serve` runs one engine outside OpenClaw, as a sidecar for any bot
 * framework that takes a custom Discord API base. It loads the library
 * with dlopen (by default the libheartline.so next to this binary),
 * checks its ABI version, starts an engine from the file's JSON and
 * prints the engine's origin. Then, until SIGINT or SIGTERM:
 *
 *   - on a terminal, it redraws a table of the bots once a second, with
 *     the latest log lines under it;
 *   - otherwise it prints log lines as they drain, `time level msg`;
 *   - with --status-json, it prints one status snapshot per second on
 *     stdout, one JSON object a line, and the log lines on stderr.
 *
 * The engine runs on its own threads; this file only polls it. A
 * `library` key in the config file is read here (as the OpenClaw plugin
 * does) and not passed to the engine; --library wins over it.
 */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "heartline.h"

#define TICK_MS 100
#define TICKS_PER_STATUS 10
#define LOG_BUF_BYTES (64 * 1024)
#define ERR_BUF_BYTES 1024
#define CONFIG_MAX_BYTES (1024 * 1024)
#define RECENT_LOGS 8
#define LOG_LINE_MAX 1100
#define ORIGIN_WAIT_MS 2000

/* The ABI, as found in the loaded library. */
struct hl_api {
	void *dl;
	int (*abi_version)(void);
	const char *(*version)(void);
	hl_engine *(*start)(const char *, char *, size_t);
	void (*stop)(hl_engine *);
	size_t (*status)(hl_engine *, char *, size_t);
	size_t (*logs_drain)(hl_engine *, char *, size_t);
};

enum out_mode { OUT_LOG, OUT_TABLE, OUT_STATUS_JSON };

struct options {
	const char *config_path;
	const char *library;
	int status_json;
};

/* The last few log lines, shown under the table on a terminal. */
struct recent {
	char lines[RECENT_LOGS][LOG_LINE_MAX];
	int next;
	int count;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *out)
{
	fputs("usage: heartline serve --config FILE [--library PATH] "
	      "[--status-json]\n"
	      "       heartline version [--library PATH]\n",
	      out);
}

/* ------------------------------------------------------------ loading */

/* The libheartline.so that sits next to this binary. */
static int default_library(char *path, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n < 0)
		return -1;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	if ((size_t)snprintf(path, len, "%s/libheartline.so", self) >= len)
		return -1;
	return 0;
}

static void *symbol(void *dl, const char *name, const char *path)
{
	void *sym = dlsym(dl, name);

	if (sym == NULL)
		fprintf(stderr, "heartline: %s has no %s\n", path, name);
	return sym;
}

/* Opens the library and checks that it speaks our ABI. */
static int api_load(struct hl_api *api, const char *path)
{
	memset(api, 0, sizeof(*api));
	api->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (api->dl == NULL) {
		fprintf(stderr, "heartline: %s\n", dlerror());
		return -1;
	}

	api->abi_version =
	        (int (*)(void))symbol(api->dl, "hl_abi_version", path);
	api->version =
	        (const char *(*)(void))symbol(api->dl, "hl_version", path);
	api->start = (hl_engine * (*)(const char *, char *, size_t))
	        symbol(api->dl, "hl_start", path);
	api->stop = (void (*)(hl_engine *))symbol(api->dl, "hl_stop", path);
	api->status = (size_t(*)(hl_engine *, char *, size_t))symbol(
	        api->dl, "hl_status", path);
	api->logs_drain = (size_t(*)(hl_engine *, char *, size_t))symbol(
	        api->dl, "hl_logs_drain", path);
	if (!api->abi_version || !api->version || !api->start || !api->stop ||
	    !api->status || !api->logs_drain)
		goto fail;

	if (api->abi_version() != HL_ABI_VERSION) {
		fprintf(stderr, "heartline: %s has ABI %d, we need %d\n", path,
		        api->abi_version(), HL_ABI_VERSION);
		goto fail;
	}
	return 0;

fail:
	dlclose(api->dl);
	api->dl = NULL;
	return -1;
}

/* ------------------------------------------------------------- config */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "heartline: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	text = malloc(CONFIG_MAX_BYTES + 1);
	if (text == NULL)
		goto out;

	n = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
	if (ferror(f) || n > CONFIG_MAX_BYTES) {
		fprintf(stderr, "heartline: %s: unreadable or over %d bytes\n",
		        path, CONFIG_MAX_BYTES);
		free(text);
		text = NULL;
		goto out;
	}
	text[n] = '\0';
out:
	fclose(f);
	return text;
}

/*
 * Reads the config file and takes out the host's own `library` key.
 * Returns the JSON for hl_start (caller frees) and sets *library to a
 * copy of that key's value, or NULL when there is none.
 */
static char *load_config(const char *path, char **library)
{
	char *text = read_file(path);
	char *json = NULL;
	cJSON *root, *lib;

	*library = NULL;
	if (text == NULL)
		return NULL;
	root = cJSON_Parse(text);
	free(text);
	if (!cJSON_IsObject(root)) {
		fprintf(stderr, "heartline: %s: not a JSON object\n", path);
		goto out;
	}

	lib = cJSON_DetachItemFromObjectCaseSensitive(root, "library");
	if (lib != NULL && !cJSON_IsString(lib)) {
		fprintf(stderr, "heartline: %s: library must be a string\n",
		        path);
		cJSON_Delete(lib);
		goto out;
	}
	if (lib != NULL)
		*library = strdup(lib->valuestring);
	cJSON_Delete(lib);
	json = cJSON_PrintUnformatted(root);
out:
	cJSON_Delete(root);
	return json;
}

/* ------------------------------------------------------------- status */

/* A fresh status snapshot (caller frees), or NULL without memory. */
static char *status_text(const struct hl_api *api, hl_engine *engine)
{
	size_t cap = 4096, n;
	char *buf = NULL, *grown;

	for (;;) {
		grown = realloc(buf, cap);
		if (grown == NULL) {
			free(buf);
			return NULL;
		}
		buf = grown;
		n = api->status(engine, buf, cap);
		if (n < cap)
			return buf;
		cap = n + 1;
	}
}

static double num(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(item) ? item->valuedouble : 0;
}

static const char *str(const cJSON *obj, const char *key, const char *dflt)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(item) ? item->valuestring : dflt;
}

static void format_uptime(char *out, size_t len, double ms)
{
	long s = (long)(ms / 1000);

	if (s >= 3600)
		snprintf(out, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
	else
		snprintf(out, len, "%ldm%02lds", s / 60, s % 60);
}

/* One row per bot; the layout matches the header in draw_table(). */
static void print_bot(const cJSON *bot)
{
	const char *name = str(bot, "id", str(bot, "token_hash", "?"));
	const cJSON *down = cJSON_GetObjectItemCaseSensitive(bot, "downstream");
	int fatal = (int)num(bot, "fatal_code");
	char state[24];

	if (fatal > 0)
		snprintf(state, sizeof(state), "fatal %d", fatal);
	else
		snprintf(state, sizeof(state), "%s", str(bot, "state", "?"));

	printf("%-19.19s %-11s %4s %6.0f %6.0f %5.0f %5.0f %6.0f %7.0f\n", name,
	       state, cJSON_IsTrue(down) ? "yes" : "no",
	       num(bot, "heartbeat_rtt_ms"), num(bot, "heartbeat_late_ms_max"),
	       num(bot, "drops"), num(bot, "identifies"), num(bot, "typing"),
	       num(bot, "replies"));
}

/* Clears the terminal and draws the engine's state and recent logs. */
static void draw_table(const char *status, const struct recent *recent)
{
	cJSON *root = cJSON_Parse(status);
	const cJSON *bots, *bot, *rest;
	char uptime[32];
	int i;

	printf("\033[H\033[J");
	if (root == NULL) {
		printf("heartline: unreadable status\n");
		goto logs;
	}
	rest = cJSON_GetObjectItemCaseSensitive(root, "rest");
	format_uptime(uptime, sizeof(uptime), num(root, "uptime_ms"));
	printf("heartline %s  %s  up %s\n", str(root, "version", "?"),
	       str(root, "origin", "?"), uptime);
	printf("rest: %.0f requests, %.0f in flight, %.0f errors\n\n",
	       num(rest, "requests"), num(rest, "in_flight"),
	       num(rest, "errors"));
	printf("%-19s %-11s %4s %6s %6s %5s %5s %6s %7s\n", "BOT", "STATE",
	       "HOST", "RTT ms", "LATE", "DROPS", "IDENT", "TYPING", "REPLIES");

	bots = cJSON_GetObjectItemCaseSensitive(root, "bots");
	cJSON_ArrayForEach (bot, bots)
		print_bot(bot);
	if (cJSON_GetArraySize(bots) == 0)
		printf("(no bot has connected yet)\n");
	cJSON_Delete(root);

logs:
	printf("\n");
	for (i = 0; i < recent->count; i++) {
		int at = (recent->next - recent->count + i + RECENT_LOGS) %
		         RECENT_LOGS;

		printf("%s\n", recent->lines[at]);
	}
	fflush(stdout);
}

/* --------------------------------------------------------------- logs */

/* One record as `time level msg`, the time in UTC with milliseconds. */
static void format_record(char *out, size_t len, const char *line)
{
	cJSON *rec = cJSON_Parse(line);
	double t;
	time_t secs;
	struct tm tm;
	char when[32] = "?";

	if (rec == NULL) {
		snprintf(out, len, "%s", line);
		return;
	}
	t = num(rec, "t");
	secs = (time_t)(t / 1000);
	if (gmtime_r(&secs, &tm) != NULL) {
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(when + strlen(when), sizeof(when) - strlen(when),
		         ".%03dZ", (int)((long long)t % 1000));
	}
	snprintf(out, len, "%s %-5s %s", when, str(rec, "level", "?"),
	         str(rec, "msg", ""));
	cJSON_Delete(rec);
}

static void emit_record(enum out_mode mode, struct recent *recent,
                        const char *line)
{
	char text[LOG_LINE_MAX];

	format_record(text, sizeof(text), line);
	switch (mode) {
	case OUT_LOG:
		printf("%s\n", text);
		break;
	case OUT_STATUS_JSON:
		fprintf(stderr, "%s\n", text);
		break;
	case OUT_TABLE:
		memcpy(recent->lines[recent->next], text, sizeof(text));
		recent->next = (recent->next + 1) % RECENT_LOGS;
		if (recent->count < RECENT_LOGS)
			recent->count++;
		break;
	}
}

/* Moves every buffered record out of the engine. */
static void drain_logs(const struct hl_api *api, hl_engine *engine,
                       enum out_mode mode, struct recent *recent, char *buf)
{
	size_t n;
	char *line, *save;

	while ((n = api->logs_drain(engine, buf, LOG_BUF_BYTES)) > 0) {
		buf[n < LOG_BUF_BYTES ? n : LOG_BUF_BYTES - 1] = '\0';
		for (line = strtok_r(buf, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			emit_record(mode, recent, line);
	}
	fflush(mode == OUT_STATUS_JSON ? stderr : stdout);
}

/* -------------------------------------------------------------- serve */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };

	nanosleep(&ts, NULL);
}

static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void show_status(const struct hl_api *api, hl_engine *engine,
                        enum out_mode mode, const struct recent *recent)
{
	char *status;

	if (mode == OUT_LOG)
		return;
	status = status_text(api, engine);
	if (status == NULL)
		return;
	if (mode == OUT_STATUS_JSON) {
		printf("%s\n", status);
		fflush(stdout);
	} else {
		draw_table(status, recent);
	}
	free(status);
}

/*
 * Polls the engine until a signal asks us to stop, then drains once more
 * so that nothing logged before the stop is lost.
 */
static void run(const struct hl_api *api, hl_engine *engine, enum out_mode mode)
{
	static struct recent recent;
	char *buf = malloc(LOG_BUF_BYTES);
	long tick;

	if (buf == NULL) {
		fprintf(stderr, "heartline: out of memory\n");
		return;
	}
	for (tick = 0; !stop_requested; tick++) {
		drain_logs(api, engine, mode, &recent, buf);
		if (tick % TICKS_PER_STATUS == 0)
			show_status(api, engine, mode, &recent);
		sleep_ms(TICK_MS);
	}

	if (mode == OUT_TABLE) {
		mode = OUT_LOG;
		printf("\n");
	}
	drain_logs(api, engine, mode, &recent, buf);
	free(buf);
}

/*
 * Prints the engine's origin. The net thread publishes the first status
 * a moment after hl_start returns (until then it is `{}`), so this waits
 * for it, on a bound. Returns -1 when no origin came.
 */
static int announce(const struct hl_api *api, hl_engine *engine,
                    enum out_mode mode)
{
	FILE *out = mode == OUT_STATUS_JSON ? stderr : stdout;
	const char *origin = NULL;
	cJSON *root = NULL;
	char *status;
	int waited;

	for (waited = 0; origin == NULL && waited <= ORIGIN_WAIT_MS;
	     waited += 5) {
		if (waited > 0)
			sleep_ms(5);
		cJSON_Delete(root);
		status = status_text(api, engine);
		root = status ? cJSON_Parse(status) : NULL;
		free(status);
		origin = str(root, "origin", NULL);
	}

	if (origin == NULL)
		fprintf(stderr, "heartline: the engine reported no origin\n");
	else
		fprintf(out, "heartline %s listening at %s\n", api->version(),
		        origin);
	fflush(out);
	cJSON_Delete(root);
	return origin == NULL ? -1 : 0;
}

static int serve(const struct options *opt)
{
	char path[PATH_MAX], err[ERR_BUF_BYTES] = "";
	char *config, *file_library = NULL;
	const char *library = opt->library;
	struct hl_api api;
	hl_engine *engine;
	enum out_mode mode;
	int rc = 1;

	config = load_config(opt->config_path, &file_library);
	if (config == NULL)
		goto out;
	if (library == NULL)
		library = file_library;
	if (library == NULL && default_library(path, sizeof(path)) == 0)
		library = path;
	if (library == NULL || api_load(&api, library) != 0)
		goto out;

	if (opt->status_json)
		mode = OUT_STATUS_JSON;
	else
		mode = isatty(STDOUT_FILENO) ? OUT_TABLE : OUT_LOG;

	catch_signals();
	engine = api.start(config, err, sizeof(err));
	if (engine == NULL) {
		fprintf(stderr, "heartline: %s\n", err);
		goto close;
	}
	if (announce(&api, engine, mode) == 0) {
		run(&api, engine, mode);
		rc = 0;
	}
	api.stop(engine);
close:
	dlclose(api.dl);
out:
	free(config);
	free(file_library);
	return rc;
}

static int version(const struct options *opt)
{
	char path[PATH_MAX];
	const char *library = opt->library;
	struct hl_api api;

	if (library == NULL && default_library(path, sizeof(path)) == 0)
		library = path;
	if (library == NULL || api_load(&api, library) != 0)
		return 1;
	printf("heartline %s (abi %d)\n", api.version(), api.abi_version());
	dlclose(api.dl);
	return 0;
}

/* --------------------------------------------------------------- main */

static int parse_options(int argc, char **argv, struct options *opt)
{
	int i;

	memset(opt, 0, sizeof(*opt));
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			opt->config_path = argv[++i];
		else if (strcmp(argv[i], "--library") == 0 && i + 1 < argc)
			opt->library = argv[++i];
		else if (strcmp(argv[i], "--status-json") == 0)
			opt->status_json = 1;
		else
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options opt;

	if (argc < 2 || parse_options(argc, argv, &opt) != 0) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "serve") == 0 && opt.config_path != NULL)
		return serve(&opt);
	if (strcmp(argv[1], "version") == 0 && !opt.status_json &&
	    opt.config_path == NULL)
		return version(&opt);
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
