/*
 * config.c - reads an engine configuration from JSON.
 *
 * Runs on the host's thread inside hl_start(). Every key is optional; a
 * key of the wrong type or out of range, or a key we do not know, is an
 * error that names the field, so a typo never passes silently.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum field_kind { F_INT, F_STRING, F_URL, F_LEVEL };

struct field {
	const char *name;
	enum field_kind kind;
	size_t offset;
	int min;
	int max;
};

#define FIELD(n, k, m, lo, hi)                                                 \
	{                                                                      \
		n, k, offsetof(hl_config, m), lo, hi                           \
	}

static const struct field fields[] = {
	FIELD("listen_port", F_INT, listen_port, 0, 65535),
	FIELD("api_base", F_URL, api_base, 0, 0),
	FIELD("gateway_url", F_URL, gateway_url, 0, 0),
	FIELD("cdn_base", F_URL, cdn_base, 0, 0),
	FIELD("media_base", F_URL, media_base, 0, 0),
	FIELD("ca_file", F_STRING, ca_file, 0, 0),
	FIELD("tls_groups", F_STRING, tls_groups, 0, 0),
	FIELD("state_dir", F_STRING, state_dir, 0, 0),
	FIELD("replay_buffer", F_INT, replay_buffer, 16, 1000000),
	FIELD("log_level", F_LEVEL, log_level, 0, 0),
	FIELD("identify_interval_ms", F_INT, identify_interval_ms, 0, 600000),
	FIELD("identify_reserve", F_INT, identify_reserve, 0, 100000),
	FIELD("reconnect_jitter_min_ms", F_INT, jitter_min_ms, 0, 600000),
	FIELD("reconnect_jitter_max_ms", F_INT, jitter_max_ms, 0, 600000),
	FIELD("typing_interval_ms", F_INT, typing_interval_ms, 500, 9500),
	FIELD("typing_hold_ms", F_INT, typing_hold_ms, 1000, 3600000),
	FIELD("typing_cap_ms", F_INT, typing_cap_ms, 1000, 86400000),
};

static int same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/*
 * The name of the first key that differs between a and b and that a
 * running engine cannot take on (the port, the upstream addresses, the
 * TLS settings, the state directory), or NULL when every difference can be
 * applied live.
 */
const char *hl_config_fixed_change(const hl_config *a, const hl_config *b)
{
	size_t i;

	if (a->listen_port != b->listen_port)
		return "listen_port";
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];
		char *const *sa = (char *const *)((const char *)a + f->offset);
		char *const *sb = (char *const *)((const char *)b + f->offset);

		if ((f->kind == F_STRING || f->kind == F_URL) &&
		    !same_string(*sa, *sb))
			return f->name;
	}
	return NULL;
}

/* Takes on src's numbers and log level: the keys a running engine
 * applies without reconnecting anything. Net thread. */
void hl_config_apply_live(hl_config *dst, const hl_config *src)
{
	dst->replay_buffer = src->replay_buffer;
	dst->log_level = src->log_level;
	dst->identify_interval_ms = src->identify_interval_ms;
	dst->identify_reserve = src->identify_reserve;
	dst->jitter_min_ms = src->jitter_min_ms;
	dst->jitter_max_ms = src->jitter_max_ms;
	dst->typing_interval_ms = src->typing_interval_ms;
	dst->typing_hold_ms = src->typing_hold_ms;
	dst->typing_cap_ms = src->typing_cap_ms;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int set_defaults(hl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->api_base = strdup("https://discord.com/api/v10");
	cfg->cdn_base = strdup("https://cdn.discordapp.com");
	cfg->media_base = strdup("https://media.discordapp.net");
	cfg->replay_buffer = 2000;
	cfg->log_level = HL_INFO;
	cfg->identify_interval_ms = 5000;
	cfg->identify_reserve = 5;
	cfg->jitter_min_ms = 1000;
	cfg->jitter_max_ms = 15000;
	cfg->typing_interval_ms = 9000;
	cfg->typing_hold_ms = 120000;
	cfg->typing_cap_ms = 1200000;
	return cfg->api_base && cfg->cdn_base && cfg->media_base ? 0 : -1;
}

/* Trailing slashes are dropped so that bases join with "/path". */
static void trim_slash(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

static int set_field(hl_config *cfg, const struct field *f, const cJSON *item,
                     char *err, size_t errlen)
{
	void *slot = (char *)cfg + f->offset;
	hl_url url;

	switch (f->kind) {
	case F_INT:
		if (!cJSON_IsNumber(item) ||
		    item->valuedouble != item->valueint ||
		    item->valueint < f->min || item->valueint > f->max) {
			snprintf(err, errlen,
			         "config: %s must be an integer from %d to %d",
			         f->name, f->min, f->max);
			return -1;
		}
		*(int *)slot = item->valueint;
		return 0;
	case F_LEVEL:
		if (!cJSON_IsString(item) ||
		    hl_level_parse(item->valuestring, slot) != 0) {
			snprintf(err, errlen,
			         "config: %s must be one of "
			         "debug, info, warn, error",
			         f->name);
			return -1;
		}
		return 0;
	case F_URL:
	case F_STRING:
		if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
			snprintf(err, errlen,
			         "config: %s must be a non-empty string",
			         f->name);
			return -1;
		}
		if (f->kind == F_URL &&
		    hl_url_parse(item->valuestring, &url) != 0) {
			snprintf(err, errlen,
			         "config: %s is not an http(s) "
			         "or ws(s) URL: %.200s",
			         f->name, item->valuestring);
			return -1;
		}
		free(*(char **)slot);
		*(char **)slot = dup_or_null(item->valuestring);
		if (*(char **)slot == NULL) {
			snprintf(err, errlen, "config: out of memory");
			return -1;
		}
		if (f->kind == F_URL)
			trim_slash(*(char **)slot);
		return 0;
	}
	return -1;
}

int hl_config_parse(const char *json, hl_config *cfg, char *err, size_t errlen)
{
	cJSON *root, *item;
	size_t i;

	if (set_defaults(cfg) != 0) {
		snprintf(err, errlen, "config: out of memory");
		goto fail_nojson;
	}
	root = cJSON_Parse(json ? json : "{}");
	if (root == NULL || !cJSON_IsObject(root)) {
		snprintf(err, errlen, "config: not a JSON object");
		cJSON_Delete(root);
		goto fail_nojson;
	}
	cJSON_ArrayForEach (item, root) {
		const struct field *f = NULL;

		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			if (strcmp(fields[i].name, item->string) == 0)
				f = &fields[i];
		}
		if (f == NULL) {
			snprintf(err, errlen, "config: unknown field %.100s",
			         item->string);
			goto fail;
		}
		if (set_field(cfg, f, item, err, errlen) != 0)
			goto fail;
	}
	cJSON_Delete(root);
	if (cfg->jitter_max_ms < cfg->jitter_min_ms) {
		snprintf(err, errlen,
		         "config: reconnect_jitter_max_ms must "
		         "not be below reconnect_jitter_min_ms");
		goto fail_nojson;
	}
	return 0;

fail:
	cJSON_Delete(root);
fail_nojson:
	hl_config_free(cfg);
	return -1;
}

void hl_config_free(hl_config *cfg)
{
	free(cfg->api_base);
	free(cfg->gateway_url);
	free(cfg->cdn_base);
	free(cfg->media_base);
	free(cfg->ca_file);
	free(cfg->tls_groups);
	free(cfg->state_dir);
	memset(cfg, 0, sizeof(*cfg));
}
