/* Multi-buffer md5: the uploads a worker receives at once are hashed side by side.
 *
 * md5 is one long chain of dependent steps, so one stream cannot go faster than a core
 * runs that chain (~700 MB/s on AMD Zen 4). Independent streams can share the core: one
 * vector instruction does the same step for several streams, one per 32-bit lane.
 * Kernels, with what a pass costs in scalar blocks on Zen 4 (bench/bench_md5_lanes.py):
 *
 *   avx512   8 lanes on ymm registers (~1.1), 16 on zmm (~1.5) when more streams are ready
 *   avx2     8 lanes (~1.3-1.4)
 *   portable one stream at a time in plain C: no lanes, the engine's machinery only
 *
 * The best kernel this CPU has is chosen at import (set_kernel() picks another). While
 * enough uploads stream for lanes to pay, one engine thread per process takes the
 * process's md5 updates, puts them in lanes and runs them in lockstep, 64 KiB per lane
 * at a time, so a new update joins within a fraction of a millisecond; an idle engine
 * waits a little for the other active streams before it starts (HOLD_MAX_NS).
 * Otherwise each update runs MD5_Update in its caller's thread, as without the engine.
 *
 * The contexts are OpenSSL's MD5_CTX, byte for byte (store/digest.py saves them raw to
 * Redis and finishes them with MD5_Final), so the engine and libcrypto can take turns
 * on the same digest.
 *
 * Only the vector kernels need x86-64 (and GCC or clang): each is compiled for its own
 * instruction set with a function attribute, so the module builds with plain -O3 and
 * runs on any x86-64; elsewhere it builds with the portable kernel alone.
 *
 * Python: update(ctx, chunks) blocks (without the GIL) until every chunk is hashed into
 * ctx; lanes() tells how many streams the kernel hashes side by side (0: no vector
 * kernel here, the caller keeps using libcrypto); stats() counts what the engine did.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86_KERNELS 1
#else
#define HAVE_X86_KERNELS 0
#endif

#define MAX_LANES 16
/* Blocks run in lockstep before the engine looks for new work: 64 KiB per lane, so
 * a newly arrived update waits at most ~100 us for a lane. */
#define SLICE_BLOCKS 1024
/* Fewer ready streams than this are hashed one after the other, not in lanes, and
 * fewer streaming uploads keep their updates in their callers' threads: a pass costs
 * less than two scalar blocks, so two streams in lanes take less CPU than on their own
 * (bench/bench_md5_lanes.py; in the server: bench/bench_md5_routing.py). */
#define AVX512_MIN_STREAMS 2
#define AVX2_MIN_STREAMS 2
#define NEVER INT_MAX

typedef struct {
    uint32_t A, B, C, D;
    uint32_t Nl, Nh; /* bits hashed, low and high words */
    uint32_t data[16]; /* bytes of an unfinished block */
    uint32_t num; /* how many of them */
} md5_ctx;

