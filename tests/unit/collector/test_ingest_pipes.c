/* ingest_pipes.c: the pipe table behind the ingest idle timeout, checked
 * against a plain array under random adds, touches and removes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ingest_pipes.h"

#define IDS 3000

static void test_random_ops_match_reference(void **state)
{
    (void)state;
    ml_pipes p;
    ml_pipes_init(&p);
    static uint64_t ref[IDS + 1]; /* 0: absent; else last_ms + 1 */
    uint32_t rng = 12345;
    for (int step = 0; step < 200000; step++) {
        rng = rng * 1103515245 + 12345;
        uint32_t id = 1 + (rng >> 8) % IDS;
        uint64_t now = (uint64_t)step;
        switch ((rng >> 4) % 3) {
        case 0:
            ml_pipes_add(&p, id, now);
            ref[id] = now + 1;
            break;
        case 1:
            ml_pipes_touch(&p, id, now);
            if (ref[id])
                ref[id] = now + 1;
            break;
        default:
            ml_pipes_remove(&p, id);
            ref[id] = 0;
        }
    }
    size_t n = 0;
    for (uint32_t id = 1; id <= IDS; id++)
        n += ref[id] != 0;
    assert_int_equal(p.n, n);
    /* Everything idle for 1000 ms as of the end is reported, nothing else. */
    uint64_t now = 200000;
    static uint32_t out[IDS];
    size_t got = ml_pipes_expired(&p, now, 1000, out, IDS);
    size_t want = 0;
    for (uint32_t id = 1; id <= IDS; id++)
        want += ref[id] != 0 && now - (ref[id] - 1) >= 1000;
    assert_int_equal(got, want);
    for (size_t i = 0; i < got; i++) {
        assert_true(ref[out[i]] != 0);
        assert_true(now - (ref[out[i]] - 1) >= 1000);
    }
    /* Their clocks restarted: not reported again at once. */
    assert_int_equal(ml_pipes_expired(&p, now, 1000, out, IDS), 0);
    ml_pipes_dispose(&p);
}

static void test_expired_respects_max_and_touch(void **state)
{
    (void)state;
    ml_pipes p;
    ml_pipes_init(&p);
    for (uint32_t id = 1; id <= 10; id++)
        ml_pipes_add(&p, id, 0);
    ml_pipes_touch(&p, 3, 900);
    uint32_t out[10];
    assert_int_equal(ml_pipes_expired(&p, 1000, 500, out, 4), 4);
    assert_int_equal(ml_pipes_expired(&p, 1000, 500, out, 10), 5); /* 3 was active */
    for (uint32_t id = 1; id <= 10; id++)
        ml_pipes_remove(&p, id);
    assert_int_equal(p.n, 0);
    assert_int_equal(ml_pipes_expired(&p, 5000, 500, out, 10), 0);
    ml_pipes_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ops_match_reference),
        cmocka_unit_test(test_expired_respects_max_and_touch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
