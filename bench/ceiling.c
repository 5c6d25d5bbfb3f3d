/*
 * ceiling: the C reference for bench_engine.py.
 *
 * What a careful C programmer writes to wrap and unwrap 32-byte data keys with
 * AES-256-GCM over the system OpenSSL, with no Python anywhere: the cipher is
 * fetched once, the key schedule is set once per context, and each data key
 * costs one IV set, one AAD update, one data update, one final and one tag
 * get/set. It is the floor the engine is measured against.
 *
 * Three loops, each timed over the same number of data keys:
 *   wrap_rand_per_key  one RAND_bytes call per data key (its key and IV), as a
 *                      straightforward loop does;
 *   wrap_rand_batched  one RAND_bytes call per batch of B keys (all keys and
 *                      IVs at once), the algorithm the engine itself uses;
 *   unwrap             open what was wrapped (no randomness involved).
 *
 * Usage: ceiling N B AAD_HEX
 *   N  data keys per timed sample, B  batch size for wrap_rand_batched.
 * Protocol (so the Python driver can interleave it with other contenders):
 * it prints "ready <OpenSSL version>" and then, for every line read on stdin,
 * runs one round of the three loops (in an order that rotates per round) and
 * prints "round <wrap_rand_per_key> <wrap_rand_batched> <unwrap>" in ns per
 * data key. EOF ends it. Every round checks that what it unwrapped equals what
 * it wrapped; a mismatch is a failure (exit status 1).
 *
 * Build: gcc -O2 -o ceiling ceiling.c -lcrypto
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define KEY_LEN 32 /* the wrapping key */
#define DK_LEN 32  /* each data key */
#define IV_LEN 12
#define TAG_LEN 16
#define ITEM_LEN (IV_LEN + DK_LEN + TAG_LEN) /* IV || ciphertext || tag */

static void die(const char *what)
{
    fprintf(stderr, "ceiling: %s failed\n", what);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seals one data key: IV set (schedule kept), AAD, data, final, tag. */
static void seal_one(EVP_CIPHER_CTX *ctx, const uint8_t *iv, const uint8_t *dk,
                     const uint8_t *aad, int aad_len, uint8_t *ct_tag)
{
    int outl;

    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1
        || EVP_EncryptUpdate(ctx, NULL, &outl, aad, aad_len) != 1
        || EVP_EncryptUpdate(ctx, ct_tag, &outl, dk, DK_LEN) != 1
        || EVP_EncryptFinal_ex(ctx, ct_tag + DK_LEN, &outl) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct_tag + DK_LEN) != 1)
        die("seal");
}

/* One RAND_bytes call per data key, for its key and its IV together. */
static void wrap_rand_per_key(EVP_CIPHER_CTX *ctx, size_t n, const uint8_t *aad,
                              int aad_len, uint8_t *plain, uint8_t *sealed)
{
    uint8_t draw[DK_LEN + IV_LEN];
    size_t i;

    for (i = 0; i < n; i++) {
        uint8_t *dk = plain + i * DK_LEN;
        uint8_t *item = sealed + i * ITEM_LEN;

        if (RAND_bytes(draw, (int)sizeof(draw)) != 1)
            die("RAND_bytes");
        memcpy(dk, draw, DK_LEN);
        memcpy(item, draw + DK_LEN, IV_LEN);
        seal_one(ctx, item, dk, aad, aad_len, item + IV_LEN);
    }
    OPENSSL_cleanse(draw, sizeof(draw));
}

/* One RAND_bytes call per batch of b keys, for all their keys and IVs; the
 * keys are copied out to where they are returned and each IV in front of its
 * ciphertext, as the engine does. */
static void wrap_rand_batched(EVP_CIPHER_CTX *ctx, size_t n, size_t b, const uint8_t *aad,
                              int aad_len, uint8_t *plain, uint8_t *sealed, uint8_t *draw)
{
    size_t start, i;

    for (start = 0; start < n; start += b) {
        size_t m = n - start < b ? n - start : b;
        uint8_t *dks = plain + start * DK_LEN;
        uint8_t *items = sealed + start * ITEM_LEN;
        const uint8_t *ivs = draw + m * DK_LEN;

        if (RAND_bytes(draw, (int)(m * (DK_LEN + IV_LEN))) != 1)
            die("RAND_bytes");
        memcpy(dks, draw, m * DK_LEN);
        for (i = 0; i < m; i++) {
            uint8_t *item = items + i * ITEM_LEN;

            memcpy(item, ivs + i * IV_LEN, IV_LEN);
            seal_one(ctx, item, dks + i * DK_LEN, aad, aad_len, item + IV_LEN);
        }
        OPENSSL_cleanse(draw, m * (DK_LEN + IV_LEN));
    }
}

