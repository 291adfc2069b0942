/*
 * guilds.c - each guild as a host that joins a running session must see
 * it: the last GUILD_CREATE, with the guild events since folded in.
 *
 * Net thread. A host that joins a session it did not see begin (an
 * account restarted by OpenClaw, a gateway restarted within the resume
 * window) gets its GUILD_CREATEs from the engine, not from Discord. So
 * the engine keeps them current: channels, threads and roles created,
 * changed or deleted, the guild's own fields, its emojis and stickers,
 * and the members it listed. Events that only report (messages, typing,
 * presences) change nothing here.
 */
#include <string.h>

#include "internal.h"

/* The guild events that change what GUILD_CREATE says of a guild. */
#define NAME(s)                                                                \
	{                                                                      \
		s, sizeof(s) - 1                                               \
	}
static const struct {
	const char *name;
	size_t len;
} folded[] = {
	NAME("GUILD_UPDATE"),        NAME("CHANNEL_CREATE"),
	NAME("CHANNEL_UPDATE"),      NAME("CHANNEL_DELETE"),
	NAME("THREAD_CREATE"),       NAME("THREAD_UPDATE"),
	NAME("THREAD_DELETE"),       NAME("GUILD_ROLE_CREATE"),
	NAME("GUILD_ROLE_UPDATE"),   NAME("GUILD_ROLE_DELETE"),
	NAME("GUILD_EMOJIS_UPDATE"), NAME("GUILD_STICKERS_UPDATE"),
	NAME("GUILD_MEMBER_ADD"),    NAME("GUILD_MEMBER_UPDATE"),
	NAME("GUILD_MEMBER_REMOVE"),
};

/* Asked of every dispatch, so the lengths go first. */
int hl_guild_folds(const char *t, size_t tlen)
{
	size_t i;

	for (i = 0; i < sizeof(folded) / sizeof(folded[0]); i++) {
		if (folded[i].len == tlen &&
		    memcmp(folded[i].name, t, tlen) == 0)
			return 1;
	}
	return 0;
}

static const char *string_at(cJSON *o, const char *name)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The id of an item of a guild's list: its own, or its user's. */
static const char *item_id(cJSON *item)
{
	const char *id = string_at(item, "id");

	return id ? id
	          : string_at(cJSON_GetObjectItemCaseSensitive(item, "user"),
	                      "id");
}

/* The item of a guild's list with that id, or NULL. */
static cJSON *find_item(cJSON *list, const char *id)
{
	cJSON *item;

	cJSON_ArrayForEach (item, list) {
		const char *its = item_id(item);

		if (its && strcmp(its, id) == 0)
			return item;
	}
	return NULL;
}

/* Sets obj's field of field's name to a copy of field. */
static void put_field(cJSON *obj, const cJSON *field)
{
	cJSON *copy = cJSON_Duplicate(field, 1);

	if (copy &&
	    !cJSON_ReplaceItemInObjectCaseSensitive(obj, field->string, copy) &&
	    !cJSON_AddItemToObject(obj, field->string, copy))
		cJSON_Delete(copy);
}

static cJSON *list_of(cJSON *guild, const char *name)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(guild, name);

	if (cJSON_IsArray(list))
		return list;
	cJSON_DeleteItemFromObjectCaseSensitive(guild, name);
	return cJSON_AddArrayToObject(guild, name);
}

/* Puts a copy of item into the guild's list, in place of the one with its
 * id; with merge the fields it has replace those of the one in place. */
static int upsert(cJSON *guild, const char *name, cJSON *item, int merge)
{
	cJSON *list = list_of(guild, name), *copy, *old, *field;
	const char *id = item_id(item);

	if (list == NULL || id == NULL)
		return 0;
	old = find_item(list, id);
	if (merge && old) {
		cJSON_ArrayForEach (field, item)
			put_field(old, field);
		cJSON_DeleteItemFromObjectCaseSensitive(old, "guild_id");
		return 1;
	}
	if (merge)
		return 0; /* a member the snapshot never listed stays out */
	copy = cJSON_Duplicate(item, 1);
	if (copy == NULL)
		return 0;
	cJSON_DeleteItemFromObjectCaseSensitive(copy, "guild_id");
	if (old)
		cJSON_ReplaceItemViaPointer(list, old, copy);
	else
		cJSON_AddItemToArray(list, copy);
	return 1;
}

static int remove_item(cJSON *guild, const char *name, const char *id)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(guild, name);
	cJSON *old = id ? find_item(list, id) : NULL;

	if (old == NULL)
		return 0;
	cJSON_Delete(cJSON_DetachItemViaPointer(list, old));
	return 1;
}

static void count_members(cJSON *guild, int by)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(guild, "member_count");

	if (cJSON_IsNumber(n))
		cJSON_SetNumberValue(n, n->valuedouble + by);
}