#define MD5_STEPS \
    X(F, a, b, c, d,  0, 0xd76aa478,  7) \
    X(F, d, a, b, c,  1, 0xe8c7b756, 12) \
    X(F, c, d, a, b,  2, 0x242070db, 17) \
    X(F, b, c, d, a,  3, 0xc1bdceee, 22) \
    X(F, a, b, c, d,  4, 0xf57c0faf,  7) \
    X(F, d, a, b, c,  5, 0x4787c62a, 12) \
    X(F, c, d, a, b,  6, 0xa8304613, 17) \
    X(F, b, c, d, a,  7, 0xfd469501, 22) \
    X(F, a, b, c, d,  8, 0x698098d8,  7) \
    X(F, d, a, b, c,  9, 0x8b44f7af, 12) \
    X(F, c, d, a, b, 10, 0xffff5bb1, 17) \
    X(F, b, c, d, a, 11, 0x895cd7be, 22) \
    X(F, a, b, c, d, 12, 0x6b901122,  7) \
    X(F, d, a, b, c, 13, 0xfd987193, 12) \
    X(F, c, d, a, b, 14, 0xa679438e, 17) \
    X(F, b, c, d, a, 15, 0x49b40821, 22) \
    X(G, a, b, c, d,  1, 0xf61e2562,  5) \
    X(G, d, a, b, c,  6, 0xc040b340,  9) \
    X(G, c, d, a, b, 11, 0x265e5a51, 14) \
    X(G, b, c, d, a,  0, 0xe9b6c7aa, 20) \
    X(G, a, b, c, d,  5, 0xd62f105d,  5) \
    X(G, d, a, b, c, 10, 0x02441453,  9) \
    X(G, c, d, a, b, 15, 0xd8a1e681, 14) \
    X(G, b, c, d, a,  4, 0xe7d3fbc8, 20) \
    X(G, a, b, c, d,  9, 0x21e1cde6,  5) \
    X(G, d, a, b, c, 14, 0xc33707d6,  9) \
    X(G, c, d, a, b,  3, 0xf4d50d87, 14) \
    X(G, b, c, d, a,  8, 0x455a14ed, 20) \
    X(G, a, b, c, d, 13, 0xa9e3e905,  5) \
    X(G, d, a, b, c,  2, 0xfcefa3f8,  9) \
    X(G, c, d, a, b,  7, 0x676f02d9, 14) \
    X(G, b, c, d, a, 12, 0x8d2a4c8a, 20) \
    X(H, a, b, c, d,  5, 0xfffa3942,  4) \
    X(H, d, a, b, c,  8, 0x8771f681, 11) \
    X(H, c, d, a, b, 11, 0x6d9d6122, 16) \
    X(H, b, c, d, a, 14, 0xfde5380c, 23) \
    X(H, a, b, c, d,  1, 0xa4beea44,  4) \
    X(H, d, a, b, c,  4, 0x4bdecfa9, 11) \
    X(H, c, d, a, b,  7, 0xf6bb4b60, 16) \
    X(H, b, c, d, a, 10, 0xbebfbc70, 23) \
    X(H, a, b, c, d, 13, 0x289b7ec6,  4) \
    X(H, d, a, b, c,  0, 0xeaa127fa, 11) \
    X(H, c, d, a, b,  3, 0xd4ef3085, 16) \
    X(H, b, c, d, a,  6, 0x04881d05, 23) \
    X(H, a, b, c, d,  9, 0xd9d4d039,  4) \
    X(H, d, a, b, c, 12, 0xe6db99e5, 11) \
    X(H, c, d, a, b, 15, 0x1fa27cf8, 16) \
    X(H, b, c, d, a,  2, 0xc4ac5665, 23) \
    X(I, a, b, c, d,  0, 0xf4292244,  6) \
    X(I, d, a, b, c,  7, 0x432aff97, 10) \
    X(I, c, d, a, b, 14, 0xab9423a7, 15) \
    X(I, b, c, d, a,  5, 0xfc93a039, 21) \
    X(I, a, b, c, d, 12, 0x655b59c3,  6) \
    X(I, d, a, b, c,  3, 0x8f0ccc92, 10) \
    X(I, c, d, a, b, 10, 0xffeff47d, 15) \
    X(I, b, c, d, a,  1, 0x85845dd1, 21) \
    X(I, a, b, c, d,  8, 0x6fa87e4f,  6) \
    X(I, d, a, b, c, 15, 0xfe2ce6e0, 10) \
    X(I, c, d, a, b,  6, 0xa3014314, 15) \
    X(I, b, c, d, a, 13, 0x4e0811a1, 21) \
    X(I, a, b, c, d,  4, 0xf7537e82,  6) \
    X(I, d, a, b, c, 11, 0xbd3af235, 10) \
    X(I, c, d, a, b,  2, 0x2ad7d2bb, 15) \
    X(I, b, c, d, a,  9, 0xeb86d391, 21)


/* ---- one stream ---------------------------------------------------------------- */

#define F1(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define G1(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define H1(b, c, d) ((b) ^ (c) ^ (d))
#define I1(b, c, d) ((c) ^ ((b) | ~(d)))
#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))

static inline uint32_t load_le32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* x86 and arm64 are little-endian, as md5 wants */
    return v;
}

static void compress_one(md5_ctx *ctx, const unsigned char *p, size_t nblocks)
{
    uint32_t a = ctx->A, b = ctx->B, c = ctx->C, d = ctx->D;
    for (; nblocks; nblocks--, p += 64) {
        uint32_t m[16];
        for (int i = 0; i < 16; i++)
            m[i] = load_le32(p + 4 * i);
        uint32_t a0 = a, b0 = b, c0 = c, d0 = d;
#define X(f, a, b, c, d, w, k, s) \
    a += f##1(b, c, d) + m[w] + (uint32_t)(k); \
    a = ROTL(a, s) + b;
        MD5_STEPS
#undef X
        a += a0;
        b += b0;
        c += c0;
        d += d0;
    }
    ctx->A = a;
    ctx->B = b;
    ctx->C = c;
    ctx->D = d;
}

/* Hash the context's own full block and empty it; zeroed like OpenSSL leaves it, so
 * that equal inputs give byte-equal saved states whichever code hashed them. */
static void compress_buffered(md5_ctx *ctx)
{
    compress_one(ctx, (const unsigned char *)ctx->data, 1);
    memset(ctx->data, 0, sizeof ctx->data);
    ctx->num = 0;
}

static void count_bytes(md5_ctx *ctx, uint64_t n)
{
    uint64_t bits = ((uint64_t)ctx->Nh << 32 | ctx->Nl) + (n << 3);
    ctx->Nl = (uint32_t)bits;
    ctx->Nh = (uint32_t)(bits >> 32);
}

/* ---- several streams ----------------------------------------------------------- */

/* A pass runs nblocks blocks of each of its lanes in lockstep: lane i starts with
 * state[0..3][i] at ptr[i] and moves step[i] bytes a block (an idle lane has step 0 and
 * rereads a dummy block whose result is thrown away). */
