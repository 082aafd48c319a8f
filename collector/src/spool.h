/*
 * Spool import: runs that clients on this machine could not deliver are
 * left as spool files (proto/spool_format.h) in the spool directory
 * (MICROLOG_SPOOL_DIR, else ~/.microlog/spool). The machine's collector
 * replays each finished file through the ingest handler, exactly as if
 * the client had sent it (idempotent: run_uid, seq, closed flag), and
 * removes the file only once every record was acknowledged, i.e. durably
 * journaled. Loop thread.
 */
#ifndef ML_COLLECTOR_SPOOL_H
#define ML_COLLECTOR_SPOOL_H

struct ml_collector;

/* Imports the finished spool files in dir meant for this collector (their
 * server URL is a loopback one with this collector's HTTP port). A file still locked by
 * its writer is skipped; a file whose records the collector refuses for
 * good is moved to dir/rejected/ with the reason logged; after a
 * transient failure it stays for the next scan. Returns the number of
 * runs imported, or -errno when dir cannot be read (-ENOENT is 0). */
int ml_spool_import_dir(struct ml_collector *c, const char *dir);

/* True when server (an http(s) URL) names a loopback host. */
int ml_spool_server_is_local(const char *server);
/* True when server is a loopback URL with the port of own_url (this
 * collector's HTTP address). */
int ml_spool_server_is_ours(const char *server, const char *own_url);

#endif