/* GUILD_UPDATE: the guild's own fields, its lists untouched. */
static int update_guild(cJSON *guild, cJSON *d)
{
	cJSON *field;

	cJSON_ArrayForEach (field, d) {
		if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(
		            guild, field->string)) &&
		    strcmp(field->string, "emojis") != 0 &&
		    strcmp(field->string, "stickers") != 0 &&
		    strcmp(field->string, "roles") != 0 &&
		    strcmp(field->string, "features") != 0)
			continue;
		put_field(guild, field);
	}
	return 1;
}

static int replace_list(cJSON *guild, const char *name, cJSON *d)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(d, name);

	if (!cJSON_IsArray(list))
		return 0;
	put_field(guild, list);
	return 1;
}

/* Folds one of the events hl_guild_folds names into the guild it is of.
 * Returns 1 when the snapshot changed. */
static int fold(cJSON *guild, const char *t, cJSON *d)
{
	cJSON *member = cJSON_GetObjectItemCaseSensitive(d, "user");

	if (strcmp(t, "GUILD_UPDATE") == 0)
		return update_guild(guild, d);
	if (strcmp(t, "CHANNEL_CREATE") == 0 ||
	    strcmp(t, "CHANNEL_UPDATE") == 0)
		return upsert(guild, "channels", d, 0);
	if (strcmp(t, "CHANNEL_DELETE") == 0)
		return remove_item(guild, "channels", string_at(d, "id"));
	/* GUILD_CREATE lists the active threads only. */
	if (strcmp(t, "THREAD_UPDATE") == 0 &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
	            cJSON_GetObjectItemCaseSensitive(d, "thread_metadata"),
	            "archived")))
		return remove_item(guild, "threads", string_at(d, "id"));
	if (strcmp(t, "THREAD_CREATE") == 0 || strcmp(t, "THREAD_UPDATE") == 0)
		return upsert(guild, "threads", d, 0);
	if (strcmp(t, "THREAD_DELETE") == 0)
		return remove_item(guild, "threads", string_at(d, "id"));
	if (strcmp(t, "GUILD_ROLE_CREATE") == 0 ||
	    strcmp(t, "GUILD_ROLE_UPDATE") == 0)
		return upsert(guild, "roles",
		              cJSON_GetObjectItemCaseSensitive(d, "role"), 0);
	if (strcmp(t, "GUILD_ROLE_DELETE") == 0)
		return remove_item(guild, "roles", string_at(d, "role_id"));
	if (strcmp(t, "GUILD_EMOJIS_UPDATE") == 0)
		return replace_list(guild, "emojis", d);
	if (strcmp(t, "GUILD_STICKERS_UPDATE") == 0)
		return replace_list(guild, "stickers", d);
	if (strcmp(t, "GUILD_MEMBER_ADD") == 0) {
		if (find_item(
		            cJSON_GetObjectItemCaseSensitive(guild, "members"),
		            string_at(member, "id") ? string_at(member, "id")
		                                    : "") == NULL)
			count_members(guild, 1);
		return upsert(guild, "members", d, 0);
	}
	if (strcmp(t, "GUILD_MEMBER_UPDATE") == 0)
		return upsert(guild, "members", d, 1);
	if (strcmp(t, "GUILD_MEMBER_REMOVE") == 0) {
		count_members(guild, -1);
		remove_item(guild, "members", string_at(member, "id"));
		return 1;
	}
	return 0;
}

/*
 * Keeps guilds (guild id -> GUILD_CREATE d) current with dispatch t:
 * GUILD_CREATE replaces a guild, GUILD_DELETE removes it, and the events
 * hl_guild_folds names change the guild they are of. Returns 1 when a
 * guild changed.
 */
int hl_guild_event(cJSON *guilds, const char *t, cJSON *d)
{
	int own = strcmp(t, "GUILD_CREATE") == 0 ||
	          strcmp(t, "GUILD_UPDATE") == 0 ||
	          strcmp(t, "GUILD_DELETE") == 0;
	const char *id = string_at(d, own ? "id" : "guild_id");
	cJSON *guild, *copy;

	if (id == NULL)
		return 0;
	if (strcmp(t, "GUILD_CREATE") == 0) {
		copy = cJSON_Duplicate(d, 1);
		if (copy == NULL)
			return 0;
		cJSON_DeleteItemFromObjectCaseSensitive(guilds, id);
		cJSON_AddItemToObject(guilds, id, copy);
		return 1;
	}
	if (strcmp(t, "GUILD_DELETE") == 0) {
		cJSON_DeleteItemFromObjectCaseSensitive(guilds, id);
		return 1;
	}
	guild = cJSON_GetObjectItemCaseSensitive(guilds, id);
	return cJSON_IsObject(guild) && fold(guild, t, d);
}
