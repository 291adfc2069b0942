/*
 * msgq.c - queues of WebSocket messages waiting for their connection to
 * become writable. Each message carries the LWS_PRE headroom that
 * lws_write() needs in front of the payload. Net thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int hl_msgq_push(hl_msgq *q, const char *payload, size_t len, int front)
{
	hl_msg *m = malloc(sizeof(*m) + LWS_PRE + len + 1);

	if (m == NULL)
		return -1;
	m->len = len;
	m->urgent = front;
	memcpy(m->data + LWS_PRE, payload, len);
	m->data[LWS_PRE + len] = '\0';
	if (front) {
		m->next = q->head;
		q->head = m;
		if (q->tail == NULL)
			q->tail = m;
	} else {
		m->next = NULL;
		if (q->tail)
			q->tail->next = m;
		else
			q->head = m;
		q->tail = m;
	}
	q->count++;
	return 0;
}

hl_msg *hl_msgq_pop(hl_msgq *q)
{
	hl_msg *m = q->head;

	if (m == NULL)
		return NULL;
	q->head = m->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->count--;
	return m;
}

void hl_msgq_clear(hl_msgq *q)
{
	hl_msg *m;

	while ((m = hl_msgq_pop(q)) != NULL)
		free(m);
}
