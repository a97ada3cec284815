/* Multi-buffer md5: the uploads a worker receives at once are hashed side by side.
 *
 * md5 is one long chain of dependent steps, so one stream cannot go faster than a core
 * runs that chain (~800 MB/s here). Independent streams can share the core: with
 * AVX-512 one instruction does the same step for 16 streams, one per 32-bit lane. A
 * vector step takes ~2.7x as long as a scalar one on this CPU, so lanes pay off from 3
 * streams on. While 3 or more uploads stream, one engine thread per process takes the
 * process's md5 updates, puts up to 16 of them in lanes and runs them in lockstep,
 * 64 KiB per lane at a time, so a new update joins within a fraction of a millisecond.
 * Otherwise each update runs MD5_Update in its caller's thread, as without the engine.
 *
 * The contexts are OpenSSL's MD5_CTX, byte for byte (store/digest.py saves them raw to
 * Redis and finishes them with MD5_Final), so the engine and libcrypto can take turns
 * on the same digest.
 *
 * Python: update(ctx, chunks) blocks (without the GIL) until every chunk is hashed into
 * ctx; lanes() tells how many lanes this CPU gives (0: the engine is not usable here and
 * the caller keeps using libcrypto); stats() counts what the engine did.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X16 1
#else
#define HAVE_X16 0
#endif

#define LANES 16
/* Blocks run in lockstep before the engine looks for new work: 64 KiB per lane, so
 * a newly arrived update waits at most ~100 us for a lane. */
#define SLICE_BLOCKS 1024
/* Fewer ready streams than this are hashed one after the other, not in lanes. */
#define X16_MIN_LANES 3

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

/* ---- sixteen streams ----------------------------------------------------------- */

#if HAVE_X16
/* vpternlogd truth tables for the four round functions of (b, c, d). */
#define TL_F 0xca /* b ? c : d */
#define TL_G 0xe4 /* d ? b : c */
#define TL_H 0x96 /* b ^ c ^ d */
#define TL_I 0x39 /* c ^ (b | ~d) */

