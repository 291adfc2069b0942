/*
 * test_parsers.c - the engine's small parsers and buffers: configuration,
 * URLs, the replay buffer, CDN rewriting, the log buffer, the scan of
 * gateway frames and the guild snapshots.
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

static int scan_text(const char *text, hl_frame *f)
{
	return hl_frame_scan(text, strlen(text), f);
}

static void frame_scan_finds_the_fields(void)
{
	static const char text[] = "{\"op\":0,\"t\":\"MESSAGE_CREATE\",\"s\":"
	                           "42,\"d\":{\"id\":\"1\","
	                           "\"content\":\"a \\\"q\\\" "
	                           "\\u00e9\",\"n\":[1,-2.5e3,true,false,"
	                           "null,{}]}}";
	const char *d = strstr(text, "{\"id\"");
	hl_frame f;

	CHECK(hl_frame_scan(text, strlen(text), &f) == 0);
	CHECK(f.op == 0);
	CHECK(f.tlen == 14 && memcmp(f.t, "MESSAGE_CREATE", 14) == 0);
	CHECK(f.s == 42);
	CHECK(f.d == d && f.dlen == strlen(d) - 1);

	CHECK(scan_text(" { \"op\" : 11 , \"d\" : null } ", &f) == 0);
	CHECK(f.op == 11 && f.t == NULL && !f.odd);
	CHECK(f.s == HL_FRAME_NONE && f.dlen == 4 &&
	      memcmp(f.d, "null", 4) == 0);

	CHECK(scan_text("{\"t\":null,\"s\":null,\"op\":10,\"d\":{}}", &f) == 0);
	CHECK(f.op == 10 && f.t == NULL && f.s == HL_FRAME_NONE);

	/* What the caller must not splice blindly is marked, not dropped. */
	CHECK(scan_text("{\"op\":0,\"t\":\"A\\u0042\",\"s\":1.5,\"d\":1}",
	                &f) == 0);
	CHECK(f.t == NULL && f.odd && f.s == HL_FRAME_ODD);
	CHECK(scan_text("{\"op\":300,\"op\":1,\"t\":7}", &f) == 0);
	CHECK(f.op == HL_FRAME_ODD && f.t == NULL && f.odd);
	CHECK(scan_text("{\"op\":0,\"op\":1}", &f) == 0 && f.op == 0);
	CHECK(scan_text("{\"o\\u0070\":1,\"op\":0}", &f) == 0 && f.odd);
}

static void frame_scan_refuses_what_is_not_json(void)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{",
		"{\"op\":0",
		"{\"op\":0,}",
		"{\"op\":01}",
		"{\"op\":0} x",
		"{op:0}",
		"{\"d\":tru}",
		"{\"d\":\"a\x01\"}",
		"{\"d\":\"\\q\"}",
		"{\"d\":\"\\u12\"}",
		"{\"d\":\"open}",
		"{\"d\":[1,]}",
		"{\"d\":{\"a\" 1}}",
		"{\"d\":{\"a\":1,}}",
		"{\"d\":-}",
		"{\"d\":1.}",
		"{\"d\":1e}",
		"{\"d\":+1}",
		"{\"d\":[}",
		/* 64 digits: more than cJSON reads */
		"{\"d\":"
		"12345678901234567890123456789012345678901234567890123456789012"
		"34}",
	};
	char deep[2100];
	hl_frame f;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan_text(bad[i], &f) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
	/* A NUL inside the length is not the end of the text. */
	CHECK(hl_frame_scan("{\"op\":0}\0", 9, &f) == -1);

	/* Nesting deeper than cJSON takes is refused, not followed. */
	memcpy(deep, "{\"d\":", 5);
	memset(deep + 5, '[', 1001);
	memset(deep + 1006, ']', 1001);
	deep[2007] = '}';
	CHECK(hl_frame_scan(deep, 2008, &f) == -1);
	CHECK(hl_frame_scan(deep + 4, 1, &f) == -1);
	memset(deep + 5 + 999, ' ', 2);
	memset(deep + 1006, ' ', 2);
	CHECK(hl_frame_scan(deep, 2008, &f) == 0);
}

/* Applies a dispatch given as JSON text to guilds. */
static int guild_event(cJSON *guilds, const char *t, const char *d_json)
{
	cJSON *d = cJSON_Parse(d_json);
	int changed = hl_guild_event(guilds, t, d);

	cJSON_Delete(d);
	return changed;
}

