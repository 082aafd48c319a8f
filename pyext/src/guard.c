/*
 * Guarded reads: plain loads from memory that the program's threads may
 * free and unmap at any moment (generator frames, datastack chunks other
 * than a thread's first, frames on a thread's C stack), without a system
 * call per read. A SIGSEGV/SIGBUS handler turns a fault inside the
 * sampler's armed section into a return value (siglongjmp back to
 * ml__guard_run) instead of a crash.
 *
 * Why this is safe for the program:
 *  - only a fault of the armed thread (the sampler, inside
 *    ml__guard_run) that the kernel raised (si_code > 0) is taken; any
 *    other SIGSEGV/SIGBUS puts back the disposition that was there before
 *    ours, for good, and lets it act: a fault re-executes the faulting
 *    instruction under it, a signal sent by kill() is raised again. A
 *    crash of the program still crashes it, with the program's own handler
 *    (faulthandler's traceback, say);
 *  - the handler uses no thread-local storage (lazily allocated in a
 *    shared object), only pthread_self(), atomics, sigaction, raise and
 *    siglongjmp;
 *  - the sampler reads with the guard only while the handler is ours:
 *    ml__guard_ready() asks the kernel at the start of every pass, and a
 *    program (or library) that installs its own handler later wins: the
 *    sampler then reads with process_vm_readv(), which fails with EFAULT
 *    instead of faulting. The one window left is a handler installed
 *    between that check and a fault of the same pass (microseconds) while
 *    the sampler reads memory freed in the same microseconds.
 *
 * The sampler thread blocks every asynchronous signal; it unblocks SIGSEGV
 * and SIGBUS (ml__guard_thread_init): a fault with them blocked would kill
 * the process whatever the handler.
 */
#include "internal.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

static struct sigaction old_segv, old_bus; /* the dispositions we replaced */
static atomic_bool installed;
/* The armed section: its jump buffer and thread (env NULL: not armed). */
static sigjmp_buf *_Atomic armed_env;
static pthread_t armed_thread;
static atomic_uint_fast64_t faults;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    sigjmp_buf *env = atomic_load_explicit(&armed_env, memory_order_acquire);
    if (env != NULL && si != NULL && si->si_code > 0 && pthread_equal(pthread_self(), armed_thread))
        siglongjmp(*env, 1);
    /* Not ours: the previous disposition takes over from now on. */
    sigaction(sig, sig == SIGSEGV ? &old_segv : &old_bus, NULL);
    atomic_store(&installed, false);
    if (si == NULL || si->si_code <= 0)
        raise(sig); /* sent, not raised by a fault: send it on */
}

int ml__guard_install(void)
{
    if (atomic_load(&installed) && ml__guard_ready())
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sigemptyset(&sa.sa_mask);
    /* SA_NODEFER: the handler leaves by siglongjmp without restoring the
     * mask, so the signal must not be added to it. SA_ONSTACK: on a
     * thread with an alternate stack (faulthandler's), a stack overflow
     * still reaches the program's handler through ours. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    struct sigaction prev_segv, prev_bus;
    if (sigaction(SIGSEGV, &sa, &prev_segv) != 0)
        return -errno;
    if (sigaction(SIGBUS, &sa, &prev_bus) != 0) {
        int err = errno;
        sigaction(SIGSEGV, &prev_segv, NULL);
        return -err;
    }
    old_segv = prev_segv;
    old_bus = prev_bus;
    atomic_store(&installed, true);
    return 0;
}

static bool is_ours(int sig)
{
    struct sigaction cur;
    return sigaction(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
           cur.sa_sigaction == on_fault;
}

bool ml__guard_ready(void)
{
    return atomic_load(&installed) && is_ours(SIGSEGV) && is_ours(SIGBUS);
}

void ml__guard_uninstall(void)
{
    /* Only while ours is the current one: a handler the program installed
     * after us stays. */
    if (!atomic_load(&installed))
        return;
    if (is_ours(SIGSEGV))
        sigaction(SIGSEGV, &old_segv, NULL);
    if (is_ours(SIGBUS))
        sigaction(SIGBUS, &old_bus, NULL);
    atomic_store(&installed, false);
}

void ml__guard_thread_init(void)
{
    sigset_t sync;
    sigemptyset(&sync);
    sigaddset(&sync, SIGSEGV);
    sigaddset(&sync, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &sync, NULL);
}

int ml__guard_run(int (*fn)(void *), void *arg)
{
    sigjmp_buf env;
    armed_thread = pthread_self();
    /* savemask 0: no system call; the mask is unchanged by the handler
     * (SA_NODEFER). */
    if (sigsetjmp(env, 0) != 0) {
        atomic_store_explicit(&armed_env, NULL, memory_order_release);
        atomic_fetch_add(&faults, 1);
        return ML__GUARD_FAULT;
    }
    atomic_store_explicit(&armed_env, &env, memory_order_release);
    int rv = fn(arg);
    atomic_store_explicit(&armed_env, NULL, memory_order_release);
    return rv;
}

uint64_t ml__guard_faults(void)
{
    return atomic_load(&faults);
}
