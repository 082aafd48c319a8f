/*
 * SIGTERM while a run records. Its default action ends the process at once
 * and the run's last batches would be lost, so while a run records (and the
 * program left SIGTERM at its default) a C handler of ours ends the run
 * first and then dies of SIGTERM as the program would have.
 *
 * The handler does the work in C, not through a Python signal handler: a
 * Python handler runs only when the main thread next executes bytecode. A
 * main thread inside a long C call (hashing, a numpy kernel) kept the
 * program running until the call returned, and a SIGTERM arriving just
 * before the main thread blocked (multiprocessing's worker about to wait on
 * its queue's semaphore; Pool.terminate() sends SIGTERM) was never handled:
 * the worker never died and the pool's join() waited forever.
 *
 * The handler itself does only async-signal-safe things: it claims the run
 * (an atomic), wakes the run's finisher thread through a pipe and waits on
 * another pipe, bounded, for the run to be closed (delivered or spooled) by
 * that thread; then it restores the default action and raises SIGTERM again.
 * The thread that received the signal stays in the handler meanwhile, as it
 * would have stopped for good. The finisher needs neither the GIL nor a lock
 * the signalled thread may hold, except the client's mutex: a thread
 * signalled inside a recording call (a print recorded, a sample taken by
 * the main thread) may hold it, and the finisher would wait for it until
 * the handler's bound and lose the run. So such a thread returns from the
 * handler at once and does the handler's work as it leaves the call
 * (ml_client_defer_to_call_end), a few microseconds later.
 *
 * While the program's own stop() closes the run, a SIGTERM is noted and
 * raised again once the run is closed: the default action then would end
 * the process mid-close and lose the run's last batches.
 *
 * Python does not see our handler: signal.getsignal() still says SIG_DFL,
 * and a handler the program installs replaces ours. Arming and disarming run
 * with the GIL held (module.c serialises start and stop).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

/* CLOSING: the program's stop() closes the run. */
enum { IDLE, ARMED, FIRED, CLOSING };

/* How long the handler waits past the close timeout: ml_client_close may
 * take 2 s more for a sender stuck in the network library (close.c). */
#define GRACE_MS 2500

static struct {
    atomic_int state;
    atomic_int noted;  /* a SIGTERM came while CLOSING */
    ml_client *client; /* written before ARMED is published */
    uint32_t wait_ms;  /* the handler's bound: the close timeout + GRACE_MS */
    uint32_t timeout_ms;
    pid_t pid;            /* the process that armed: a forked child is not it */
    int wake[2], done[2]; /* pipes: handler -> finisher, finisher -> handler */
    pthread_t thread;
} term = {.wake = {-1, -1}, .done = {-1, -1}};

static void close_pipes(void)
{
    for (int i = 0; i < 2; i++) {
        if (term.wake[i] >= 0)
            close(term.wake[i]);
        if (term.done[i] >= 0)
            close(term.done[i]);
        term.wake[i] = term.done[i] = -1;
    }
}

static void *finisher(void *arg)
{
    (void)arg;
    char b = 0;
    ssize_t n;
    do
        n = read(term.wake[0], &b, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1 || b != 't')
        return NULL; /* disarmed */
    /* Never joins a thread: the signalled thread may be inside the C
     * library's thread-stack lock (in pthread_join or a thread's exit, as
     * a pool worker stopping its sampler when Pool.terminate()'s SIGTERM
     * comes), and a join here would wait for it until the handler's bound. */
    ml_client_close_dying(term.client, 128 + SIGTERM, term.timeout_ms);
    if (write(term.done[1], "d", 1) < 0) {
        /* the handler stops waiting at its bound */
    }
    return NULL;
}

/* ml__mono_us() is clock_gettime(): async-signal-safe. */
static int64_t now_ms(void)
{
    return ml__mono_us() / 1000;
}

/* SIGTERM's default action back (async-signal-safe). */
static void set_default(void)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGTERM, &dfl, NULL);
}

/* Async-signal-safe: poll(2) on the done pipe until it is readable (never
 * read: every waiting handler sees the same byte) or wait_ms have passed. */