#define PASS_PARAMS \
    uint32_t state[4][MAX_LANES], const unsigned char *const ptr[MAX_LANES], \
        const int64_t step[MAX_LANES], size_t nblocks
typedef void (*pass_fn)(PASS_PARAMS);

#if HAVE_X86_KERNELS
/* Words first..first+7 of the blocks at p[0..7], one vector a word: an 8x8 transpose of
 * 32-bit elements. Loads and shuffles: with gathers the 16-lane pass took twice the
 * CPU on AMD Zen 4. */
__attribute__((target("avx2"), always_inline)) static inline void load_words_x8(
    __m256i out[8], const unsigned char *const p[8], int first)
{
    __m256i r[8], t[8], u[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_si256((const __m256i *)(p[i] + 4 * first));
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]); /* words 0 1 | 4 5 of lanes i, i+1 */
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]); /* words 2 3 | 6 7 */
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]); /* word 0 | 4 of lanes i..i+3 */
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]); /* word 1 | 5 */
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]); /* word 2 | 6 */
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]); /* word 3 | 7 */
    }
    for (int w = 0; w < 4; w++) {
        out[w] = _mm256_permute2x128_si256(u[w], u[w + 4], 0x20);
        out[w + 4] = _mm256_permute2x128_si256(u[w], u[w + 4], 0x31);
    }
}

/* An 8-lane pass (ymm registers) compiled for instruction set isa; X, its md5 step, is
 * defined where it is expanded. */
#define DEFINE_PASS_X8(name, isa) \
    __attribute__((target(isa))) static void name(PASS_PARAMS) { PASS_X8_BODY }
#define PASS_X8_BODY \
    __m256i a = _mm256_loadu_si256((const __m256i *)state[0]); \
    __m256i b = _mm256_loadu_si256((const __m256i *)state[1]); \
    __m256i c = _mm256_loadu_si256((const __m256i *)state[2]); \
    __m256i d = _mm256_loadu_si256((const __m256i *)state[3]); \
    const unsigned char *p[8]; \
    memcpy(p, ptr, sizeof p); \
    for (; nblocks; nblocks--) { \
        __m256i m[16]; \
        load_words_x8(m, p, 0); \
        load_words_x8(m + 8, p, 8); \
        for (int i = 0; i < 8; i++) \
            p[i] += step[i]; \
        __m256i a0 = a, b0 = b, c0 = c, d0 = d; \
        MD5_STEPS \
        a = _mm256_add_epi32(a, a0); \
        b = _mm256_add_epi32(b, b0); \
        c = _mm256_add_epi32(c, c0); \
        d = _mm256_add_epi32(d, d0); \
    } \
    _mm256_storeu_si256((__m256i *)state[0], a); \
    _mm256_storeu_si256((__m256i *)state[1], b); \
    _mm256_storeu_si256((__m256i *)state[2], c); \
    _mm256_storeu_si256((__m256i *)state[3], d);

/* Keeps a + m + k off the dependency chain: GCC would otherwise add the round function
 * to m first, and the step would wait for it. */
#define KEEP(x) __asm__("" : "+v"(x))

/* AVX2 has no three-input logic and no rotate: each round function is written so that
 * only its last one or two operations wait for b, the value the previous step made. */
#define ROTL_X8(x, s) _mm256_or_si256(_mm256_slli_epi32(x, s), _mm256_srli_epi32(x, 32 - (s)))
#define ROUND_X8_F(a, b, c, d) \
    KEEP(a); \
    a = _mm256_add_epi32(a, _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d))))
/* (b & d) | (c & ~d): the two halves share no bit, so they can be added one at a time. */
#define ROUND_X8_G(a, b, c, d) \
    a = _mm256_add_epi32(a, _mm256_andnot_si256(d, c)); \
    KEEP(a); \
    a = _mm256_add_epi32(a, _mm256_and_si256(b, d))
#define ROUND_X8_H(a, b, c, d) \
    KEEP(a); \
    a = _mm256_add_epi32(a, _mm256_xor_si256(b, _mm256_xor_si256(c, d)))
#define ROUND_X8_I(a, b, c, d) \
    KEEP(a); \
    a = _mm256_add_epi32( \
        a, _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1)))))

#define X(f, a, b, c, d, w, k, s) \
    a = _mm256_add_epi32(a, _mm256_add_epi32(m[w], _mm256_set1_epi32((int)(k)))); \
    ROUND_X8_##f(a, b, c, d); \
    a = _mm256_add_epi32(ROTL_X8(a, s), b);
DEFINE_PASS_X8(pass_avx2, "avx2")
#undef X

/* AVX-512: vpternlogd does each round function in one step (these are its truth tables
 * for b, c, d), vprold rotates in one. */
#define TL_F 0xca /* b ? c : d */
#define TL_G 0xe4 /* d ? b : c */
#define TL_H 0x96 /* b ^ c ^ d */
#define TL_I 0x39 /* c ^ (b | ~d) */

