/*
 * test_parsers.c - the engine's small parsers and buffers: configuration,
 * URLs, the replay buffer, CDN rewriting and the log buffer.
 */
#include <stdlib.h>

#include "check.h"
#include "internal.h"

static void config_defaults(void)
{
	hl_config cfg;
	char err[256] = "";

	CHECK(hl_config_parse("{}", &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.api_base, "https://discord.com/api/v10");
	CHECK_STR(cfg.cdn_base, "https://cdn.discordapp.com");
	CHECK(cfg.gateway_url == NULL);
	CHECK(cfg.listen_port == 0);
	CHECK(cfg.replay_buffer == 2000);
	hl_config_free(&cfg);
}

static void config_values(void)
{
	hl_config cfg;
	char err[256] = "";

	CHECK(hl_config_parse("{\"listen_port\":4321,\"api_base\":"
	                      "\"https://localhost:9/api/v10/\","
	                      "\"log_level\":\"debug\",\"replay_buffer\":64}",
	                      &cfg, err, sizeof(err)) == 0);
	CHECK(cfg.listen_port == 4321);
	CHECK_STR(cfg.api_base, "https://localhost:9/api/v10");
	CHECK(cfg.log_level == HL_DEBUG);
	CHECK(cfg.replay_buffer == 64);
	hl_config_free(&cfg);
}

static void config_errors_name_the_field(void)
{
	static const struct {
		const char *json;
		const char *needle;
	} cases[] = {
		{ "[1]", "not a JSON object" },
		{ "{", "not a JSON object" },
		{ "{\"listen_port\":70000}", "listen_port" },
		{ "{\"listen_port\":\"80\"}", "listen_port" },
		{ "{\"listen_port\":1.5}", "listen_port" },
		{ "{\"api_base\":\"ftp://x\"}", "api_base" },
		{ "{\"api_base\":\"\"}", "api_base" },
		{ "{\"log_level\":\"loud\"}", "log_level" },
		{ "{\"replay_buffer\":1}", "replay_buffer" },
		{ "{\"lisen_port\":1}", "unknown field lisen_port" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hl_config cfg;
		char err[256] = "";

		CHECK(hl_config_parse(cases[i].json, &cfg, err, sizeof(err)) !=
		      0);
		if (strstr(err, cases[i].needle) == NULL) {
			fprintf(stderr, "  %s -> %s\n", cases[i].json, err);
			check_failed = 1;
		}
	}
}

static void url_parse(void)
{
	hl_url u;

	CHECK(hl_url_parse("wss://gateway.discord.gg", &u) == 0);
	CHECK(u.tls == 1 && u.port == 443);
	CHECK_STR(u.host, "gateway.discord.gg");
	CHECK_STR(u.path, "/");
	CHECK(hl_url_parse("ws://127.0.0.1:8080/x?y=1", &u) == 0);
	CHECK(u.tls == 0 && u.port == 8080);
	CHECK_STR(u.path, "/x?y=1");
	CHECK(hl_url_parse("https://localhost:9?v=10", &u) == 0);
	CHECK_STR(u.path, "/?v=10");
	CHECK(hl_url_parse("http://h:0/", &u) != 0);
	CHECK(hl_url_parse("http://h:99999/", &u) != 0);
	CHECK(hl_url_parse("http:///x", &u) != 0);
	CHECK(hl_url_parse("file:///etc/passwd", &u) != 0);
	CHECK(hl_url_parse("http://h:12x/", &u) != 0);
}

static char *dupstr(const char *s)
{
	char *p = malloc(strlen(s) + 1);

	strcpy(p, s);
	return p;
}

static void replay_bounds(void)
{
	hl_replay r;
	char item[32];
	size_t len;
	int i;

	CHECK(hl_replay_init(&r, 4) == 0);
	CHECK(hl_replay_covers(&r, 0));
	CHECK(!hl_replay_covers(&r, 1));
	for (i = 1; i <= 6; i++) {
		snprintf(item, sizeof(item), "e%d", i);
		hl_replay_push(&r, dupstr(item), strlen(item));
	}
	/* Items 3..6 remain: a resume after 2 works, after 1 does not. */
	CHECK(r.first_seq == 3);
	CHECK(hl_replay_covers(&r, 2));
	CHECK(hl_replay_covers(&r, 6));
	CHECK(!hl_replay_covers(&r, 1));
	CHECK(!hl_replay_covers(&r, 7));
	CHECK_STR(hl_replay_at(&r, 3, &len), "e3");
	CHECK_STR(hl_replay_at(&r, 6, &len), "e6");
	CHECK(hl_replay_at(&r, 2, &len) == NULL);
	hl_replay_clear(&r, 1);
	CHECK(r.count == 0 && hl_replay_covers(&r, 0));
	hl_replay_free(&r);
}

/* A ring that starts small keeps everything up to its cap as it grows. */
static void replay_grows_to_cap(void)
{
	hl_replay r;
	char item[32];
	size_t len;
	int i, ok = 1;

	CHECK(hl_replay_init(&r, 100) == 0);
	CHECK(r.slots < 100);
	for (i = 1; i <= 250; i++) {
		snprintf(item, sizeof(item), "e%d", i);
		hl_replay_push(&r, dupstr(item), strlen(item));
	}
	CHECK(r.slots == 100 && r.count == 100 && r.first_seq == 151);
	for (i = 151; i <= 250; i++) {
		const char *p = hl_replay_at(&r, i, &len);

		snprintf(item, sizeof(item), "e%d", i);
		ok &= p != NULL && strcmp(p, item) == 0 && len == strlen(item);
	}
	CHECK(ok);
	hl_replay_free(&r);
}

static void rewrite_cdn_links(void)
{
	cJSON *d = cJSON_Parse(
	        "{\"attachments\":[{\"url\":\"https://cdn.discordapp.com/"
	        "attachments/1/2/a.png?ex=1\",\"proxy_url\":\"https://media."
	        "discordapp.net/attachments/1/2/a.png\"}],\"content\":"
	        "\"see https://cdn.discordapp.com/x\"}");
	cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "attachments"), 0);

	CHECK(hl_rewrite_cdn(d, "http://127.0.0.1:5") == 2);
	CHECK_STR(cJSON_GetObjectItem(a, "url")->valuestring,
	          "http://127.0.0.1:5/api/v10/_heartline/cdn/"
	          "attachments/1/2/a.png?ex=1");
	CHECK_STR(cJSON_GetObjectItem(a, "proxy_url")->valuestring,
	          "http://127.0.0.1:5/api/v10/_heartline/media/"
	          "attachments/1/2/a.png");
	/* Text that merely mentions a link is the user's, not ours. */
	CHECK_STR(cJSON_GetObjectItem(d, "content")->valuestring,
	          "see https://cdn.discordapp.com/x");
	cJSON_Delete(d);
}