static void guild_events_fold_into_the_snapshot(void)
{
	cJSON *guilds = cJSON_CreateObject(), *g;
	char *text;

	CHECK(hl_guild_folds("CHANNEL_CREATE", 14));
	CHECK(!hl_guild_folds("MESSAGE_CREATE", 14));
	CHECK(guild_event(guilds, "GUILD_CREATE",
	                  "{\"id\":\"1\",\"name\":\"a\",\"member_count\":1,"
	                  "\"channels\":[{\"id\":\"10\",\"name\":\"x\"}],"
	                  "\"roles\":[{\"id\":\"20\",\"name\":\"r\"}],"
	                  "\"members\":[{\"user\":{\"id\":\"30\"},"
	                  "\"nick\":\"n\"}]}"));
	CHECK(guild_event(guilds, "CHANNEL_CREATE",
	                  "{\"id\":\"11\",\"guild_id\":\"1\",\"name\":\"y\"}"));
	CHECK(guild_event(
	        guilds, "CHANNEL_UPDATE",
	        "{\"id\":\"10\",\"guild_id\":\"1\",\"name\":\"x2\"}"));
	CHECK(guild_event(guilds, "CHANNEL_DELETE",
	                  "{\"id\":\"11\",\"guild_id\":\"1\"}"));
	CHECK(guild_event(guilds, "GUILD_ROLE_UPDATE",
	                  "{\"guild_id\":\"1\",\"role\":{\"id\":\"20\","
	                  "\"name\":\"r2\"}}"));
	CHECK(guild_event(guilds, "GUILD_ROLE_CREATE",
	                  "{\"guild_id\":\"1\",\"role\":{\"id\":\"21\"}}"));
	CHECK(guild_event(guilds, "GUILD_ROLE_DELETE",
	                  "{\"guild_id\":\"1\",\"role_id\":\"21\"}"));
	CHECK(guild_event(guilds, "GUILD_MEMBER_UPDATE",
	                  "{\"guild_id\":\"1\",\"user\":{\"id\":\"30\"},"
	                  "\"nick\":\"n2\"}"));
	CHECK(guild_event(guilds, "GUILD_MEMBER_ADD",
	                  "{\"guild_id\":\"1\",\"user\":{\"id\":\"31\"}}"));
	CHECK(guild_event(guilds, "GUILD_UPDATE",
	                  "{\"id\":\"1\",\"name\":\"b\"}"));
	/* Another guild's event, or a member never listed, changes nothing. */
	CHECK(!guild_event(guilds, "CHANNEL_CREATE",
	                   "{\"id\":\"12\",\"guild_id\":\"2\"}"));
	CHECK(!guild_event(guilds, "GUILD_MEMBER_UPDATE",
	                   "{\"guild_id\":\"1\",\"user\":{\"id\":\"99\"}}"));

	g = cJSON_GetObjectItemCaseSensitive(guilds, "1");
	text = cJSON_PrintUnformatted(g);
	CHECK_STR(text, "{\"id\":\"1\",\"name\":\"b\",\"member_count\":2,"
	                "\"channels\":[{\"id\":\"10\",\"name\":\"x2\"}],"
	                "\"roles\":[{\"id\":\"20\",\"name\":\"r2\"}],"
	                "\"members\":[{\"user\":{\"id\":\"30\"},"
	                "\"nick\":\"n2\"},{\"user\":{\"id\":\"31\"}}]}");
	cJSON_free(text);
	CHECK(guild_event(guilds, "GUILD_MEMBER_REMOVE",
	                  "{\"guild_id\":\"1\",\"user\":{\"id\":\"31\"}}"));
	CHECK(cJSON_GetArraySize(
	              cJSON_GetObjectItemCaseSensitive(g, "members")) == 1);
	/* An archived thread leaves the list of active ones. */
	CHECK(guild_event(guilds, "THREAD_CREATE",
	                  "{\"id\":\"40\",\"guild_id\":\"1\"}"));
	CHECK(cJSON_GetArraySize(
	              cJSON_GetObjectItemCaseSensitive(g, "threads")) == 1);
	CHECK(guild_event(guilds, "THREAD_UPDATE",
	                  "{\"id\":\"40\",\"guild_id\":\"1\","
	                  "\"thread_metadata\":{\"archived\":true}}"));
	CHECK(cJSON_GetArraySize(
	              cJSON_GetObjectItemCaseSensitive(g, "threads")) == 0);
	CHECK(guild_event(guilds, "GUILD_DELETE", "{\"id\":\"1\"}"));
	CHECK(cJSON_GetObjectItemCaseSensitive(guilds, "1") == NULL);
	cJSON_Delete(guilds);
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
	RUN(frame_scan_finds_the_fields);
	RUN(frame_scan_refuses_what_is_not_json);
	RUN(guild_events_fold_into_the_snapshot);
	return CHECK_DONE();
}
