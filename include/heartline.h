/*
 * heartline.h - the C ABI of libheartline.so, the only API it exports.
 *
 * An engine is a local Discord-compatible endpoint on 127.0.0.1 plus the
 * upstream Discord gateway sessions and REST forwarding behind it, all run
 * on the engine's own threads. A host (the OpenClaw shim, `heartline
 * serve`, a test) starts engines, polls their status and logs, and stops
 * them. Every call below but hl_detach returns at once, is safe from any
 * host thread, and never calls back into the host. Several engines may live in
 * one process; start and stop may repeat any number of times.
 *
 * Strings in and out are UTF-8 JSON. Output goes into buffers the caller
 * owns, so a host needs no allocator of ours.
 */
#ifndef HEARTLINE_H
#define HEARTLINE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a declaration below changes meaning. */
#define HL_ABI_VERSION 3

#if defined(__GNUC__)
#define HL_EXPORT __attribute__((visibility("default")))
#else
#define HL_EXPORT
#endif

typedef struct hl_engine hl_engine;

/* Returns HL_ABI_VERSION as built into the library. */
HL_EXPORT int hl_abi_version(void);

/* Returns the library's version string, e.g. "0.1.0". Static storage. */
HL_EXPORT const char *hl_version(void);

/*
 * Starts an engine from a JSON configuration (see README.md for the keys).
 * On success returns the engine, listening and ready for connections.
 * On failure returns NULL and writes a one-line message naming the
 * offending field into err (always NUL-terminated when errlen > 0).
 */
HL_EXPORT hl_engine *hl_start(const char *config_json, char *err,
                              size_t errlen);

/*
 * Stops an engine: upstream sessions are closed with a resumable code,
 * threads are joined and all memory is released. NULL is ignored.
 */
HL_EXPORT void hl_stop(hl_engine *engine);

/*
 * A running engine's live state on its way to another engine in the same
 * process: its upstream connections, sessions, replay buffers and
 * listening socket. Opaque; see hl_detach and hl_attach.
 */
typedef struct hl_handover hl_handover;

/*
 * Returns the version of the state hl_detach hands over. hl_attach takes
 * only a handover of its own version, so a host compares the two
 * libraries' versions before it detaches anything.
 */
HL_EXPORT int hl_handover_version(void);

/*
 * Ends an engine without ending its upstream sessions: HTTP requests in
 * progress are answered first (for at most 3 s), the host's
 * gateway connections are closed (a Discord client RESUMEs them), and
 * the rest is returned for hl_attach, of this build or another one loaded
 * beside it. The engine handle is gone once this returns a handover.
 * Returns NULL, with err set and the engine running as before, only when
 * there is no memory for the handover. The connections wait unserved
 * until hl_attach, so a host attaches at once.
 */
HL_EXPORT hl_handover *hl_detach(hl_engine *engine, char *err, size_t errlen);

/*
 * Starts an engine from a configuration (as for hl_start) and a handover:
 * it listens on the detached engine's socket and goes on with its
 * sessions where they were, without reconnecting them. On success the
 * handover is consumed. On failure returns NULL, err says why (a state
 * version of another build, a configuration that differs in a key only a
 * new engine can take), and the handover is left as it was, for
 * hl_attach of the library that made it, or hl_handover_close.
 */
HL_EXPORT hl_engine *hl_attach(const char *config_json, hl_handover *handover,
                               char *err, size_t errlen);

/*
 * Ends a handover no engine took: the connections are cut (Discord keeps
 * the sessions resumable for a while, and the checkpoints under the
 * state directory let a later engine RESUME them), the socket is closed
 * and all memory is released. NULL is ignored.
 */
HL_EXPORT void hl_handover_close(hl_handover *handover);

/*
 * Gives a running engine a new configuration (the same JSON as for
 * hl_start) without touching its connections. Returns 0 when it was
 * taken: timings, limits and the log level apply from then on. Returns
 * 1 when it differs in a key that only a new engine can take (the port,
 * the upstream bases, the CA file, the state directory), and -1 when it
 * is not valid; then err names the key and the engine runs on as it was.
 */
HL_EXPORT int hl_reconfigure(hl_engine *engine, const char *config_json,
                             char *err, size_t errlen);

/*
 * Writes a JSON status snapshot into buf (NUL-terminated when it fits).
 * Returns the snapshot's length without the NUL; when that is >= buflen
 * the snapshot was cut and the call should be repeated with a larger buf.
 */
HL_EXPORT size_t hl_status(hl_engine *engine, char *buf, size_t buflen);

/*
 * Moves buffered log records into buf, one JSON object per line, as many
 * whole records as fit; records that do not fit stay buffered. Returns the
 * number of bytes written (0 when there is nothing to read). buf is
 * NUL-terminated when buflen > 0. A record is at most 1 KiB, so a buffer
 * of 4 KiB or more always makes progress.
 */
HL_EXPORT size_t hl_logs_drain(hl_engine *engine, char *buf, size_t buflen);

#ifdef __cplusplus
}
#endif

#endif /* HEARTLINE_H */