/* Up to 8 streams: the same instructions on ymm registers (AVX-512VL), 1.3x as fast as
 * the zmm pass with 8 lanes busy on Zen 4, which splits zmm work in two halves. */
#define X(f, a, b, c, d, w, k, s) \
    a = _mm256_add_epi32(a, _mm256_add_epi32(m[w], _mm256_set1_epi32((int)(k)))); \
    KEEP(a); \
    a = _mm256_add_epi32(a, _mm256_ternarylogic_epi32(b, c, d, TL_##f)); \
    a = _mm256_add_epi32(_mm256_rol_epi32(a, s), b);
DEFINE_PASS_X8(pass_avx512_x8, "avx512f,avx512vl")
#undef X

__attribute__((target("avx512f"))) static void pass_avx512_x16(PASS_PARAMS)
{
    __m512i a = _mm512_loadu_si512(state[0]), b = _mm512_loadu_si512(state[1]);
    __m512i c = _mm512_loadu_si512(state[2]), d = _mm512_loadu_si512(state[3]);
    const unsigned char *p[MAX_LANES];
    memcpy(p, ptr, sizeof p);
    for (; nblocks; nblocks--) {
        __m256i lo[16], hi[16]; /* lanes 0-7 and 8-15 */
        load_words_x8(lo, p, 0);
        load_words_x8(lo + 8, p, 8);
        load_words_x8(hi, p + 8, 0);
        load_words_x8(hi + 8, p + 8, 8);
        __m512i m[16];
        for (int w = 0; w < 16; w++)
            m[w] = _mm512_inserti64x4(_mm512_castsi256_si512(lo[w]), hi[w], 1);
        for (int i = 0; i < MAX_LANES; i++)
            p[i] += step[i];
        __m512i a0 = a, b0 = b, c0 = c, d0 = d;
#define X(f, a, b, c, d, w, k, s) \
    a = _mm512_add_epi32(a, _mm512_add_epi32(m[w], _mm512_set1_epi32((int)(k)))); \
    KEEP(a); \
    a = _mm512_add_epi32(a, _mm512_ternarylogic_epi32(b, c, d, TL_##f)); \
    a = _mm512_add_epi32(_mm512_rol_epi32(a, s), b);
        MD5_STEPS
#undef X
        a = _mm512_add_epi32(a, a0);
        b = _mm512_add_epi32(b, b0);
        c = _mm512_add_epi32(c, c0);
        d = _mm512_add_epi32(d, d0);
    }
    _mm512_storeu_si512(state[0], a);
    _mm512_storeu_si512(state[1], b);
    _mm512_storeu_si512(state[2], c);
    _mm512_storeu_si512(state[3], d);
}

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

static int cpu_any(void) { return 1; }

#define NARROW 8 /* lanes of a narrow pass */

typedef struct {
    const char *name;
    int (*available)(void); /* does this CPU run it */
    pass_fn narrow; /* passes of up to NARROW streams (NULL: no lanes, one at a time) */
    pass_fn wide; /* passes of more */
    int width; /* lanes of a wide pass */
    int min_streams; /* ready streams from which a pass beats hashing them one by one */
} kernel;

/* Best first: the first one this CPU runs is the default. */
static const kernel kernels[] = {
#if HAVE_X86_KERNELS
    {"avx512", cpu_has_avx512, pass_avx512_x8, pass_avx512_x16, 16, AVX512_MIN_STREAMS},
    {"avx2", cpu_has_avx2, pass_avx2, pass_avx2, NARROW, AVX2_MIN_STREAMS},
#endif
    {"portable", cpu_any, NULL, NULL, 0, NEVER},
};
#define NKERNELS (sizeof kernels / sizeof kernels[0])

/* ---- the engine ---------------------------------------------------------------- */

/* "Recently": within the last second. A stream counts when two of its blocks arrived
 * in the window, and uploads on a busy host or a slow link send a block every 30-50 ms
 * each: the window spans many such gaps, so a stream slowed that way still counts. */
#define RECENT_NS 1000000000L
#define RING 64 /* arrivals remembered to count the streams */
/* Before a pass starts on an idle engine, the updates queued wait for those of the other
 * active streams, each for at most half the time since its own stream's previous update
 * (its caller is then still receiving its next block: the wait costs that stream
 * nothing) and never longer than this. Without it, uploads that each send a block
 * every ~15 ms fill ~3 of 8 lanes; with it ~6-7, and the engine wakes less often. */
#define HOLD_MAX_NS 10000000L

typedef int (*scalar_update_fn)(void *ctx, const void *data, size_t len);

typedef struct job {
    md5_ctx *ctx;
    Py_buffer *chunks;
    Py_ssize_t nchunks;
    sem_t done;
    int64_t deadline; /* a pass starts by then, whoever else has come */
    struct job *next;
} job;

typedef struct {
    job *job; /* NULL: the lane is free */
    Py_ssize_t chunk; /* index of the chunk being hashed */
    const unsigned char *p; /* next byte of it */
    size_t left; /* bytes of it not yet taken */
} lane;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    job *head, *tail; /* updates waiting for a lane */
    int busy; /* lanes holding an update */
    pid_t pid; /* process whose engine thread runs (0: none yet) */
    const kernel *kernel; /* what the passes run on */
    int min_streams; /* recent streams from which updates go to the engine */
    scalar_update_fn scalar; /* libcrypto's MD5_Update, for updates run by their caller */
    struct {
        const void *ctx;
        int64_t at;
    } ring[RING];
    unsigned ring_next;
    /* What the engine did: lockstep passes (those of more than NARROW lanes), blocks per
     * lane in them, blocks hashed one stream at a time, updates taken by the engine and
     * run by their caller. */
    uint64_t passes, wide_passes, pass_blocks, lane_blocks, single_blocks, updates,
        inline_updates, holds, held_ns;
} engine = {.lock = PTHREAD_MUTEX_INITIALIZER}; /* wake: init_wake() */

/* The engine's condition variable times its waits on the monotonic clock: a wall clock
 * stepped back (NTP) would otherwise stretch a wait for company to the size of the step. */
static void init_wake(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&engine.wake, &attr);
    pthread_condattr_destroy(&attr);
}

static const unsigned char idle_block[64];

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* The contexts among the arrivals of the last RECENT_NS (lock held), each with its
 * latest two arrivals (before: 0 when it came once). Returns how many contexts. */
typedef struct {
    const void *ctx;
    int64_t latest, before;
} seen_context;

static int contexts_in_window(int64_t now, seen_context seen[RING])
{
    int n = 0;
    for (int i = 0; i < RING; i++) {
        int64_t at = engine.ring[i].at;
        if (engine.ring[i].ctx == NULL || now - at > RECENT_NS)
            continue;
        int k = 0;
        while (k < n && seen[k].ctx != engine.ring[i].ctx)
            k++;
        if (k == n)
            seen[n++] = (seen_context){engine.ring[i].ctx, 0, 0};
        if (at > seen[k].latest) {
            seen[k].before = seen[k].latest;
            seen[k].latest = at;
        } else if (at > seen[k].before) {
            seen[k].before = at;
        }
    }
    return n;
}

/* Uploads streaming now (lock held): contexts with at least two updates among the
 * arrivals of the last RECENT_NS. A context seen once is a small upload or the end of
 * one: not a stream that could share a pass. */
static int recent_streams(int64_t now)
{
    seen_context seen[RING];
    int n = contexts_in_window(now, seen), streaming = 0;
    for (int k = 0; k < n; k++)
        streaming += seen[k].before != 0;
    return streaming;
}

/* Streams whose next update is due (lock held): contexts with two arrivals in the window
 * whose latest is younger than twice the gap before it. A stream that ended, or one
 * whose caller went on to another upload, stops counting after two of its gaps. */
static int active_streams(int64_t now)
{
    seen_context seen[RING];
    int n = contexts_in_window(now, seen), active = 0;
    for (int k = 0; k < n; k++)
        active += seen[k].before && now - seen[k].latest < 2 * (seen[k].latest - seen[k].before);
    return active;
}

/* The latest arrival of ctx in the window (0: none) — before its new one is noted. */
static int64_t last_arrival(const void *ctx, int64_t now)
{
    int64_t latest = 0;
    for (int i = 0; i < RING; i++)
        if (engine.ring[i].ctx == ctx && now - engine.ring[i].at <= RECENT_NS &&
            engine.ring[i].at > latest)
            latest = engine.ring[i].at;
    return latest;
}

/* Lock held, no lane busy, updates queued: when the next pass may start (now: at once).
 * It waits while fewer updates are queued than streams are active and lanes are free,
 * until the first deadline of a queued update. */
static int64_t pass_starts_at(int64_t now)
{
    int width = engine.kernel->width;
    if (width == 0 || engine.min_streams == NEVER)
        return now;
    int queued = 0;
    int64_t first = INT64_MAX;
    for (job *q = engine.head; q != NULL; q = q->next) {
        queued++;
        if (q->deadline < first)
            first = q->deadline;
    }
    if (queued >= width || first <= now)
        return now;
    return queued < active_streams(now) ? first : now;
}

static void wait_until(int64_t deadline)
{
    struct timespec until = {.tv_sec = deadline / 1000000000L, .tv_nsec = deadline % 1000000000L};
    pthread_cond_timedwait(&engine.wake, &engine.lock, &until);
}

static void note_arrival(const void *ctx, int64_t at)
{
    engine.ring[engine.ring_next % RING].ctx = ctx;
    engine.ring[engine.ring_next % RING].at = at;
    engine.ring_next++;
}

/* Take a lane's bytes that cannot go through the lockstep: the start of a block that
 * the context already began, and a chunk's last bytes short of a block. Returns 1 when
 * the lane now has at least one whole block at p, 0 when its update is finished. */
static int settle(lane *l)
{
    md5_ctx *ctx = l->job->ctx;
    for (;;) {
        if (l->left == 0) {
            if (++l->chunk >= l->job->nchunks)
                return 0;
            l->p = l->job->chunks[l->chunk].buf;
            l->left = (size_t)l->job->chunks[l->chunk].len;
            continue;
        }
        if (ctx->num || l->left < 64) {
            size_t take = 64 - ctx->num;
            if (take > l->left)
                take = l->left;
            memcpy((unsigned char *)ctx->data + ctx->num, l->p, take);
            ctx->num += (uint32_t)take;
            count_bytes(ctx, take);
            l->p += take;
            l->left -= take;
            if (ctx->num == 64)
                compress_buffered(ctx);
            continue;
        }
        return 1;
    }
}

static void advance(lane *l, size_t nblocks)
{
    count_bytes(l->job->ctx, (uint64_t)nblocks * 64);
    l->p += nblocks * 64;
    l->left -= nblocks * 64;
}

/* Lock held. Fill free lanes from the queue; wait while there is nothing to do, and
 * before a pass on an idle engine, for company (see HOLD_MAX_NS). */
static void gather(lane lanes[MAX_LANES])
{
    for (;;) {
        if (engine.busy == 0 && engine.head != NULL) {
            int64_t now = now_ns();
            int64_t start = pass_starts_at(now);
            if (start > now) {
                wait_until(start);
                engine.holds++;
                engine.held_ns += (uint64_t)(now_ns() - now);
                continue;
            }
        }
        for (int i = 0; i < MAX_LANES && engine.head != NULL; i++) {
            if (lanes[i].job != NULL)
                continue;
            job *j = engine.head;
            engine.head = j->next;
            if (engine.head == NULL)
                engine.tail = NULL;
            lanes[i] = (lane){j, -1, NULL, 0};
            engine.busy++;
            engine.updates++;
        }
        if (engine.busy > 0)
            return;
        pthread_cond_wait(&engine.wake, &engine.lock);
    }
}

/* One lockstep pass of nblocks over the n lanes in which (at most the pass's width). */
static void run_pass(pass_fn pass, lane lanes[MAX_LANES], const int *which, int n,
                     size_t nblocks)
{
    uint32_t state[4][MAX_LANES];
    const unsigned char *ptr[MAX_LANES];
    int64_t step[MAX_LANES];
    for (int i = 0; i < MAX_LANES; i++) {
        md5_ctx *ctx = i < n ? lanes[which[i]].job->ctx : NULL;
        state[0][i] = ctx ? ctx->A : 0;
        state[1][i] = ctx ? ctx->B : 0;
        state[2][i] = ctx ? ctx->C : 0;
        state[3][i] = ctx ? ctx->D : 0;
        ptr[i] = ctx ? lanes[which[i]].p : idle_block;
        step[i] = ctx ? 64 : 0;
    }
    pass(state, ptr, step, nblocks);
    for (int i = 0; i < n; i++) {
        md5_ctx *ctx = lanes[which[i]].job->ctx;
        ctx->A = state[0][i];
        ctx->B = state[1][i];
        ctx->C = state[2][i];
        ctx->D = state[3][i];
        advance(&lanes[which[i]], nblocks);
    }
}

static void *engine_main(void *unused)
{
    (void)unused;
    lane lanes[MAX_LANES] = {0};
    for (;;) {
        pthread_mutex_lock(&engine.lock);
        gather(lanes);
        const kernel *k = engine.kernel; /* set_kernel() may change it between passes */
        int min_streams = engine.min_streams;
        pthread_mutex_unlock(&engine.lock);

        size_t nblocks = SLICE_BLOCKS;
        int ready[MAX_LANES];
        job *finished[MAX_LANES];
        int nready = 0, nfinished = 0;
        for (int i = 0; i < MAX_LANES; i++) {
            if (lanes[i].job == NULL)
                continue;
            if (!settle(&lanes[i])) {
                finished[nfinished++] = lanes[i].job;
                lanes[i].job = NULL;
                continue;
            }
            if (lanes[i].left / 64 < nblocks)
                nblocks = lanes[i].left / 64;
            ready[nready++] = i;
        }
        if (nfinished) {
            /* Free the lanes before waking their callers: an update that returned is no
             * longer counted busy, so the caller's next one may run inline at once. */
            pthread_mutex_lock(&engine.lock);
            engine.busy -= nfinished;
            pthread_mutex_unlock(&engine.lock);
            for (int f = 0; f < nfinished; f++)
                sem_post(&finished[f]->done);
        }
        if (nready == 0)
            continue;
        uint64_t passes = 0, wide_passes = 0, lane_blocks = 0, single_blocks = 0;
        if (k->narrow == NULL || nready < min_streams) {
            /* Too few streams to beat the plain chain (or no lanes at all). */
            for (int r = 0; r < nready; r++) {
                lane *l = &lanes[ready[r]];
                size_t whole = l->left / 64;
                if (whole > SLICE_BLOCKS)
                    whole = SLICE_BLOCKS;
                compress_one(l->job->ctx, l->p, whole);
                advance(l, whole);
                single_blocks += whole;
            }
        } else {
            /* More ready lanes than a pass takes (AVX2: over 8) take turns. */
            pass_fn pass = nready <= NARROW ? k->narrow : k->wide;
            int width = nready <= NARROW ? NARROW : k->width;
            for (int r = 0; r < nready; r += width) {
                int n = nready - r < width ? nready - r : width;
                run_pass(pass, lanes, ready + r, n, nblocks);
                passes++;
                wide_passes += n > NARROW;
                lane_blocks += nblocks * (uint64_t)n;
            }
        }
        pthread_mutex_lock(&engine.lock);
        engine.passes += passes;
        engine.wide_passes += wide_passes;
        engine.pass_blocks += passes * nblocks;
        engine.lane_blocks += lane_blocks;
        engine.single_blocks += single_blocks;
        pthread_mutex_unlock(&engine.lock);
    }
    return NULL;
}

/* A forked child has no engine thread and may hold a copy of a locked mutex. */
static void forget_engine_in_child(void)
{
    scalar_update_fn scalar = engine.scalar;
    const kernel *k = engine.kernel;
    int min_streams = engine.min_streams;
    memset(&engine, 0, sizeof engine);
    pthread_mutex_init(&engine.lock, NULL);
    init_wake();
    engine.scalar = scalar;
    engine.kernel = k;
    engine.min_streams = min_streams;
}

/* Called with the lock held. */
static int ensure_engine(void)
{
    if (engine.pid == getpid())
        return 0;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&thread, &attr, engine_main, NULL);
    pthread_attr_destroy(&attr);
    if (err)
        return err;
    engine.pid = getpid();
    return 0;
}

/* Hash one update: in the caller's thread while too few streams run for lanes to pay
 * off (no hand-over to pay), else through the engine. */
static int run_job(job *j, int to_engine)
{
    j->next = NULL;
    int64_t now = now_ns();
    pthread_mutex_lock(&engine.lock);
    int64_t previous = last_arrival(j->ctx, now);
    int64_t hold = previous ? (now - previous) / 2 : 0;
    j->deadline = now + (hold < HOLD_MAX_NS ? hold : HOLD_MAX_NS);
    note_arrival(j->ctx, now);
    scalar_update_fn scalar = engine.scalar; /* without it, everything goes to the engine */
    if (!to_engine && scalar && engine.busy == 0 && engine.head == NULL &&
        recent_streams(now) < engine.min_streams) {
        engine.inline_updates++;
        pthread_mutex_unlock(&engine.lock);
        for (Py_ssize_t i = 0; i < j->nchunks; i++)
            scalar(j->ctx, j->chunks[i].buf, (size_t)j->chunks[i].len);
        return 0;
    }
    int err = ensure_engine();
    if (!err && sem_init(&j->done, 0, 0))
        err = errno;
    if (!err) {
        if (engine.tail)
            engine.tail->next = j;
        else
            engine.head = j;
        engine.tail = j;
        pthread_cond_signal(&engine.wake);
    }
    pthread_mutex_unlock(&engine.lock);
    if (err)
        return err;
    while (sem_wait(&j->done) && errno == EINTR)
        ;
    sem_destroy(&j->done);
    return 0;
}

/* The kernel called name, if this CPU runs it. */
static const kernel *find_kernel(const char *name)
{
    for (size_t i = 0; i < NKERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0 && kernels[i].available())
            return &kernels[i];
    return NULL;
}

static const kernel *best_kernel(void)
{
    for (size_t i = 0; i < NKERNELS; i++)
        if (kernels[i].available())
            return &kernels[i];
    return &kernels[NKERNELS - 1];
}

/* ---- Python -------------------------------------------------------------------- */

static PyObject *py_update(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer ctx_view;
    PyObject *chunk_seq;
    int to_engine = 0;
    if (!PyArg_ParseTuple(args, "w*O|p:update", &ctx_view, &chunk_seq, &to_engine))
        return NULL;
    PyObject *result = NULL;
    PyObject *seq = NULL;
    Py_buffer *chunks = NULL;
    Py_ssize_t held = 0;
    if (ctx_view.len != (Py_ssize_t)sizeof(md5_ctx)) {
        PyErr_Format(PyExc_ValueError, "an MD5_CTX is %zu bytes, got %zd", sizeof(md5_ctx),
                     ctx_view.len);
        goto out;
    }
    if (((md5_ctx *)ctx_view.buf)->num >= 64) {
        PyErr_SetString(PyExc_ValueError, "not an MD5_CTX: num >= 64");
        goto out;
    }
    seq = PySequence_Fast(chunk_seq, "chunks must be a sequence of buffers");
    if (seq == NULL)
        goto out;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    chunks = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer));
    if (chunks == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (; held < n; held++)
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, held), &chunks[held],
                               PyBUF_C_CONTIGUOUS) < 0)
            goto out;
    job j = {.ctx = ctx_view.buf, .chunks = chunks, .nchunks = n};
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = run_job(&j, to_engine);
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    result = Py_NewRef(Py_None);
out:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&chunks[i]);
    PyMem_Free(chunks);
    Py_XDECREF(seq);
    PyBuffer_Release(&ctx_view);
    return result;
}

