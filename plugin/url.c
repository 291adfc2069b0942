/*
 * url.c - splits the URLs the engine connects to into scheme, host, port
 * and path. Only what Discord uses: http, https, ws, wss; no userinfo.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int hl_url_parse(const char *url, hl_url *out)
{
	const char *p, *host, *end;
	size_t hostlen;

	memset(out, 0, sizeof(*out));
	if (strncmp(url, "https://", 8) == 0 || strncmp(url, "wss://", 6) == 0)
		out->tls = 1;
	else if (strncmp(url, "http://", 7) != 0 &&
	         strncmp(url, "ws://", 5) != 0)
		return -1;
	host = strstr(url, "://") + 3;
	end = host + strcspn(host, ":/?#");
	hostlen = (size_t)(end - host);
	if (hostlen == 0 || hostlen >= sizeof(out->host))
		return -1;
	memcpy(out->host, host, hostlen);
	out->port = out->tls ? 443 : 80;
	p = end;
	if (*p == ':') {
		char *stop;
		long port = strtol(p + 1, &stop, 10);

		if (stop == p + 1 || port < 1 || port > 65535)
			return -1;
		out->port = (int)port;
		p = stop;
	}
	if (*p != '\0' && *p != '/' && *p != '?')
		return -1;
	if (*p == '?')
		snprintf(out->path, sizeof(out->path), "/%s", p);
	else
		snprintf(out->path, sizeof(out->path), "%s", *p ? p : "/");
	return strlen(p) < sizeof(out->path) - 1 ? 0 : -1;
}