/* Opens every item; returns how many failed to authenticate. */
static size_t unwrap(EVP_CIPHER_CTX *ctx, size_t n, const uint8_t *aad, int aad_len,
                     const uint8_t *sealed, uint8_t *out)
{
    size_t i, failed = 0;
    int outl;

    for (i = 0; i < n; i++) {
        const uint8_t *item = sealed + i * ITEM_LEN;
        uint8_t *dk = out + i * DK_LEN;

        if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, item) != 1
            || EVP_DecryptUpdate(ctx, NULL, &outl, aad, aad_len) != 1
            || EVP_DecryptUpdate(ctx, dk, &outl, item + IV_LEN, DK_LEN) != 1
            || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                                   (void *)(item + IV_LEN + DK_LEN)) != 1
            || EVP_DecryptFinal_ex(ctx, dk + DK_LEN, &outl) != 1)
            failed++;
    }
    return failed;
}

static size_t parse_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t len = strlen(hex), i;

    if (len % 2 != 0 || len / 2 > cap)
        die("parsing the AAD");
    for (i = 0; i < len / 2; i++) {
        unsigned int byte;

        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            die("parsing the AAD");
        out[i] = (uint8_t)byte;
    }
    return len / 2;
}

int main(int argc, char **argv)
{
    uint8_t key[KEY_LEN], aad[4096];
    char line[64];
    size_t n, b, aad_len;
    uint8_t *plain, *sealed, *opened, *draw;
    EVP_CIPHER *cipher;
    EVP_CIPHER_CTX *enc, *dec;
    unsigned long round = 0;

    if (argc != 4)
        die("usage: ceiling N B AAD_HEX; the call");
    n = strtoul(argv[1], NULL, 10);
    b = strtoul(argv[2], NULL, 10);
    if (n == 0 || b == 0 || n > 1u << 24 || b > 1u << 20)
        die("checking N and B");
    aad_len = parse_hex(argv[3], aad, sizeof(aad));

    plain = malloc(n * DK_LEN);
    opened = malloc(n * DK_LEN);
    sealed = malloc(n * ITEM_LEN);
    draw = malloc(b * (DK_LEN + IV_LEN));
    if (plain == NULL || opened == NULL || sealed == NULL || draw == NULL)
        die("malloc");

    /* Fetched once and key schedules set once, outside every timed loop. */
    cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    enc = EVP_CIPHER_CTX_new();
    dec = EVP_CIPHER_CTX_new();
    if (cipher == NULL || enc == NULL || dec == NULL || RAND_bytes(key, KEY_LEN) != 1
        || EVP_EncryptInit_ex2(enc, cipher, key, NULL, NULL) != 1
        || EVP_DecryptInit_ex2(dec, cipher, key, NULL, NULL) != 1)
        die("setup");
    OPENSSL_cleanse(key, sizeof(key));

    printf("ready %s\n", OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);

    while (fgets(line, sizeof(line), stdin) != NULL) {
        double ns[3] = {0, 0, 0};
        int k;

        for (k = 0; k < 3; k++) {
            /* Rotate the order so no loop always runs first (cold) or last. */
            int which = (int)((round + (unsigned long)k) % 3);
            uint64_t t0 = now_ns(), t1;

            if (which == 0) {
                wrap_rand_per_key(enc, n, aad, (int)aad_len, plain, sealed);
                t1 = now_ns();
            } else if (which == 1) {
                wrap_rand_batched(enc, n, b, aad, (int)aad_len, plain, sealed, draw);
                t1 = now_ns();
            } else {
                size_t failed = unwrap(dec, n, aad, (int)aad_len, sealed, opened);

                t1 = now_ns();
                if (failed != 0 || memcmp(opened, plain, n * DK_LEN) != 0)
                    die("the unwrap check");
            }
            ns[which] = (double)(t1 - t0) / (double)n;
        }
        printf("round %.2f %.2f %.2f\n", ns[0], ns[1], ns[2]);
        fflush(stdout);
        round++;
    }

    OPENSSL_cleanse(plain, n * DK_LEN);
    OPENSSL_cleanse(opened, n * DK_LEN);
    free(plain);
    free(opened);
    free(sealed);
    free(draw);
    EVP_CIPHER_CTX_free(enc);
    EVP_CIPHER_CTX_free(dec);
    EVP_CIPHER_free(cipher);
    return 0;
}
