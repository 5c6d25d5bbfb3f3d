/*
 * evp_steps: where the ~200 ns of one AES-256-GCM seal or open of a 32-byte
 * data key (64-byte AAD) go, call by call, on the system OpenSSL.
 *
 * Each line times a loop that stops after one more EVP step than the line
 * before, so the differences are the cost of each step. It also times the tag
 * through EVP_CIPHER_CTX_get_params/set_params instead of EVP_CIPHER_CTX_ctrl,
 * and RAND_bytes per key against one call per batch of 4096 keys.
 *
 * Build and run (not part of bench_engine.py; a diagnostic for docs):
 *   gcc -O2 -o /tmp/evp_steps bench/evp_steps.c -lcrypto && /tmp/evp_steps
 * Each figure is the median of 15 interleaved runs of 100000 iterations.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define ITERS 100000
#define RUNS 15
#define BATCH 4096

static EVP_CIPHER_CTX *enc, *dec;
static uint8_t iv[12], aad[64], pt[32], ct[48], back[32], rnd[BATCH * 44];
static int outl;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int get_tag_params(EVP_CIPHER_CTX *ctx, uint8_t *tag, int set)
{
    OSSL_PARAM p[2];

    p[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, 16);
    p[1] = OSSL_PARAM_construct_end();
    return set ? EVP_CIPHER_CTX_set_params(ctx, p) : EVP_CIPHER_CTX_get_params(ctx, p);
}

/* Seal, stopping after `steps` of: 1 IV init, 2 AAD, 3 data, 4 final,
 * 5 tag by ctrl; 6 means all but the tag by get_params. */
static void seal(int steps)
{
    EVP_EncryptInit_ex(enc, NULL, NULL, NULL, iv);
    if (steps >= 2)
        EVP_EncryptUpdate(enc, NULL, &outl, aad, sizeof(aad));
    if (steps >= 3)
        EVP_EncryptUpdate(enc, ct, &outl, pt, sizeof(pt));
    if (steps >= 4)
        EVP_EncryptFinal_ex(enc, ct + 32, &outl);
    if (steps == 5)
        EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_GET_TAG, 16, ct + 32);
    if (steps == 6)
        get_tag_params(enc, ct + 32, 0);
}

/* Open: 1 with the tag set by ctrl, 2 by set_params. */
static int open_one(int how)
{
    EVP_DecryptInit_ex(dec, NULL, NULL, NULL, iv);
    EVP_DecryptUpdate(dec, NULL, &outl, aad, sizeof(aad));
    EVP_DecryptUpdate(dec, back, &outl, ct, 32);
    if (how == 1)
        EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_TAG, 16, ct + 32);
    else
        get_tag_params(dec, ct + 32, 1);
    return EVP_DecryptFinal_ex(dec, back + 32, &outl) == 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

typedef void (*bench_fn)(int arg);

static void run_seal(int arg)
{
    for (int i = 0; i < ITERS; i++)
        seal(arg);
}

static void run_open(int arg)
{
    int ok = 0;

    for (int i = 0; i < ITERS; i++)
        ok += open_one(arg);
    if (ok != ITERS) {
        fprintf(stderr, "evp_steps: open failed\n");
        exit(1);
    }
}

static void run_rand(int arg)
{
    /* arg 1: one call per key (key and IV, 44 bytes); else one call per
     * batch of 4096 keys, counted per key. */
    if (arg == 1) {
        for (int i = 0; i < ITERS; i++)
            RAND_bytes(rnd, 44);
    } else {
        for (int i = 0; i < ITERS / BATCH + 1; i++)
            RAND_bytes(rnd, BATCH * 44);
    }
}

struct variant {
    const char *name;
    bench_fn fn;
    int arg;
    int per_batch; /* counted per key of 4096-key batches */
    double t[RUNS];
};

static struct variant variants[] = {
    {"IV init", run_seal, 1, 0, {0}},
    {"+ AAD update", run_seal, 2, 0, {0}},
    {"+ data update", run_seal, 3, 0, {0}},
    {"+ final", run_seal, 4, 0, {0}},
    {"+ tag by ctrl (usual seal)", run_seal, 5, 0, {0}},
    {"seal, tag by get_params", run_seal, 6, 0, {0}},
    {"open, tag by ctrl (usual)", run_open, 1, 0, {0}},
    {"open, tag by set_params", run_open, 2, 0, {0}},
    {"RAND_bytes per key (44 B)", run_rand, 1, 0, {0}},
    {"RAND_bytes per 4096 keys", run_rand, 2, 1, {0}},
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

static double median_of(struct variant *v)
{
    double t[RUNS];

    memcpy(t, v->t, sizeof(t));
    qsort(t, RUNS, sizeof(t[0]), cmp_double);
    return t[RUNS / 2];
}

int main(void)
{
    uint8_t key[32];
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    double prev = 0;
    size_t v;

    enc = EVP_CIPHER_CTX_new();
    dec = EVP_CIPHER_CTX_new();
    if (cipher == NULL || enc == NULL || dec == NULL || RAND_bytes(key, 32) != 1
        || RAND_bytes(iv, 12) != 1 || RAND_bytes(aad, 64) != 1 || RAND_bytes(pt, 32) != 1
        || EVP_EncryptInit_ex2(enc, cipher, key, NULL, NULL) != 1
        || EVP_DecryptInit_ex2(dec, cipher, key, NULL, NULL) != 1) {
        fprintf(stderr, "evp_steps: setup failed\n");
        return 1;
    }
    seal(5); /* a valid ciphertext and tag for the opens */
    /* Interleaved: every run times every variant once, so a noisy moment on
     * a shared machine hits one run of each rather than all runs of one. */
    for (int r = -1; r < RUNS; r++) {
        for (v = 0; v < NVARIANTS; v++) {
            double per = variants[v].per_batch ? (double)(ITERS / BATCH + 1) * BATCH : ITERS;
            uint64_t t0 = now_ns();

            variants[v].fn(variants[v].arg);
            if (r >= 0) /* run -1 warms up */
                variants[v].t[r] = (double)(now_ns() - t0) / per;
        }
    }
    printf("%s; AES-256-GCM, 32-byte data key, 64-byte AAD\n", OpenSSL_version(OPENSSL_VERSION));
    printf("median of %d interleaved runs of %d, ns per data key\n", RUNS, ITERS);
    printf("  %-30s %7s %7s\n", "seal, cumulative", "total", "step");
    for (v = 0; v < 5; v++) {
        double ns = median_of(&variants[v]);

        printf("  %-30s %7.1f %7.1f\n", variants[v].name, ns, ns - prev);
        prev = ns;
    }
    for (v = 5; v < NVARIANTS; v++)
        printf("  %-30s %7.1f\n", variants[v].name, median_of(&variants[v]));
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_CTX_free(enc);
    EVP_CIPHER_CTX_free(dec);
    EVP_CIPHER_free(cipher);
    return 0;
}
