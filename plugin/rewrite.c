/*
 * rewrite.c - points Discord CDN links inside dispatches at the local
 * endpoint, which proxies them, because the host's Discord channel only
 * fetches media from its REST origin. Net thread.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const struct {
	const char *from;
	const char *to;
} cdn_hosts[] = {
	{ "https://cdn.discordapp.com/", HL_CDN_PREFIX },
	{ "https://media.discordapp.net/", HL_MEDIA_PREFIX },
};

static int rewrite_string(cJSON *node, const char *origin)
{
	size_t i;

	for (i = 0; i < sizeof(cdn_hosts) / sizeof(cdn_hosts[0]); i++) {
		size_t n = strlen(cdn_hosts[i].from);
		const char *rest;
		hl_buf b = { 0 };

		if (strncmp(node->valuestring, cdn_hosts[i].from, n) != 0)
			continue;
		rest = node->valuestring + n;
		if (hl_buf_appendf(&b, "%s%s%s", origin, cdn_hosts[i].to,
		                   rest) != 0)
			return -1;
		free(node->valuestring);
		node->valuestring = b.data;
		return 1;
	}
	return 0;
}

/* Rewrites every CDN URL under node; returns how many were changed. */
int hl_rewrite_cdn(cJSON *node, const char *origin)
{
	int changed = 0;
	cJSON *child;

	if (cJSON_IsString(node) && node->valuestring)
		return rewrite_string(node, origin) > 0;
	cJSON_ArrayForEach (child, node) {
		changed += hl_rewrite_cdn(child, origin);
	}
	return changed;
}
