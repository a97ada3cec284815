/* The content scanner's per-chunk step in C: newlines counted, text-or-binary decided.
 *
 * store/scanner.py keeps the scanner's state (sizes, head, the bytes of a character cut
 * by a chunk boundary); this does the work that touches every byte, without the GIL,
 * so the scan runs beside the digests and the event loop instead of stopping them.
 *
 * scan(data, pending, text) -> (newlines, text, pending_len)
 *   newlines     count of b"\n" in data
 *   text         False when text was False, or when pending + data holds a control byte
 *                (0x00-0x08, 0x0E-0x1A, 0x1C-0x1F) or is not strict UTF-8 (what
 *                codecs.utf_8_decode(..., "strict", False) refuses: overlong forms,
 *                surrogates, code points past U+10FFFF)
 *   pending_len  bytes at the end of pending + data that begin a character still cut
 *                short (0-3); 0 when text is False
 *
 * Both loops work on 64-byte blocks that GCC vectorizes at -O3 with the baseline
 * instruction set (SSE2 on x86-64), so one build runs anywhere: ASCII runs at memory
 * speed, and only blocks holding bytes of 0x80 and above walk the UTF-8 automaton.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#define BLOCK 64
/* A byte counter per position overflows after 255 blocks: fold them into the total. */
#define ROUNDS_PER_FOLD 255
/* Below this many bytes, releasing the GIL costs more than the scan. */
#define RELEASE_GIL_FROM 16384

static Py_ssize_t count_newlines(const uint8_t *p, size_t n)
{
    Py_ssize_t total = 0;
    while (n >= BLOCK) {
        size_t rounds = n / BLOCK;
        if (rounds > ROUNDS_PER_FOLD)
            rounds = ROUNDS_PER_FOLD;
        uint8_t counts[BLOCK] = {0};
        for (size_t r = 0; r < rounds; r++, p += BLOCK)
            for (int j = 0; j < BLOCK; j++)
                counts[j] += p[j] == '\n';
        for (int j = 0; j < BLOCK; j++)
            total += counts[j];
        n -= rounds * BLOCK;
    }
    for (; n; n--, p++)
        total += *p == '\n';
    return total;
}

/* Control bytes make a file binary; TAB, LF, VT, FF, CR and ESC do not. */
static inline uint8_t is_control(uint8_t b)
{
    return (b < 0x20) & ((uint8_t)(b - 0x09) > 0x04) & (b != 0x1B);
}

/* The UTF-8 automaton: what the next byte must be. */
enum utf8_state {
    ACCEPT,  /* a character boundary */
    CONT_1,  /* one continuation byte (80-BF) left */
    CONT_2,
    CONT_3,
    AFTER_E0, /* A0-BF: no overlong 3-byte forms */
    AFTER_ED, /* 80-9F: no surrogates */
    AFTER_F0, /* 90-BF: no overlong 4-byte forms */
    AFTER_F4, /* 80-8F: nothing past U+10FFFF */
    REJECT,
};

static inline enum utf8_state step(enum utf8_state state, uint8_t b)
{
    int continuation = (b & 0xC0) == 0x80;
    switch (state) {
    case ACCEPT:
        if (b < 0x80)
            return is_control(b) ? REJECT : ACCEPT;
        if (b >= 0xC2 && b <= 0xDF)
            return CONT_1;
        if (b == 0xE0)
            return AFTER_E0;
        if (b == 0xED)
            return AFTER_ED;
        if (b >= 0xE1 && b <= 0xEF)
            return CONT_2;
        if (b == 0xF0)
            return AFTER_F0;
        if (b == 0xF4)
            return AFTER_F4;
        if (b >= 0xF1 && b <= 0xF3)
            return CONT_3;
        return REJECT;
    case CONT_1:
        return continuation ? ACCEPT : REJECT;
    case CONT_2:
        return continuation ? CONT_1 : REJECT;
    case CONT_3:
        return continuation ? CONT_2 : REJECT;
    case AFTER_E0:
        return b >= 0xA0 && b <= 0xBF ? CONT_1 : REJECT;
    case AFTER_ED:
        return b >= 0x80 && b <= 0x9F ? CONT_1 : REJECT;
    case AFTER_F0:
        return b >= 0x90 && b <= 0xBF ? CONT_2 : REJECT;
    case AFTER_F4:
        return b >= 0x80 && b <= 0x8F ? CONT_2 : REJECT;
    default:
        return REJECT;
    }
}

/* Where the automaton stands after p[0..n), and how many bytes of a cut character end
 * it (*cut, carried in and out: the bytes since the last character boundary). */
static enum utf8_state check_text(enum utf8_state state, const uint8_t *p, size_t n, size_t *cut)
{
    size_t i = 0;
    while (i < n) {
        if (state == ACCEPT && n - i >= BLOCK) {
            uint8_t high = 0, control = 0;
            for (int j = 0; j < BLOCK; j++) {
                high |= p[i + j];
                control |= is_control(p[i + j]);
            }
            if (control)
                return REJECT;
            if (high < 0x80) { /* all ASCII: no character can be cut inside it */
                i += BLOCK;
                continue;
            }
        }
        size_t end = n - i >= BLOCK ? i + BLOCK : n;
        for (; i < end; i++) {
            state = step(state, p[i]);
            if (state == REJECT)
                return REJECT;
            *cut = state == ACCEPT ? 0 : *cut + 1;
        }
    }
    return state;
}

static PyObject *py_scan(PyObject *self, PyObject *args)
{
    Py_buffer data, pending;
    int text;
    if (!PyArg_ParseTuple(args, "y*y*p:scan", &data, &pending, &text))
        return NULL;
    Py_ssize_t newlines;
    size_t cut = 0;
    enum utf8_state state = ACCEPT;
    const uint8_t *bytes = data.buf;
    size_t size = (size_t)data.len;

    PyThreadState *released = size >= RELEASE_GIL_FROM ? PyEval_SaveThread() : NULL;
    newlines = count_newlines(bytes, size);
    if (text) {
        state = check_text(ACCEPT, pending.buf, (size_t)pending.len, &cut);
        if (state != REJECT)
            state = check_text(state, bytes, size, &cut);
    }
    if (released != NULL)
        PyEval_RestoreThread(released);

    PyBuffer_Release(&data);
    PyBuffer_Release(&pending);
    int still_text = text && state != REJECT;
    return Py_BuildValue("(nNn)", newlines, PyBool_FromLong(still_text),
                         still_text ? (Py_ssize_t)cut : (Py_ssize_t)0);
}

static PyMethodDef methods[] = {
    {"scan", py_scan, METH_VARARGS,
     "scan(data, pending, text) -> (newlines, text, pending_len): see store/scanner.py"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_textscan", "The content scanner's per-chunk step in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__textscan(void) { return PyModule_Create(&module); }
