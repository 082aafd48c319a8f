/*
 * journal.mlj: the append-only record of one run, the source of truth that
 * every query is rebuilt from.
 *
 * File layout (all integers little-endian):
 *
 *   "MLJ1"                                   4-byte file header
 *   record*                                  until the end of the file
 *
 *   record = u32 length | u32 checksum | u8 type | payload[length]
 *
 * length counts the payload only; checksum is XXH32 (seed 0) of the type
 * byte followed by the payload; payload is the uncompressed serialized
 * protobuf message of the type (OpenRun, Batch or CloseRun). A reader stops
 * at the first record that is torn (shorter than announced) or bad
 * (checksum mismatch, unknown type, oversized): everything before it is
 * valid, nothing after it is trusted. A writer opening an existing journal
 * cuts such a tail off before appending.
 *
 * Blocking file I/O on the thread that owns the journal (the loop in the
 * collector). The one exception is ml_journal_sync_fd(), which a worker
 * thread may run while the owner goes on appending: that is how the group
 * commit syncs many journals at once (collector.c).
 */
#ifndef ML_COLLECTOR_JOURNAL_H
#define ML_COLLECTOR_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ML_JOURNAL_MAGIC "MLJ1"
#define ML_JOURNAL_HEADER_SIZE 4
#define ML_JOURNAL_RECORD_HEADER 9
/* Largest payload: a batch as large as the wire allows once decompressed. */
#define ML_JOURNAL_MAX_PAYLOAD (64u << 20)

enum ml_journal_type {
    ML_JOURNAL_OPEN_RUN = 1,
    ML_JOURNAL_BATCH = 2,
    ML_JOURNAL_CLOSE_RUN = 3,
};

typedef struct ml_journal ml_journal;

/* Opens path for appending, creating it (with its header) when missing or
 * empty. An existing journal is scanned and a torn or bad tail is
 * truncated away (logged). On success *out owns the open file.
 * Returns 0, -EBADMSG when path exists but is not a journal, or -errno. */
int ml_journal_open(const char *path, ml_journal **out);

/* Creates a new journal at path (which must not exist) with its header,
 * without syncing anything: the header counts as an unsynced record, so
 * the first sync (ml_journal_sync() or the group commit's) makes the file
 * durable; the directory entry is the caller's to sync. On success *out
 * owns the open file. Returns 0 or -errno (-EEXIST: path exists). */
int ml_journal_create(const char *path, ml_journal **out);

/* Appends one record. When sync is true the data is fdatasync'd before
 * returning, so a 0 return means the record is durable. On error the file
 * is cut back to its previous size (nothing half-written stays).
 * Returns 0, -EINVAL (bad type, oversized payload) or -errno. */
int ml_journal_append(ml_journal *j, uint8_t type, const void *payload, size_t len, bool sync);

/* Size of the file: the offset just after the last valid record. */
uint64_t ml_journal_size(const ml_journal *j);

/* Group commit: records appended with sync == false are written but not
 * yet durable. ml_journal_sync() makes every such record durable with one
 * fdatasync; a caller acknowledges them only after it returns 0. On
 * failure the file is cut back to the last durable size (the unsynced
 * records are gone and the journal is broken: the caller must forget what
 * it derived from them, e.g. by releasing and reloading the run's ingest
 * state). Returns 0 (also when nothing was pending) or -errno. */
int ml_journal_sync(ml_journal *j);

/* ml_journal_sync() in three steps, so that the fdatasync can run on a
 * worker thread while the owner goes on appending: begin (owner thread)
 * takes a ticket for every record appended so far; sync_fd (any thread)
 * is the fdatasync; end (owner thread) passes sync_fd's result and
 * returns 0 when every record of the ticket is durable. */
typedef struct ml_journal_ticket {
    uint64_t target; /* the records below this offset */
    uint64_t cuts;   /* detects records cut away between begin and end */
} ml_journal_ticket;

/* Returns 0 with *t set (call sync_fd and end), 1 when nothing is pending
 * (done, no ticket), or the -errno of records that were cut away (they
 * must not be acknowledged; no ticket; from then on every sync of this
 * broken journal reports it). */
int ml_journal_sync_begin(ml_journal *j, ml_journal_ticket *t);

/* fdatasync of the file. Any thread, while the caller holds a reference
 * (ml_journal_ref). Returns 0 or -errno. */
int ml_journal_sync_fd(const ml_journal *j);

/* Completes a ticket with rv, the result of ml_journal_sync_fd(). On
 * failure cuts the file back to the last durable size (broken).
 * Returns 0 when the ticket's records are durable, rv, or -EIO when some
 * of them were cut away meanwhile by a failed append. */
int ml_journal_sync_end(ml_journal *j, const ml_journal_ticket *t, int rv);

/* True once complete records were cut away (a failed sync, or a failed
 * synced append that lost unsynced records): whatever the writer derived
 * from the journal must be rebuilt by reading it again. */
bool ml_journal_broken(const ml_journal *j);

/* True when records were appended since the last successful sync. */
bool ml_journal_pending(const ml_journal *j);

/* Takes one more reference: the journal stays open (its fd valid) until
 * every holder called ml_journal_close(). Owner thread. */
void ml_journal_ref(ml_journal *j);

/* Group commit bookkeeping: true the first time it is called with this
 * group number (the journal joins that group), false after. Owner
 * thread; group numbers start at 1. */
bool ml_journal_note_group(ml_journal *j, uint64_t group);

/* Drops a reference; the last one closes the file and frees j (NULL is
 * fine). */
void ml_journal_close(ml_journal *j);

/* Called for each valid record; offset is where the record starts. A
 * nonzero return stops the read and is returned by ml_journal_read(). */
typedef int (*ml_journal_record_cb)(void *arg, uint8_t type, const uint8_t *payload, size_t len,
                                    uint64_t offset);

/* Reads the records of path from *offset (0: the start, header checked;
 * otherwise the end offset of an earlier read) and calls cb for each.
 * Stops at the end of the file, at the first torn or bad record, or when
 * cb returns nonzero. On return *offset is the end of the last record
 * handed to cb (so a later call continues there) and *torn (if not NULL)
 * tells whether bytes follow that do not form a valid record.
 * Returns 0, cb's nonzero value, -EBADMSG (not a journal) or -errno. */
int ml_journal_read(const char *path, uint64_t *offset, ml_journal_record_cb cb, void *arg,
                    bool *torn);

#endif