static PyObject *py_lanes(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&engine.lock);
    int lanes = engine.kernel->width;
    pthread_mutex_unlock(&engine.lock);
    return PyLong_FromLong(lanes);
}

static PyObject *py_kernel(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&engine.lock);
    const kernel *k = engine.kernel;
    int min_streams = engine.min_streams;
    pthread_mutex_unlock(&engine.lock);
    return Py_BuildValue("(sii)", k->name, k->width,
                         min_streams == NEVER ? 0 : min_streams);
}

static PyObject *py_kernels(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *names = PyList_New(0);
    for (size_t i = 0; names && i < NKERNELS; i++) {
        if (!kernels[i].available())
            continue;
        PyObject *name = PyUnicode_FromString(kernels[i].name);
        if (name == NULL || PyList_Append(names, name) < 0)
            Py_CLEAR(names);
        Py_XDECREF(name);
    }
    return names;
}

static PyObject *py_set_kernel(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name = NULL;
    int min_streams = 0;
    if (!PyArg_ParseTuple(args, "|zi:set_kernel", &name, &min_streams))
        return NULL;
    const kernel *k = name ? find_kernel(name) : best_kernel();
    if (k == NULL) {
        PyObject *names = py_kernels(NULL, NULL);
        if (names)
            PyErr_Format(PyExc_ValueError, "no md5 kernel %R on this CPU (it has %R)",
                         PyTuple_GET_ITEM(args, 0), names);
        Py_XDECREF(names);
        return NULL;
    }
    if (min_streams < 0) {
        PyErr_Format(PyExc_ValueError, "min_streams must be 1 or more (0: the kernel's own), "
                                       "got %d", min_streams);
        return NULL;
    }
    pthread_mutex_lock(&engine.lock);
    engine.kernel = k;
    engine.min_streams = min_streams ? min_streams : k->min_streams;
    memset(engine.ring, 0, sizeof engine.ring); /* count the streams afresh */
    pthread_mutex_unlock(&engine.lock);
    Py_RETURN_NONE;
}

