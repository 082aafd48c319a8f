/*
 * Status ticks: process and system CPU, resident memory, machine memory,
 * module count and heap blocks. The OS part reads /proc with read(2) into
 * stack buffers (no allocation, no GIL); the interpreter part is two cheap
 * counters read under the GIL.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
/* Exported by 3.11 but declared only in its internal headers. */
PyAPI_FUNC(Py_ssize_t) _Py_GetAllocatedBlocks(void);
#endif

int64_t ml__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads at most n-1 bytes of a /proc file into buf, NUL-terminated. */
static ssize_t read_proc(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t got = read(fd, buf, n - 1);
    close(fd);
    buf[got > 0 ? got : 0] = '\0';
    return got;
}

/* Busy and total jiffies of all CPUs from the first line of /proc/stat. */
static bool system_jiffies(uint64_t *busy, uint64_t *total)
{
    char buf[512];
    unsigned long long v[8] = {0};
    if (read_proc("/proc/stat", buf, sizeof(buf)) <= 0 ||
        sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) < 4)
        return false;
    /* user nice system idle iowait irq softirq steal; guest is inside user. */
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum += v[i];
    *total = sum;
    *busy = sum - v[3] - v[4];
    return true;
}

static uint64_t rss_bytes(const ml__status_state *s)
{
    char buf[128];
    unsigned long long size = 0, resident = 0;
    if (read_proc("/proc/self/statm", buf, sizeof(buf)) <= 0 ||
        sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * s->page_size;
}

/* "Key:   123 kB" from /proc/meminfo, in bytes; 0 when absent. */
static uint64_t meminfo_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (p == NULL)
        return 0;
    return (uint64_t)strtoull(p + strlen(key), NULL, 10) * 1024u;
}

void ml__status_init(ml__status_state *s, int64_t mono_us)
{
    memset(s, 0, sizeof(*s));
    long ps = sysconf(_SC_PAGESIZE);
    s->page_size = ps > 0 ? (uint64_t)ps : 4096u;
    s->last_wall_us = mono_us;
    s->last_cpu_ns = process_cpu_ns();
    system_jiffies(&s->last_busy, &s->last_total);
}

void ml__status_measure_os(ml__status_state *s, int64_t mono_us, bool memory, ml_status *out)
{
    uint64_t cpu = process_cpu_ns(), busy = 0, total = 0;
    int64_t wall = mono_us - s->last_wall_us;

    /* 100 = one core busy, as in the original. */
    if (wall > 0 && cpu >= s->last_cpu_ns)
        out->cpu_percent = (float)((double)(cpu - s->last_cpu_ns) / 1000.0 / (double)wall * 100.0);
    s->last_cpu_ns = cpu;
    s->last_wall_us = mono_us;

    /* Whole machine, 0..100. */
    if (system_jiffies(&busy, &total)) {
        if (total > s->last_total && busy >= s->last_busy)
            out->system_cpu_percent =
                (float)((double)(busy - s->last_busy) * 100.0 / (double)(total - s->last_total));
        s->last_busy = busy;
        s->last_total = total;
    }
    out->rss = rss_bytes(s);
    if (memory) {
        char buf[4096];
        if (read_proc("/proc/meminfo", buf, sizeof(buf)) > 0) {
            out->memory_total = meminfo_field(buf, "MemTotal:");
            out->memory_free = meminfo_field(buf, "MemAvailable:");
        }
    }
}

void ml__status_measure_python(ml_status *out)
{
    PyObject *modules = PyImport_GetModuleDict();
    out->modules = (modules && PyDict_Check(modules)) ? (uint32_t)PyDict_Size(modules) : 0;
#if PY_VERSION_HEX < 0x030C0000
    Py_ssize_t blocks = _Py_GetAllocatedBlocks();
#else
    /* 3.12 made the counter internal; sys.getallocatedblocks() is the same
     * number, read once per status tick (not per sample). The function is
     * looked up once and kept: a look-up by name allocates (and a profiled
     * program's allocations must be its own). */
    static PyObject *getallocatedblocks; /* strong, for the process's life; GIL */
    Py_ssize_t blocks = 0;
    if (getallocatedblocks == NULL) {
        getallocatedblocks = PySys_GetObject("getallocatedblocks");
        Py_XINCREF(getallocatedblocks);
    }
    PyObject *r = getallocatedblocks ? PyObject_CallNoArgs(getallocatedblocks) : NULL;
    if (r != NULL)
        blocks = PyLong_AsSsize_t(r);
    Py_XDECREF(r);
    PyErr_Clear();
#endif
    out->objects = blocks > 0 ? (uint64_t)blocks : 0;
}
