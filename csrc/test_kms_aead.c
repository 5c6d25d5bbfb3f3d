/*
 * test_kms_aead: tests of kms_aead.c in C alone, with no Python in the way, so
 * that ASan/UBSan/LSan see every allocation (`nox -s sanitize` builds and runs
 * it with -fsanitize=address,undefined).
 *
 * Output buffers are allocated at exactly the size the contract promises, so a
 * write one byte too far is an ASan report, not silent corruption.
 *
 * Prints one line per test and a summary "kms_aead: N passed, M failed"; exits
 * non-zero if any test failed.
 */
#include "kms_aead.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define IVL KMS_AEAD_IV_LEN
#define TAGL KMS_AEAD_TAG_LEN
#define OVERHEAD (KMS_AEAD_IV_LEN + KMS_AEAD_TAG_LEN)

static int current_failures;
static long checks_made;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        checks_made++;                                                              \
        if (!(cond)) {                                                              \
            current_failures++;                                                     \
            fprintf(stderr, "    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

/* Stops the test on a failed precondition, where going on would only crash. */
#define REQUIRE(cond)                                                               \
    do {                                                                            \
        if (!(cond)) {                                                              \
            current_failures++;                                                     \
            fprintf(stderr, "    %s:%d: required: %s\n", __FILE__, __LINE__, #cond); \
            return;                                                                 \
        }                                                                           \
    } while (0)

static uint8_t *alloc(size_t n)
{
    /* malloc(0) may return NULL; the engine never writes through a 0-byte
     * buffer, and ASan gives a real 0-byte region to catch it if it did. */
    uint8_t *p = malloc(n);
    if (p == NULL && n != 0) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static void fill_random(uint8_t *buf, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 20) ? (1 << 20) : (int)n;
        if (RAND_bytes(buf, chunk) != 1) {
            fprintf(stderr, "RAND_bytes failed\n");
            exit(2);
        }
        buf += chunk;
        n -= (size_t)chunk;
    }
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static int from_hex(const char *hex, uint8_t *out, size_t out_len)
{
    if (strlen(hex) != 2 * out_len)
        return 0;
    for (size_t i = 0; i < out_len; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return 0;
        out[i] = (uint8_t)v;
    }
    return 1;
}

/* A key and one working context on it. */
struct pair {
    kms_aead_key *key;
    kms_aead_op *op;
};

static int pair_new(struct pair *p, const uint8_t *raw)
{
    p->key = NULL;
    p->op = NULL;
    if (kms_aead_key_new(raw, KMS_AEAD_KEY_LEN, &p->key) != KMS_OK)
        return 0;
    if (kms_aead_op_new(p->key, &p->op) != KMS_OK) {
        kms_aead_key_free(p->key);
        return 0;
    }
    return 1;
}

static int pair_random(struct pair *p)
{
    uint8_t raw[KMS_AEAD_KEY_LEN];
    fill_random(raw, sizeof(raw));
    return pair_new(p, raw);
}

static void pair_free(struct pair *p)
{
    kms_aead_op_free(p->op);
    kms_aead_key_free(p->key);
}

/* Seals pt and opens it again; 1 when everything matched. */
static int round_trip(kms_aead_op *op, size_t pt_len, size_t aad_len)
{
    uint8_t iv[IVL];
    uint8_t *pt = alloc(pt_len), *aad = alloc(aad_len);
    uint8_t *sealed = alloc(pt_len + TAGL), *opened = alloc(pt_len);
    int ok;

    fill_random(iv, IVL);
    fill_random(pt, pt_len);
    fill_random(aad, aad_len);
    ok = kms_aead_seal(op, iv, pt, pt_len, aad, aad_len, sealed) == KMS_OK
         && kms_aead_open(op, iv, sealed, pt_len + TAGL, aad, aad_len, opened) == KMS_OK
         && (pt_len == 0 || memcmp(opened, pt, pt_len) == 0)
         && (pt_len < 16 || memcmp(sealed, pt, pt_len) != 0);
    free(pt);
    free(aad);
    free(sealed);
    free(opened);
    return ok;
}

/* ---------------------------------------------------------------- tests */

static void test_known_answers(void)
{
    /* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13
     * and 14: the all-zero 256-bit key and 96-bit IV. */
    static const char *tag13 = "530f8afbc74536b9a963b4f1c4cb738b";
    static const char *ct14 = "cea7403d4d606b6e074ec5d3baf39d18";
    static const char *tag14 = "d0d1c8a799996bf0265b98b5d48ab919";
    uint8_t zero_key[32] = {0}, zero_iv[12] = {0}, zero_pt[16] = {0};
    uint8_t want[32], out[32], back[16];
    struct pair p;

    REQUIRE(pair_new(&p, zero_key));
    CHECK(from_hex(tag13, want, 16));
    CHECK(kms_aead_seal(p.op, zero_iv, NULL, 0, NULL, 0, out) == KMS_OK);
    CHECK(memcmp(out, want, 16) == 0);
    CHECK(kms_aead_open(p.op, zero_iv, out, 16, NULL, 0, back) == KMS_OK);

    CHECK(from_hex(ct14, want, 16) && from_hex(tag14, want + 16, 16));
    CHECK(kms_aead_seal(p.op, zero_iv, zero_pt, 16, NULL, 0, out) == KMS_OK);
    CHECK(memcmp(out, want, 32) == 0);
    memset(back, 0xAA, sizeof(back));
    CHECK(kms_aead_open(p.op, zero_iv, want, 32, NULL, 0, back) == KMS_OK);
    CHECK(all_zero(back, 16));
    pair_free(&p);
}

static void test_round_trip_sizes(void)
{
    static const size_t pt_sizes[] = {0, 1, 15, 16, 17, 31, 32, 33, 255, 4096, 16384, 65537};
    static const size_t aad_sizes[] = {0, 1, 13, 16, 100, 20000};
    struct pair p;

    REQUIRE(pair_random(&p));
    for (size_t i = 0; i < sizeof(pt_sizes) / sizeof(*pt_sizes); i++)
        for (size_t j = 0; j < sizeof(aad_sizes) / sizeof(*aad_sizes); j++)
            CHECK(round_trip(p.op, pt_sizes[i], aad_sizes[j]));
    pair_free(&p);
}

static void test_null_pointers_for_empty_inputs(void)
{
    /* A zero length with a NULL pointer means "nothing", same as a real buffer. */
    uint8_t iv[IVL], a[TAGL], b[TAGL], empty[1], out[1];
    struct pair p;

    REQUIRE(pair_random(&p));
    fill_random(iv, IVL);
    CHECK(kms_aead_seal(p.op, iv, NULL, 0, NULL, 0, a) == KMS_OK);
    CHECK(kms_aead_seal(p.op, iv, empty, 0, empty, 0, b) == KMS_OK);
    CHECK(memcmp(a, b, TAGL) == 0);
    CHECK(kms_aead_open(p.op, iv, a, TAGL, NULL, 0, out) == KMS_OK);
    pair_free(&p);
}

static void test_tamper_every_bit(void)
{
    enum { PT = 40, AAD = 20 };
    uint8_t iv[IVL], pt[PT], aad[AAD], sealed[PT + TAGL], opened[PT];
    struct pair p;

    REQUIRE(pair_random(&p));
    fill_random(iv, IVL);
    fill_random(pt, PT);
    fill_random(aad, AAD);
    REQUIRE(kms_aead_seal(p.op, iv, pt, PT, aad, AAD, sealed) == KMS_OK);

    /* IV, ciphertext and tag, AAD: every single-bit change must fail, and a
     * failed open leaves nothing of the plaintext behind. */
    for (int part = 0; part < 3; part++) {
        uint8_t *buf = part == 0 ? iv : part == 1 ? sealed : aad;
        size_t len = part == 0 ? IVL : part == 1 ? sizeof(sealed) : AAD;
        for (size_t i = 0; i < len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                buf[i] ^= (uint8_t)(1u << bit);
                memset(opened, 0xAA, PT);
                CHECK(kms_aead_open(p.op, iv, sealed, sizeof(sealed), aad, AAD, opened)
                      == KMS_ERR_AUTH);
                CHECK(all_zero(opened, PT));
                buf[i] ^= (uint8_t)(1u << bit);
            }
        }
    }
    /* The op still works after all those failures. */
    CHECK(kms_aead_open(p.op, iv, sealed, sizeof(sealed), aad, AAD, opened) == KMS_OK);
    CHECK(memcmp(opened, pt, PT) == 0);
    pair_free(&p);
}

static void test_truncated_and_extended(void)
{
    enum { PT = 24 };
    uint8_t iv[IVL], pt[PT], sealed[PT + TAGL + 1], opened[PT + 1];
    struct pair p;

    REQUIRE(pair_random(&p));
    fill_random(iv, IVL);
    fill_random(pt, PT);
    REQUIRE(kms_aead_seal(p.op, iv, pt, PT, NULL, 0, sealed) == KMS_OK);
    /* Shorter than a tag: refused before anything is read or written. */
    for (size_t n = 0; n < TAGL; n++)
        CHECK(kms_aead_open(p.op, iv, sealed, n, NULL, 0, NULL) == KMS_ERR_AUTH);
    /* Each byte dropped from the end: the tag is read from the wrong place. */
    for (size_t n = TAGL; n < PT + TAGL; n++) {
        memset(opened, 0xAA, sizeof(opened));
        CHECK(kms_aead_open(p.op, iv, sealed, n, NULL, 0, opened) == KMS_ERR_AUTH);
        CHECK(all_zero(opened, n - TAGL));
    }
    /* One byte appended. */
    sealed[PT + TAGL] = 0;
    CHECK(kms_aead_open(p.op, iv, sealed, PT + TAGL + 1, NULL, 0, opened) == KMS_ERR_AUTH);
    CHECK(kms_aead_open(p.op, iv, sealed, PT + TAGL, NULL, 0, opened) == KMS_OK);
    pair_free(&p);
}

static void test_key_lengths(void)
{
    static const size_t bad[] = {0, 1, 16, 24, 31, 33, 64};
    uint8_t raw[64];
    kms_aead_key *key;

    fill_random(raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        key = (kms_aead_key *)raw; /* any non-NULL value: it must be reset */
        CHECK(kms_aead_key_new(raw, bad[i], &key) == KMS_ERR_KEY_LEN);
        CHECK(key == NULL);
    }
    CHECK(kms_aead_key_new(raw, 32, &key) == KMS_OK);
    CHECK(key != NULL);
    kms_aead_key_free(key);
}

static void check_generate(kms_aead_op *op, size_t n, size_t key_len)
{
    const size_t item = OVERHEAD + key_len;
    uint8_t aad[7] = "context";
    uint8_t *plain = alloc(n * key_len), *sealed = alloc(n * item), *opened = alloc(key_len);

    CHECK(kms_aead_generate(op, n, key_len, aad, sizeof(aad), plain, sealed) == KMS_OK);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *it = sealed + i * item;
        CHECK(kms_aead_open(op, it, it + IVL, key_len + TAGL, aad, sizeof(aad), opened) == KMS_OK);
        CHECK(memcmp(opened, plain + i * key_len, key_len) == 0);
        CHECK(kms_aead_open(op, it, it + IVL, key_len + TAGL, aad, sizeof(aad) - 1, opened)
              == KMS_ERR_AUTH);
        for (size_t j = 0; j < i; j++)
            CHECK(memcmp(it, sealed + j * item, IVL) != 0); /* fresh IVs */
    }
    free(plain);
    free(sealed);
    free(opened);
}

static void test_generate(void)
{
    struct pair p;

    REQUIRE(pair_random(&p));
    check_generate(p.op, 1, 1);
    check_generate(p.op, 9, 1);
    check_generate(p.op, 33, 32);
    check_generate(p.op, 5, 1024);
    check_generate(p.op, 1, KMS_AEAD_DATA_KEY_MAX);
    pair_free(&p);
}

static void test_generate_bounds(void)
{
    uint8_t plain[1026], sealed[1026 + OVERHEAD];
    struct pair p;

    REQUIRE(pair_random(&p));
    /* n = 0 is a valid, empty batch: nothing is written, NULL buffers are fine. */
    CHECK(kms_aead_generate(p.op, 0, 32, NULL, 0, NULL, NULL) == KMS_OK);
    CHECK(kms_aead_generate(p.op, 0, 1, NULL, 0, NULL, NULL) == KMS_OK);
    /* Data keys are 1..1024 bytes; refused before writing anything. */
    memset(plain, 0x5A, sizeof(plain));
    CHECK(kms_aead_generate(p.op, 1, 0, NULL, 0, plain, sealed) == KMS_ERR_LENGTH);
    CHECK(kms_aead_generate(p.op, 1, KMS_AEAD_DATA_KEY_MAX + 1, NULL, 0, plain, sealed)
          == KMS_ERR_LENGTH);
    CHECK(kms_aead_generate(p.op, 0, 0, NULL, 0, NULL, NULL) == KMS_ERR_LENGTH);
    CHECK(kms_aead_generate(p.op, 1, SIZE_MAX, NULL, 0, plain, sealed) == KMS_ERR_LENGTH);
    CHECK(plain[0] == 0x5A && plain[sizeof(plain) - 1] == 0x5A);
    /* A count whose buffers cannot exist is refused, not multiplied into overflow. */
    CHECK(kms_aead_generate(p.op, SIZE_MAX / 2, 32, NULL, 0, NULL, NULL) == KMS_ERR_LENGTH);
    CHECK(kms_aead_generate(p.op, (size_t)1 << 40, 1, NULL, 0, NULL, NULL) == KMS_ERR_LENGTH);
    /* The extremes that are allowed. */
    CHECK(kms_aead_generate(p.op, 1, 1, NULL, 0, plain, sealed) == KMS_OK);
    CHECK(kms_aead_generate(p.op, 1, KMS_AEAD_DATA_KEY_MAX, NULL, 0, plain, sealed) == KMS_OK);
    pair_free(&p);
}

static void test_empty_batches(void)
{
    struct pair p;

    REQUIRE(pair_random(&p));
    CHECK(kms_aead_seal_many(p.op, 0, NULL, NULL, NULL, NULL, NULL) == KMS_OK);
    CHECK(kms_aead_open_many(p.op, 0, NULL, NULL, NULL, NULL, NULL, NULL) == KMS_OK);
    pair_free(&p);
}

static void test_batches_with_bad_items(void)
{
    enum { N = 8 };
    static const size_t pt_lens[N] = {0, 1, 16, 33, 100, 4096, 70000, 5};
    const uint8_t *pts[N], *aads[N], *ins[N];
    size_t aad_lens[N], in_lens[N];
    uint8_t *outs[N], *opened[N];
    kms_status st[N], want[N];
    struct pair p;

    REQUIRE(pair_random(&p));
    for (int i = 0; i < N; i++) {
        uint8_t *pt = alloc(pt_lens[i]), *aad = alloc((size_t)i + 1);
        fill_random(pt, pt_lens[i]);
        fill_random(aad, (size_t)i + 1);
        pts[i] = pt;
        aads[i] = aad;
        aad_lens[i] = (size_t)i + 1;
        outs[i] = alloc(OVERHEAD + pt_lens[i]);
    }
    CHECK(kms_aead_seal_many(p.op, N, pts, pt_lens, aads, aad_lens, outs) == KMS_OK);

    /* Every sealed item opens on its own. */
    for (int i = 0; i < N; i++) {
        uint8_t *o = alloc(pt_lens[i]);
        CHECK(kms_aead_open(p.op, outs[i], outs[i] + IVL, pt_lens[i] + TAGL, aads[i],
                            aad_lens[i], o) == KMS_OK);
        CHECK(pt_lens[i] == 0 || memcmp(o, pts[i], pt_lens[i]) == 0);
        free(o);
    }

    /* Spoil some: a tag bit, a truncation below IV + tag, a wrong AAD, an IV bit. */
    for (int i = 0; i < N; i++) {
        ins[i] = outs[i];
        in_lens[i] = OVERHEAD + pt_lens[i];
        want[i] = KMS_OK;
    }
    outs[2][OVERHEAD + pt_lens[2] - 1] ^= 0x01;
    want[2] = KMS_ERR_AUTH;
    in_lens[3] = OVERHEAD - 1;
    want[3] = KMS_ERR_AUTH;
    aad_lens[5] -= 1;
    want[5] = KMS_ERR_AUTH;
    outs[6][0] ^= 0x80;
    want[6] = KMS_ERR_AUTH;

    for (int i = 0; i < N; i++) {
        size_t n = in_lens[i] >= OVERHEAD ? in_lens[i] - OVERHEAD : 0;
        opened[i] = alloc(n);
        memset(opened[i], 0xAA, n);
        st[i] = KMS_ERR_OPENSSL;
    }
    CHECK(kms_aead_open_many(p.op, N, ins, in_lens, aads, aad_lens, opened, st) == KMS_OK);
    for (int i = 0; i < N; i++) {
        size_t n = in_lens[i] >= OVERHEAD ? in_lens[i] - OVERHEAD : 0;
        CHECK(st[i] == want[i]);
        if (want[i] == KMS_OK)
            CHECK(n == 0 || memcmp(opened[i], pts[i], n) == 0);
        else
            CHECK(all_zero(opened[i], n));
    }
    for (int i = 0; i < N; i++) {
        free((void *)pts[i]);
        free((void *)aads[i]);
        free(outs[i]);
        free(opened[i]);
    }
    pair_free(&p);
}

static void test_large_data(void)
{
    const size_t pt_len = (3u << 20) + 7, aad_len = (1u << 20) + 1;
    uint8_t iv[IVL];
    uint8_t *pt = alloc(pt_len), *aad = alloc(aad_len);
    uint8_t *sealed = alloc(pt_len + TAGL), *opened = alloc(pt_len);
    struct pair p;

    if (!pair_random(&p)) {
        CHECK(!"key");
        goto out;
    }
    fill_random(iv, IVL);
    fill_random(pt, pt_len);
    fill_random(aad, aad_len);
    CHECK(kms_aead_seal(p.op, iv, pt, pt_len, aad, aad_len, sealed) == KMS_OK);
    CHECK(kms_aead_open(p.op, iv, sealed, pt_len + TAGL, aad, aad_len, opened) == KMS_OK);
    CHECK(memcmp(opened, pt, pt_len) == 0);
    /* A change deep in the data is caught, and the whole output is wiped. */
    sealed[pt_len / 2] ^= 0x10;
    CHECK(kms_aead_open(p.op, iv, sealed, pt_len + TAGL, aad, aad_len, opened) == KMS_ERR_AUTH);
    CHECK(all_zero(opened, pt_len));
    sealed[pt_len / 2] ^= 0x10;
    aad[aad_len - 1] ^= 0x01;
    CHECK(kms_aead_open(p.op, iv, sealed, pt_len + TAGL, aad, aad_len, opened) == KMS_ERR_AUTH);
    pair_free(&p);
out:
    free(pt);
    free(aad);
    free(sealed);
    free(opened);
}

static void test_key_and_op_lifecycle(void)
{
    uint8_t raw[32], iv[IVL], pt[48], a[20 + TAGL], b[48 + TAGL], c[20 + TAGL], back[48];
    kms_aead_key *key = NULL;
    kms_aead_op *ops[3] = {NULL, NULL, NULL};

    /* Freeing NULL is a no-op, as with free(). */
    kms_aead_key_free(NULL);
    kms_aead_op_free(NULL);

    fill_random(raw, sizeof(raw));
    fill_random(iv, IVL);
    fill_random(pt, sizeof(pt));
    REQUIRE(kms_aead_key_new(raw, 32, &key) == KMS_OK);
    for (int i = 0; i < 3; i++)
        REQUIRE(kms_aead_op_new(key, &ops[i]) == KMS_OK);
    /* Ops on one key are independent: interleaved use gives the same answers. */
    CHECK(kms_aead_seal(ops[0], iv, pt, 20, NULL, 0, a) == KMS_OK);
    CHECK(kms_aead_seal(ops[1], iv, pt, sizeof(pt), pt, 7, b) == KMS_OK);
    CHECK(kms_aead_seal(ops[2], iv, pt, 20, NULL, 0, c) == KMS_OK);
    CHECK(memcmp(a, c, sizeof(a)) == 0);
    CHECK(kms_aead_open(ops[1], iv, a, sizeof(a), NULL, 0, back) == KMS_OK);
    CHECK(memcmp(back, pt, 20) == 0);
    CHECK(kms_aead_open(ops[0], iv, b, sizeof(b), pt, 7, back) == KMS_OK);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
    /* Freed in another order than made; a new op after that still works. */
    kms_aead_op_free(ops[1]);
    kms_aead_op_free(ops[0]);
    CHECK(kms_aead_op_new(key, &ops[0]) == KMS_OK);
    CHECK(kms_aead_seal(ops[0], iv, pt, 20, NULL, 0, c) == KMS_OK);
    CHECK(memcmp(a, c, sizeof(a)) == 0);
    kms_aead_op_free(ops[0]);
    kms_aead_op_free(ops[2]);
    kms_aead_key_free(key);

    /* Many short lives: a leak here is what LeakSanitizer is for. */
    for (int i = 0; i < 2000; i++) {
        struct pair p;
        REQUIRE(pair_new(&p, raw));
        if (i % 100 == 0)
            CHECK(round_trip(p.op, 64, 8));
        pair_free(&p);
    }
}

struct worker {
    const kms_aead_key *key;
    const uint8_t *iv, *pt, *expected;
    size_t pt_len;
    int seed;
    int failures;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    kms_aead_op *op;
    uint8_t *sealed = alloc(w->pt_len + TAGL), *opened = alloc(w->pt_len);

    if (kms_aead_op_new(w->key, &op) != KMS_OK) {
        w->failures++;
        goto out;
    }
    for (int r = 0; r < 300; r++) {
        /* Lengths vary per round and per thread, so ops are never in step. */
        size_t n = (size_t)(r * 37 + w->seed * 11) % (w->pt_len + 1);
        if (kms_aead_seal(op, w->iv, w->pt, w->pt_len, NULL, 0, sealed) != KMS_OK
            || memcmp(sealed, w->expected, w->pt_len + TAGL) != 0)
            w->failures++;
        if (kms_aead_open(op, w->iv, sealed, w->pt_len + TAGL, NULL, 0, opened) != KMS_OK
            || memcmp(opened, w->pt, w->pt_len) != 0)
            w->failures++;
        if (!round_trip(op, n, (size_t)r % 20))
            w->failures++;
    }
    kms_aead_op_free(op);
out:
    free(sealed);
    free(opened);
    return NULL;
}

static void test_threads_share_a_key(void)
{
    enum { THREADS = 4, PT = 2048 };
    uint8_t iv[IVL], pt[PT], expected[PT + TAGL];
    pthread_t tids[THREADS];
    struct worker ws[THREADS];
    struct pair p;

    REQUIRE(pair_random(&p));
    fill_random(iv, IVL);
    fill_random(pt, PT);
    REQUIRE(kms_aead_seal(p.op, iv, pt, PT, NULL, 0, expected) == KMS_OK);
    for (int t = 0; t < THREADS; t++) {
        ws[t] = (struct worker){p.key, iv, pt, expected, PT, t, 0};
        REQUIRE(pthread_create(&tids[t], NULL, worker_run, &ws[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        CHECK(pthread_join(tids[t], NULL) == 0);
        CHECK(ws[t].failures == 0);
    }
    pair_free(&p);
}

/* ---------------------------------------------------------------- runner */

struct test {
    const char *name;
    void (*fn)(void);
};

int main(void)
{
    static const struct test tests[] = {
        {"known_answers", test_known_answers},
        {"round_trip_sizes", test_round_trip_sizes},
        {"null_pointers_for_empty_inputs", test_null_pointers_for_empty_inputs},
        {"tamper_every_bit", test_tamper_every_bit},
        {"truncated_and_extended", test_truncated_and_extended},
        {"key_lengths", test_key_lengths},
        {"generate", test_generate},
        {"generate_bounds", test_generate_bounds},
        {"empty_batches", test_empty_batches},
        {"batches_with_bad_items", test_batches_with_bad_items},
        {"large_data", test_large_data},
        {"key_and_op_lifecycle", test_key_and_op_lifecycle},
        {"threads_share_a_key", test_threads_share_a_key},
    };
    const size_t count = sizeof(tests) / sizeof(*tests);
    int passed = 0, failed = 0;

    for (size_t i = 0; i < count; i++) {
        current_failures = 0;
        tests[i].fn();
        if (current_failures == 0) {
            passed++;
            printf("ok    %s\n", tests[i].name);
        } else {
            failed++;
            printf("FAIL  %s (%d checks)\n", tests[i].name, current_failures);
        }
        fflush(stdout);
    }
    printf("kms_aead: %d passed, %d failed (%ld checks)\n", passed, failed, checks_made);
    return failed == 0 ? 0 : 1;
}
