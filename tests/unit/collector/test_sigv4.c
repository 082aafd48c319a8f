/* SigV4 against AWS's published examples: the signature test suite's
 * get-vanilla, get-vanilla-query-order-key-case and post-vanilla
 * (AKIDEXAMPLE, 20150830T123600Z, us-east-1, service "service") and the
 * S3 documentation's GET Object example (examplebucket, test.txt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigv4.h"

#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static char *suite(const char *method, const char *query)
{
    ml_sigv4_header h[] = {{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
    char empty[ML_SHA256_HEX_LEN + 1];
    ml_sha256_hex("", 0, empty);
    ml_sigv4_request r = {.method = method,
                          .uri = "/",
                          .query = query,
                          .headers = h,
                          .nheaders = 2,
                          .payload_sha256 = empty,
                          .amz_date = "20150830T123600Z",
                          .region = "us-east-1",
                          .service = "service",
                          .access_key = "AKIDEXAMPLE",
                          .secret_key = SUITE_SECRET};
    return ml_sigv4_authorization(&r);
}

static void test_get_vanilla(void **state)
{
    char *a = suite("GET", "");
    assert_string_equal(
        a, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
           "aws4_request, SignedHeaders=host;x-amz-date, "
           "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    free(a);
}

static void test_get_vanilla_query_order(void **state)
{
    char *a = suite("GET", "Param2=value2&Param1=value1");
    assert_non_null(
        strstr(a, "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
    free(a);
}

static void test_post_vanilla(void **state)
{
    char *a = suite("POST", "");
    assert_non_null(
        strstr(a, "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
    free(a);
}

static void test_s3_get_object(void **state)
{
    const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char h0[ML_SHA256_HEX_LEN + 1];
    ml_sha256_hex("", 0, h0);
    assert_string_equal(h0, empty);
    /* Header order given does not matter; values are trimmed. */
    ml_sigv4_header h[] = {{"x-amz-date", "20130524T000000Z"},
                           {"range", " bytes=0-9 "},
                           {"host", "examplebucket.s3.amazonaws.com"},
                           {"x-amz-content-sha256", empty}};
    ml_sigv4_request r = {.method = "GET",
                          .uri = "/test.txt",
                          .query = "",
                          .headers = h,
                          .nheaders = 4,
                          .payload_sha256 = empty,
                          .amz_date = "20130524T000000Z",
                          .region = "us-east-1",
                          .service = "s3",
                          .access_key = "AKIAIOSFODNN7EXAMPLE",
                          .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};
    char *a = ml_sigv4_authorization(&r);
    assert_string_equal(
        a, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
           "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
           "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(a);
    r.amz_date = "2013";
    assert_null(ml_sigv4_authorization(&r));
}

static void test_uri_encode(void **state)
{
    char *e = ml_uri_encode("runs/a b/x~y_z.-+=&\xc3\xa9", 1);
    assert_string_equal(e, "runs/a%20b/x~y_z.-%2B%3D%26%C3%A9");
    free(e);
    e = ml_uri_encode("a/b", 0);
    assert_string_equal(e, "a%2Fb");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla),  cmocka_unit_test(test_get_vanilla_query_order),
        cmocka_unit_test(test_post_vanilla), cmocka_unit_test(test_s3_get_object),
        cmocka_unit_test(test_uri_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