static void wait_done(void)
{
    int64_t end = now_ms() + term.wait_ms;
    for (;;) {
        int64_t left = end - now_ms();
        if (left <= 0)
            return;
        struct pollfd p = {.fd = term.done[0], .events = POLLIN};
        int rv = poll(&p, 1, (int)left);
        if (rv != 0 && !(rv < 0 && errno == EINTR))
            return;
    }
}

/* SIGTERM's default action, now (async-signal-safe). */
static void die_of_sigterm(void)
{
    set_default();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(SIGTERM);
}

/* The handler's work: close the run (bounded), then die of SIGTERM. */
static void finish_and_die(void)
{
    if (getpid() == term.pid) {
        int armed = ARMED;
        if (atomic_compare_exchange_strong(&term.state, &armed, FIRED)) {
            if (write(term.wake[1], "t", 1) == 1)
                wait_done();
        } else if (armed == FIRED) {
            wait_done(); /* a second SIGTERM: the first one's close goes on */
        }
    }
    die_of_sigterm();
}

static void on_sigterm(int sig)
{
    (void)sig;
    int saved = errno;
    int state = atomic_load(&term.state);
    if (getpid() == term.pid && state == CLOSING) {
        atomic_store(&term.noted, 1); /* raised again by ml__sigterm_release() */
        errno = saved;
        return;
    }
    /* Inside a recording call this thread may hold the client's mutex. */
    if (getpid() == term.pid && state == ARMED && ml_client_defer_to_call_end(finish_and_die)) {
        errno = saved;
        return;
    }
    finish_and_die();
    errno = saved; /* not reached: SIGTERM's default action ends the process */
}

/* Whether SIGTERM's action is ours; *dfl: whether it is the default. */
static bool is_ours(bool *dfl)
{
    struct sigaction cur;
    if (sigaction(SIGTERM, NULL, &cur) != 0)
        return false;
    bool plain = !(cur.sa_flags & SA_SIGINFO);
    if (dfl != NULL)
        *dfl = plain && cur.sa_handler == SIG_DFL;
    return plain && cur.sa_handler == on_sigterm;
}

int ml__sigterm_arm(ml_client *client, uint32_t timeout_ms)
{
    bool dfl = false;
    if (atomic_load(&term.state) != IDLE || (!is_ours(&dfl) && !dfl))
        return 0; /* armed already, or the program's own action */
    if (pipe2(term.wake, O_CLOEXEC) != 0 || pipe2(term.done, O_CLOEXEC) != 0) {
        int err = errno;
        close_pipes();
        return -err;
    }
    term.client = client;
    term.timeout_ms = timeout_ms;
    term.wait_ms = timeout_ms + GRACE_MS;
    term.pid = getpid();

    int rv = ml__thread_start(&term.thread, finisher, NULL);
    if (rv != 0) {
        close_pipes();
        return rv;
    }
    atomic_store(&term.state, ARMED);

    struct sigaction sa = {.sa_handler = on_sigterm, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0) {
        int err = errno;
        ml__sigterm_disarm();
        return -err;
    }
    return 1;
}

bool ml__sigterm_disarm(void)
{
    int armed = ARMED;
    if (!atomic_compare_exchange_strong(&term.state, &armed, CLOSING))
        return armed != FIRED;
    /* A SIGTERM from here on is noted; ml__sigterm_release() raises it. */
    if (write(term.wake[1], "q", 1) == 1)
        pthread_join(term.thread, NULL);
    else
        pthread_detach(term.thread);
    close_pipes();
    term.client = NULL;
    return true;
}

void ml__sigterm_release(void)
{
    int closing = CLOSING;
    if (!atomic_compare_exchange_strong(&term.state, &closing, IDLE))
        return;
    if (is_ours(NULL))
        set_default();
    if (atomic_exchange(&term.noted, 0))
        die_of_sigterm();
}

void ml__sigterm_wait_end(void)
{
    /* The handler ends the process within wait_ms; past it, go on. */
    int64_t end = now_ms() + term.wait_ms + 1000;
    while (now_ms() < end) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void ml__sigterm_after_fork_child(void)
{
    /* The finisher is the parent's thread; the pipes are the parent's too. */
    atomic_store(&term.state, IDLE);
    atomic_store(&term.noted, 0);
    close_pipes();
    term.client = NULL;
}