__attribute__((target("avx512f"))) static void compress_x16(
    uint32_t state[4][LANES], const unsigned char *const ptr[LANES], const int64_t step[LANES],
    size_t nblocks)
{
    __m512i a = _mm512_loadu_si512(state[0]), b = _mm512_loadu_si512(state[1]);
    __m512i c = _mm512_loadu_si512(state[2]), d = _mm512_loadu_si512(state[3]);
    /* Lanes 0-7 and 8-15 as 64-bit addresses; an idle lane has step 0 and rereads a
     * dummy block whose result is thrown away. */
    __m512i lo = _mm512_loadu_si512((const void *)ptr);
    __m512i hi = _mm512_loadu_si512((const void *)(ptr + 8));
    const __m512i step_lo = _mm512_loadu_si512((const void *)step);
    const __m512i step_hi = _mm512_loadu_si512((const void *)(step + 8));
    for (; nblocks; nblocks--) {
        __m512i m[16];
        for (int w = 0; w < 16; w++) {
            const void *base = (const void *)(uintptr_t)(4 * w);
            __m256i mlo = _mm512_i64gather_epi32(lo, base, 1);
            __m256i mhi = _mm512_i64gather_epi32(hi, base, 1);
            m[w] = _mm512_inserti64x4(_mm512_castsi256_si512(mlo), mhi, 1);
        }
        __m512i a0 = a, b0 = b, c0 = c, d0 = d;
#define X(f, a, b, c, d, w, k, s) \
    a = _mm512_add_epi32(a, _mm512_add_epi32(m[w], _mm512_set1_epi32((int)(k)))); \
    __asm__("" : "+v"(a)); /* keep a + m + k off the chain: GCC would add F to m first */ \
    a = _mm512_add_epi32(a, _mm512_ternarylogic_epi32(b, c, d, TL_##f)); \
    a = _mm512_add_epi32(_mm512_rol_epi32(a, s), b);
        MD5_STEPS
#undef X
        a = _mm512_add_epi32(a, a0);
        b = _mm512_add_epi32(b, b0);
        c = _mm512_add_epi32(c, c0);
        d = _mm512_add_epi32(d, d0);
        lo = _mm512_add_epi64(lo, step_lo);
        hi = _mm512_add_epi64(hi, step_hi);
    }
    _mm512_storeu_si512(state[0], a);
    _mm512_storeu_si512(state[1], b);
    _mm512_storeu_si512(state[2], c);
    _mm512_storeu_si512(state[3], d);
}

static int cpu_has_x16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
static int cpu_has_x16(void) { return 0; }
#endif

/* ---- the engine ---------------------------------------------------------------- */

#define RECENT_NS 30000000L /* "recently": within the last 30 ms */
#define RING 64 /* arrivals remembered to count the streams */

typedef int (*scalar_update_fn)(void *ctx, const void *data, size_t len);

typedef struct job {
    md5_ctx *ctx;
    Py_buffer *chunks;
    Py_ssize_t nchunks;
    sem_t done;
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
    int lanes; /* LANES when the CPU has the instructions, else 0 */
    scalar_update_fn scalar; /* libcrypto's MD5_Update, for updates run by their caller */
    struct {
        const void *ctx;
        int64_t at;
    } ring[RING];
    unsigned ring_next;
    /* What the engine did: lockstep passes, blocks per lane in them, blocks hashed one
     * stream at a time, updates taken by the engine and run by their caller. */
    uint64_t passes, pass_blocks, lane_blocks, single_blocks, updates, inline_updates;
} engine = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static const unsigned char idle_block[64];

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Uploads streaming now (lock held): contexts with at least two updates among the
 * arrivals of the last RECENT_NS. A context seen once is a small upload or the end of
 * one: not a stream that could share a pass. */
static int recent_streams(int64_t now)
{
    const void *seen[RING];
    int times[RING];
    int n = 0, streaming = 0;
    for (int i = 0; i < RING; i++) {
        if (engine.ring[i].ctx == NULL || now - engine.ring[i].at > RECENT_NS)
            continue;
        int k = 0;
        while (k < n && seen[k] != engine.ring[i].ctx)
            k++;
        if (k == n) {
            seen[n] = engine.ring[i].ctx;
            times[n++] = 0;
        }
        if (++times[k] == 2)
            streaming++;
    }
    return streaming;
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

/* Lock held. Fill free lanes from the queue; wait while there is nothing to do. (Not
 * for company: holding updates 1-6 ms for more lanes to fill cost throughput.) */
static void gather(lane lanes[LANES])
{
    for (;;) {
        for (int i = 0; i < LANES && engine.head != NULL; i++) {
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

static void *engine_main(void *unused)
{
    (void)unused;
    lane lanes[LANES] = {0};
    for (;;) {
        pthread_mutex_lock(&engine.lock);
        gather(lanes);
        pthread_mutex_unlock(&engine.lock);

        size_t nblocks = SLICE_BLOCKS;
        int ready = 0, finished = 0;
        for (int i = 0; i < LANES; i++) {
            if (lanes[i].job == NULL)
                continue;
            if (!settle(&lanes[i])) {
                sem_post(&lanes[i].job->done);
                lanes[i].job = NULL;
                finished++;
                continue;
            }
            if (lanes[i].left / 64 < nblocks)
                nblocks = lanes[i].left / 64;
            ready++;
        }
        if (finished) {
            pthread_mutex_lock(&engine.lock);
            engine.busy -= finished;
            pthread_mutex_unlock(&engine.lock);
        }
        if (ready == 0)
            continue;
        if (ready < X16_MIN_LANES) {
            /* Too few streams to beat the plain chain, which is ~2.7x faster per stream
             * than a vector lane (measured by bench/bench_md5_lanes.py). */
            for (int i = 0; i < LANES; i++) {
                lane *l = &lanes[i];
                if (l->job == NULL || l->left < 64)
                    continue;
                size_t whole = l->left / 64;
                if (whole > SLICE_BLOCKS)
                    whole = SLICE_BLOCKS;
                compress_one(l->job->ctx, l->p, whole);
                advance(l, whole);
                engine.single_blocks += whole;
            }
            continue;
        }
#if HAVE_X16
        uint32_t state[4][LANES];
        const unsigned char *ptr[LANES];
        int64_t step[LANES];
        for (int i = 0; i < LANES; i++) {
            md5_ctx *ctx = lanes[i].job ? lanes[i].job->ctx : NULL;
            int on = ctx != NULL;
            state[0][i] = on ? ctx->A : 0;
            state[1][i] = on ? ctx->B : 0;
            state[2][i] = on ? ctx->C : 0;
            state[3][i] = on ? ctx->D : 0;
            ptr[i] = on ? lanes[i].p : idle_block;
            step[i] = on ? 64 : 0;
        }
        compress_x16(state, ptr, step, nblocks);
        for (int i = 0; i < LANES; i++) {
            md5_ctx *ctx = lanes[i].job ? lanes[i].job->ctx : NULL;
            if (ctx == NULL)
                continue;
            ctx->A = state[0][i];
            ctx->B = state[1][i];
            ctx->C = state[2][i];
            ctx->D = state[3][i];
            advance(&lanes[i], nblocks);
        }
        engine.passes++;
        engine.pass_blocks += nblocks;
        engine.lane_blocks += nblocks * (uint64_t)ready;
#endif
    }
    return NULL;
}

/* A forked child has no engine thread and may hold a copy of a locked mutex. */
static void forget_engine_in_child(void)
{
    scalar_update_fn scalar = engine.scalar;
    int lanes = engine.lanes;
    memset(&engine, 0, sizeof engine);
    pthread_mutex_init(&engine.lock, NULL);
    pthread_cond_init(&engine.wake, NULL);
    engine.scalar = scalar;
    engine.lanes = lanes;
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
    note_arrival(j->ctx, now);
    scalar_update_fn scalar = engine.scalar; /* without it, everything goes to the engine */
    if (!to_engine && scalar && engine.busy == 0 && engine.head == NULL &&
        recent_streams(now) < X16_MIN_LANES) {
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
    if (engine.lanes == 0) {
        PyErr_SetString(PyExc_RuntimeError, "md5 lanes are not available on this CPU");
        goto out;
    }
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
    return PyLong_FromLong(engine.lanes);
}

static PyObject *py_stats(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&engine.lock);
    PyObject *stats = Py_BuildValue(
        "{sKsKsKsKsKsK}", "updates", (unsigned long long)engine.updates, "inline_updates",
        (unsigned long long)engine.inline_updates, "passes",
        (unsigned long long)engine.passes, "pass_blocks", (unsigned long long)engine.pass_blocks,
        "lane_blocks", (unsigned long long)engine.lane_blocks, "single_blocks",
        (unsigned long long)engine.single_blocks);
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
    {"lanes", py_lanes, METH_NOARGS, "lanes(): streams hashed side by side (0: unavailable)"},
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
    engine.lanes = cpu_has_x16() ? LANES : 0;
    return PyModule_Create(&module);
}
