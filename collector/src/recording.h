/*
 * recording.mlr: the compact, immutable file a finished run is compacted
 * into (the journal is removed once it is durable). Written once from a
 * run's model, read back into a model by the query side.
 *
 * File layout (integers little-endian; "varint" is LEB128, "zigzag" maps
 * signed to unsigned first):
 *
 *   "MLR4"
 *   section*     u8 type | u32 raw_len | u32 z_len | u32 xxh32(zdata) | zdata[z_len]
 *                zdata is the body of the section compressed with zstd
 *                (level 19: written once on the thread pool, read often)
 *   index        u32 count | count * (u8 type | u64 offset | i64 t_first | i64 t_last | u32 n)
 *   trailer      u64 index_offset | u32 xxh32(index) | "MLRE"
 *
 * Two section types: one TABLES section first, then SAMPLES blocks. A
 * small run is mostly its tables: its body is three zstd frames, one per
 * group of tables coded alike (numbers: META to STACKS; text: STRINGS
 * and LOGS, one context, so the file paths and the environment in the
 * log text match the strings; STATUS), concatenated in the section.
 * Every table keeps its ids (rows in id order, row 0 "none" not stored);
 * lists of values are columns (varint length | bytes):
 *   META     period (f64 bits), closed, end time
 *   THREADS  defined, ident, native id, name, started, ended, samples
 *   FRAMES   functions (name, file as deltas, first line, flags) once,
 *            in order of first use; then per frame its function (0 = the
 *            next new one, else how far below it) and its line as a delta
 *            from the last line of that function
 *   STACKS   coded against the earlier stack sharing the longest root
 *            prefix (a trie): distance back to it (0: none), its frames
 *            not shared, the number of new frames, truncated, then each
 *            new frame as its rank among the frames that followed its
 *            caller before (most recent first), or 0 and its id against
 *            the highest frame id so far
 *   STRINGS  NUL-terminated in id order; file paths (strings that are a
 *            frame's file) with '/' and '.' swapped so zstd matches them
 *            with the dotted function names
 *   LOGS     time deltas, thread, kind, stack, level, message, logger
 *   STATUS   time, cpu and system cpu in 0.1 % (the only rounded values
 *            of the format), rss, memory total, memory free as exact
 *            byte counts (4 KiB page number and remainder), objects,
 *            modules: each delta-coded
 *   SAMPLES  blocks of at most ML_RECORDING_BLOCK samples in the model's
 *            order: n, time mode, the highest stack id of the blocks
 *            before, then four columns coded against the previous sample
 *            of the same thread (state reset per block): thread id; time
 *            gap minus the expected gap (the period, or the thread's
 *            previous gap: the time mode says which); the stack
 *            run-length coded (runs of samples repeating their thread's
 *            last stack cost one count: r0 s0 r1 s1 ... rk, each s as its
 *            distance below the next new stack id, 0 for a new stack);
 *            cpu_us minus its prediction (for a thread that was busy, the
 *            gap less what it missed of its previous gap; else 0). Times
 *            and cpu_us are exact (microseconds).
 * The index gives every block's first and last sample time, so a reader
 * of a time window decompresses only the blocks that overlap it.
 *
 * Blocking file I/O; pure functions of their arguments, any thread (the
 * collector writes recordings on the libuv thread pool).
 */
#ifndef ML_COLLECTOR_RECORDING_H
#define ML_COLLECTOR_RECORDING_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define ML_RECORDING_FILE "recording.mlr"
/* Format version 4; files of versions 1 to 3 ("MLR1" .. "MLR3") are
 * refused with -EPROTO. */
#define ML_RECORDING_MAGIC "MLR4"
#define ML_RECORDING_END "MLRE"
/* Samples per SAMPLES block: the unit a time-window query reads. */
#define ML_RECORDING_BLOCK 16384
/* Largest section accepted by the reader (raw or compressed). */
#define ML_RECORDING_SECTION_MAX (256u << 20)

/* Section types of the container (the layout above); a reader skips
 * sections of any other type (a later version's). */
#define ML_RECORDING_SEC_SAMPLES 8
#define ML_RECORDING_SEC_TABLES 9

/* One section as ml_recording_write_sections() takes it: its raw
 * (uncompressed) body and its index entry. */
typedef struct ml_recording_section {
    uint8_t type;            /* ML_RECORDING_SEC_*, or any other byte */
    const uint8_t *body;     /* len bytes, borrowed (NULL when len is 0) */
    size_t len;              /* at most ML_RECORDING_SECTION_MAX */
    int64_t t_first, t_last; /* index: first and last sample time (us) */
    uint32_t n;              /* index: number of samples */
} ml_recording_section;

/* Writes a recording container at path from n raw section bodies, in
 * order: each body compressed as one zstd frame (at the level of
 * ml_recording_set_level()) with its checksum, then the index and the
 * trailer, laid out by the same code as ml_recording_write() uses. The
 * bodies are not checked: the fuzz targets build well-sealed files around
 * any content this way. Atomic like ml_recording_write(). Returns 0,
 * -EINVAL (a body longer than ML_RECORDING_SECTION_MAX) or -errno. */
int ml_recording_write_sections(const char *path, const ml_recording_section *s, size_t n);

/* Writes m as a recording at path atomically (path.tmp, fsync, rename,
 * fsync of the directory): on success the recording is durable; on error
 * path is unchanged. Returns 0 or -errno (-ENOSPC on a full disk). */
int ml_recording_write(const ml_model *m, const char *path);

/* Loads the whole recording at path into m, which must be freshly
 * initialised (ml_model_init). Returns 0, -EBADMSG for a file that is not
 * a valid recording (bad magic, checksum, or structure), -EPROTO for a
 * recording of an earlier format version (1 to 3), or -errno; on
 * error m may hold part of the data and must still be disposed. */
int ml_recording_load(ml_model *m, const char *path);

/* Like ml_recording_load() but loads only the sample blocks that overlap
 * [t0, t1] (us since run start); tables, status and logs are always
 * loaded. *blocks_read (if not NULL) is set to the number of sample blocks
 * decompressed. */
int ml_recording_load_range(ml_model *m, const char *path, int64_t t0, int64_t t1,
                            uint32_t *blocks_read);

/* Converts the journal at journal_path into a recording at rec_path
 * (ml_model_load() then ml_recording_write()). Returns 0 or -errno. */
int ml_recording_compact(const char *journal_path, const char *rec_path);

/* Sets the zstd level of every later ml_recording_write() (default 19;
 * the fuzz targets compact at 1 to stay fast). Not synchronised: call it
 * before any recording is written, not while one is. */
void ml_recording_set_level(int level);

#endif