static void log_drain_whole_records(void)
{
	hl_log *log = hl_log_new(HL_INFO);
	char buf[4096];
	size_t n;

	hl_logf(log, HL_DEBUG, "hidden");
	hl_logf(log, HL_INFO, "one \"quoted\" bot=%s", "ab12cd34");
	hl_logf(log, HL_ERROR, "two");
	n = hl_log_drain(log, buf, 40);
	CHECK(n == 0); /* no whole record fits */
	n = hl_log_drain(log, buf, sizeof(buf));
	CHECK(n == strlen(buf));
	CHECK(strstr(buf, "hidden") == NULL);
	CHECK(strstr(buf, "\"level\":\"info\",\"msg\":\"one \\\"quoted\\\" "
	                  "bot=ab12cd34\"}\n") != NULL);
	CHECK(strstr(buf, "\"level\":\"error\",\"msg\":\"two\"}\n") != NULL);
	CHECK(hl_log_drain(log, buf, sizeof(buf)) == 0);
	hl_log_free(log);
}

int main(void)
{
	RUN(config_defaults);
	RUN(config_values);
	RUN(config_errors_name_the_field);
	RUN(url_parse);
	RUN(replay_bounds);
	RUN(replay_grows_to_cap);
	RUN(rewrite_cdn_links);
	RUN(log_drain_whole_records);
	return CHECK_DONE();
}