static PyObject *py_stats(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&engine.lock);
    PyObject *stats = Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsK}", "updates", (unsigned long long)engine.updates, "inline_updates",
        (unsigned long long)engine.inline_updates, "passes", (unsigned long long)engine.passes,
        "wide_passes", (unsigned long long)engine.wide_passes, "pass_blocks",
        (unsigned long long)engine.pass_blocks, "lane_blocks",
        (unsigned long long)engine.lane_blocks, "single_blocks",
        (unsigned long long)engine.single_blocks, "holds", (unsigned long long)engine.holds,
        "held_ns", (unsigned long long)engine.held_ns);
    pthread_mutex_unlock(&engine.lock);
    return stats;
}

static PyObject *py_set_scalar(PyObject *self, PyObject *arg)
{
    (void)self;
    void *fn = PyLong_AsVoidPtr(arg);
    if (fn == NULL && PyErr_Occurred())
        return NULL;
    pthread_mutex_lock(&engine.lock);
    engine.scalar = (scalar_update_fn)fn;
    pthread_mutex_unlock(&engine.lock);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_scalar", py_set_scalar, METH_O,
     "set_scalar(address): libcrypto's MD5_Update, for updates run in their caller's thread "
     "(0: none; then every update goes to the engine)"},
    {"update", py_update, METH_VARARGS,
     "update(ctx, chunks, to_engine=False): hash each chunk into the MD5_CTX bytes ctx "
     "(blocks, GIL released); to_engine: never in the caller's thread"},
    {"lanes", py_lanes, METH_NOARGS,
     "lanes(): streams the kernel hashes side by side (0: none, one stream at a time)"},
    {"kernel", py_kernel, METH_NOARGS,
     "kernel(): (name, lanes, min_streams) of the kernel in use; min_streams: recent "
     "streams from which updates go to the engine (0: never)"},
    {"kernels", py_kernels, METH_NOARGS, "kernels(): names of the kernels this CPU runs, best first"},
    {"set_kernel", py_set_kernel, METH_VARARGS,
     "set_kernel(name=None, min_streams=0): hash on kernel name (None: the best here) from "
     "min_streams recent streams on (0: from where it pays)"},
    {"stats", py_stats, METH_NOARGS, "stats(): counters of the engine in this process"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_md5lanes",
    .m_doc = "Multi-buffer md5 engine (see store/md5_lanes.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__md5lanes(void)
{
    if (sizeof(md5_ctx) != 92)
        return PyErr_Format(PyExc_ImportError, "unexpected MD5_CTX size %zu", sizeof(md5_ctx));
    static int forked_handler;
    if (!forked_handler) {
        pthread_atfork(NULL, NULL, forget_engine_in_child);
        forked_handler = 1;
    }
    init_wake();
    engine.kernel = best_kernel();
    engine.min_streams = engine.kernel->min_streams;
    return PyModule_Create(&module);
}
