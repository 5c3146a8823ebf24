/*
 * srl.rewards._difflib -- an exact, fast difflib.SequenceMatcher(None, a, b).ratio() for two str.
 *
 * This is a line-by-line transcription of CPython 3.11+ Lib/difflib.py for isjunk=None on code
 * points, so the result is bit-identical to the stdlib on every input:
 *
 *   __chain_b           b2j: code point -> ascending positions in b. With autojunk and len(b) >= 200,
 *                       "popular" code points (more than len(b)//100 + 1 occurrences) are dropped from
 *                       b2j. They are NOT junk (bjunk is empty when isjunk is None), so the extension
 *                       loops of find_longest_match still run over them.
 *   find_longest_match  the j2len dynamic programme (j2len[j] = length of the match ending at a[i-1],
 *                       b[j]), with the same tie-breaking (first strictly longer match in i-ascending,
 *                       j-ascending order), then the two "not isbjunk" extension loops. The two
 *                       "isbjunk" loops never fire when bjunk is empty and are omitted.
 *   get_matching_blocks the queue recursion on the sub-ranges left and right of each match. The
 *                       sub-ranges are disjoint and find_longest_match looks only inside its range, so
 *                       the set of blocks (hence their total size M) does not depend on queue order;
 *                       merging adjacent blocks does not change M either.
 *   ratio               _calculate_ratio(M, len(a) + len(b)) = 2.0 * M / T in C double, 1.0 if T == 0.
 *
 * Data structures instead of dicts:
 *   - b2j is a CSR table: each distinct code point of b gets a slot (direct table for code points < 256,
 *     open addressing above), positions of a slot are idx[lo[slot]:hi[slot]] in ascending order; a popular
 *     slot is emptied. Every a[i] is mapped to its slot (or -1) once per call.
 *   - j2len / newj2len are two buffers of (stamp, len) cells indexed by j + 1, used alternately by row
 *     parity. A cell is valid only if its stamp is the previous row's stamp, so nothing is ever cleared;
 *     the stamp counter skips one value at the start of every find_longest_match call so that the first
 *     row sees an empty j2len, exactly like `j2len = {}`.
 *
 * Python API:
 *   matched(a, b, autojunk=True) -> int             M, the total size of the matching blocks
 *   ratio(a, b, autojunk=True) -> float             2.0 * M / (len(a) + len(b)), 1.0 if both are empty
 *   matched_many(seq_of_a, b, autojunk=True) -> list[int]   M for each a, b's tables built once
 * The GIL is released around the core for inputs long enough for it to matter.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Release the GIL only when len(a) + len(b) reaches this (below it the core takes a few microseconds). */
#define SRL_NOGIL_MIN_LEN 2048

typedef struct {
    uint32_t stamp;
    uint32_t len; /* a match length is at most min(len(a), len(b)); the Python layer caps lengths anyway */
} cell_t;

/* ---------------------------------------------------------------- b side: b2j as a CSR table --- */

typedef struct {
    Py_UCS4 *b;          /* code points of b */
    Py_ssize_t lb;
    int32_t small[256];  /* slot of code points < 256, -1 if absent */
    uint32_t *hkeys;     /* open addressing for code points >= 256 (0xFFFFFFFF = empty), or NULL */
    int32_t *hvals;
    size_t hmask;
    Py_ssize_t nslots;
    Py_ssize_t *lo, *hi; /* per slot: idx[lo:hi] are its positions in b (hi == lo if popular) */
    Py_ssize_t *idx;     /* positions of b grouped by slot, ascending within a slot */
    cell_t *buf;         /* 2 * (lb + 1) cells: the two j2len buffers */
    uint32_t stamp;      /* last stamp used in buf (kept across the a's of matched_many) */
    void *mem;           /* the single allocation behind all arrays above except b */
} btable_t;

static inline size_t
hash_cp(Py_UCS4 c, size_t mask)
{
    return ((size_t)((uint32_t)c * 2654435761u)) & mask;
}

/* Slot of code point c, -1 if c is not in b (or, after pruning, is popular: see slot_of_a). */
static inline int32_t
lookup(const btable_t *t, Py_UCS4 c)
{
    if (c < 256)
        return t->small[c];
    if (t->hkeys == NULL)
        return -1;
    size_t h = hash_cp(c, t->hmask);
    for (;;) {
        uint32_t k = t->hkeys[h];
        if (k == c)
            return t->hvals[h];
        if (k == 0xFFFFFFFFu)
            return -1;
        h = (h + 1) & t->hmask;
    }
}

static void
btable_free(btable_t *t)
{
    PyMem_Free(t->mem);
    PyMem_Free(t->b);
    t->mem = NULL;
    t->b = NULL;
}

/* Copy a str into a freshly allocated UCS4 array (never NULL on success, even for ""). */
static Py_UCS4 *
to_ucs4(PyObject *s, Py_ssize_t *len)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    Py_UCS4 *buf = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(n + 1));
    if (buf == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (n > 0 && PyUnicode_AsUCS4(s, buf, n, 0) == NULL) {
        PyMem_Free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* __chain_b for isjunk=None. Returns 0, or -1 with an exception set. */
static int
btable_init(btable_t *t, PyObject *bobj, int autojunk)
{
    memset(t, 0, sizeof(*t));
    t->b = to_ucs4(bobj, &t->lb);
    if (t->b == NULL)
        return -1;
    Py_ssize_t lb = t->lb;
    const Py_UCS4 *b = t->b;

    int wide = 0;
    for (Py_ssize_t j = 0; j < lb; j++)
        if (b[j] >= 256) {
            wide = 1;
            break;
        }
    size_t hcap = 0;
    if (wide) {
        hcap = 8;
        while (hcap < 2 * (size_t)lb)
            hcap <<= 1;
    }
    /* distinct code points <= min(lb, 256 + wide ones) <= lb + 256 */
    size_t maxslots = (size_t)lb + 256;
    size_t nbytes = sizeof(cell_t) * 2 * (size_t)(lb + 1)   /* buf (first: 8-byte aligned) */
                    + sizeof(Py_ssize_t) * (2 * maxslots + (size_t)lb)   /* lo, hi, idx */
                    + sizeof(int32_t) * (size_t)lb                       /* bslot (scratch) */
                    + (sizeof(uint32_t) + sizeof(int32_t)) * hcap;       /* hkeys, hvals */
    char *p = PyMem_Malloc(nbytes ? nbytes : 1);
    if (p == NULL) {
        btable_free(t);
        PyErr_NoMemory();
        return -1;
    }
    t->mem = p;
    t->buf = (cell_t *)p;
    p += sizeof(cell_t) * 2 * (size_t)(lb + 1);
    t->lo = (Py_ssize_t *)p;
    p += sizeof(Py_ssize_t) * maxslots;
    t->hi = (Py_ssize_t *)p;
    p += sizeof(Py_ssize_t) * maxslots;
    t->idx = (Py_ssize_t *)p;
    p += sizeof(Py_ssize_t) * (size_t)lb;
    int32_t *bslot = (int32_t *)p;
    p += sizeof(int32_t) * (size_t)lb;
    if (wide) {
        t->hkeys = (uint32_t *)p;
        p += sizeof(uint32_t) * hcap;
        t->hvals = (int32_t *)p;
        t->hmask = hcap - 1;
        memset(t->hkeys, 0xFF, sizeof(uint32_t) * hcap);
    }
    memset(t->buf, 0, sizeof(cell_t) * 2 * (size_t)(lb + 1));
    for (int c = 0; c < 256; c++)
        t->small[c] = -1;

    /* pass 1: slot of every b[j] and the count of each slot (kept in hi for now) */
    Py_ssize_t nslots = 0;
    for (Py_ssize_t j = 0; j < lb; j++) {
        Py_UCS4 c = b[j];
        int32_t s;
        if (c < 256) {
            s = t->small[c];
            if (s < 0) {
                s = t->small[c] = (int32_t)nslots++;
                t->hi[s] = 0;
            }
        }
        else {
            size_t h = hash_cp(c, t->hmask);
            for (;;) {
                uint32_t k = t->hkeys[h];
                if (k == c) {
                    s = t->hvals[h];
                    break;
                }
                if (k == 0xFFFFFFFFu) {
                    t->hkeys[h] = c;
                    s = t->hvals[h] = (int32_t)nslots++;
                    t->hi[s] = 0;
                    break;
                }
                h = (h + 1) & t->hmask;
            }
        }
        bslot[j] = s;
        t->hi[s]++;
    }
    t->nslots = nslots;
    /* prefix sums: lo[s] = start of slot s; hi[s] becomes the fill pointer */
    Py_ssize_t acc = 0;
    for (Py_ssize_t s = 0; s < nslots; s++) {
        Py_ssize_t cnt = t->hi[s];
        t->lo[s] = acc;
        t->hi[s] = acc;
        acc += cnt;
    }
    /* pass 2: positions in ascending order within each slot (b2j[elt].append(i)) */
    for (Py_ssize_t j = 0; j < lb; j++)
        t->idx[t->hi[bslot[j]]++] = j;

    /* autojunk: drop popular elements from b2j (they stay comparable in the extension loops) */
    if (autojunk && lb >= 200) {
        Py_ssize_t ntest = lb / 100 + 1;
        for (Py_ssize_t s = 0; s < nslots; s++)
            if (t->hi[s] - t->lo[s] > ntest)
                t->hi[s] = t->lo[s];
    }
    return 0;
}

/* ---------------------------------------------------------------- the matcher ------------------ */

typedef struct {
    const Py_UCS4 *a, *b;
    const int32_t *aslot;   /* slot of a[i] in b2j, -1 if a[i] is not in b2j */
    const Py_ssize_t *lo, *hi, *idx;
    cell_t *buf0, *buf1;    /* j2len buffers for even / odd stamps, indexed by j + 1 */
    Py_ssize_t lb;
    uint32_t stamp;
} matcher_t;

/* find_longest_match(alo, ahi, blo, bhi) for isjunk=None */
static void
find_longest_match(matcher_t *m, Py_ssize_t alo, Py_ssize_t ahi, Py_ssize_t blo, Py_ssize_t bhi,
                   Py_ssize_t *pi, Py_ssize_t *pj, Py_ssize_t *pk)
{
    const Py_UCS4 *a = m->a, *b = m->b;
    Py_ssize_t besti = alo, bestj = blo, bestsize = 0;

    /* stamps must never wrap within a call: reset both buffers when close to the top */
    if ((uint64_t)m->stamp + (uint64_t)(ahi - alo) + 4 >= (uint64_t)UINT32_MAX) {
        memset(m->buf0, 0, sizeof(cell_t) * (size_t)(m->lb + 1));
        memset(m->buf1, 0, sizeof(cell_t) * (size_t)(m->lb + 1));
        m->stamp = 0;
    }
    uint32_t t = ++m->stamp; /* skipped: the first row's "previous row" (stamp t) was never written */
    (void)t;

    for (Py_ssize_t i = alo; i < ahi; i++) {
        t = ++m->stamp;
        int32_t s = m->aslot[i];
        if (s < 0)
            continue; /* newj2len = {} */
        Py_ssize_t p = m->lo[s], e = m->hi[s];
        if (p == e)
            continue;
        const Py_ssize_t *idx = m->idx;
        /* skip j < blo (binary search: the positions are ascending) */
        if (idx[p] < blo) {
            Py_ssize_t l = p, r = e;
            while (l < r) {
                Py_ssize_t mid = l + (r - l) / 2;
                if (idx[mid] < blo)
                    l = mid + 1;
                else
                    r = mid;
            }
            p = l;
        }
        cell_t *cur = (t & 1) ? m->buf1 : m->buf0;
        const cell_t *prev = (t & 1) ? m->buf0 : m->buf1;
        uint32_t tprev = t - 1;
        for (; p < e; p++) {
            Py_ssize_t j = idx[p];
            if (j >= bhi)
                break;
            /* k = newj2len[j] = j2len.get(j-1, 0) + 1 ; j2len[j-1] lives at prev[j] */
            uint32_t k = (prev[j].stamp == tprev ? prev[j].len : 0) + 1;
            cur[j + 1].stamp = t;
            cur[j + 1].len = k;
            if ((Py_ssize_t)k > bestsize) {
                besti = i - k + 1;
                bestj = j - k + 1;
                bestsize = k;
            }
        }
    }
    /* extension loops; bjunk is empty so "not isbjunk(...)" is always true */
    while (besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1]) {
        besti--;
        bestj--;
        bestsize++;
    }
    while (besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] == b[bestj + bestsize])
        bestsize++;
    *pi = besti;
    *pj = bestj;
    *pk = bestsize;
}

/* sum of the sizes of get_matching_blocks(); stack holds >= min(la, lb) + 2 ranges */
static Py_ssize_t
matched_core(matcher_t *m, Py_ssize_t la, Py_ssize_t lb, Py_ssize_t (*stack)[4])
{
    Py_ssize_t total = 0, top = 0;
    stack[top][0] = 0;
    stack[top][1] = la;
    stack[top][2] = 0;
    stack[top][3] = lb;
    top++;
    while (top > 0) {
        top--;
        Py_ssize_t alo = stack[top][0], ahi = stack[top][1], blo = stack[top][2], bhi = stack[top][3];
        Py_ssize_t i, j, k;
        find_longest_match(m, alo, ahi, blo, bhi, &i, &j, &k);
        if (k) {
            total += k;
            if (alo < i && blo < j) {
                stack[top][0] = alo;
                stack[top][1] = i;
                stack[top][2] = blo;
                stack[top][3] = j;
                top++;
            }
            if (i + k < ahi && j + k < bhi) {
                stack[top][0] = i + k;
                stack[top][1] = ahi;
                stack[top][2] = j + k;
                stack[top][3] = bhi;
                top++;
            }
        }
    }
    return total;
}

/* M for one a against a prepared b table. Returns -1 with an exception set on error. */
static Py_ssize_t
matched_with_table(PyObject *aobj, btable_t *t)
{
    Py_ssize_t la = 0, lb = t->lb;
    if (PyUnicode_GET_LENGTH(aobj) == 0 || lb == 0)
        return 0;
    Py_UCS4 *a = to_ucs4(aobj, &la);
    if (a == NULL)
        return -1;
    size_t nstack = (size_t)(la < lb ? la : lb) + 2;
    char *mem = PyMem_Malloc(sizeof(int32_t) * (size_t)la + sizeof(Py_ssize_t[4]) * nstack);
    if (mem == NULL) {
        PyMem_Free(a);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t (*stack)[4] = (Py_ssize_t(*)[4])mem;
    int32_t *aslot = (int32_t *)(mem + sizeof(Py_ssize_t[4]) * nstack);

    matcher_t m;
    m.a = a;
    m.b = t->b;
    m.aslot = aslot;
    m.lo = t->lo;
    m.hi = t->hi;
    m.idx = t->idx;
    m.buf0 = t->buf;
    m.buf1 = t->buf + (lb + 1);
    m.lb = lb;
    m.stamp = t->stamp; /* continue above the stamps left by a previous a (matched_many) */

    Py_ssize_t total;
    int nogil = (la + lb) >= SRL_NOGIL_MIN_LEN;
    PyThreadState *ts = NULL;
    if (nogil)
        ts = PyEval_SaveThread();
    for (Py_ssize_t i = 0; i < la; i++) {
        int32_t s = lookup(t, a[i]);
        aslot[i] = (s >= 0 && t->hi[s] > t->lo[s]) ? s : -1;
    }
    total = matched_core(&m, la, lb, stack);
    t->stamp = m.stamp;
    if (nogil)
        PyEval_RestoreThread(ts);

    PyMem_Free(mem);
    PyMem_Free(a);
    return total;
}

static Py_ssize_t
matched_pair(PyObject *a, PyObject *b, int autojunk)
{
    if (PyUnicode_GET_LENGTH(a) == 0 || PyUnicode_GET_LENGTH(b) == 0)
        return 0;
    btable_t t;
    if (btable_init(&t, b, autojunk) < 0)
        return -1;
    Py_ssize_t r = matched_with_table(a, &t);
    btable_free(&t);
    return r;
}

/* ---------------------------------------------------------------- Python wrappers --------------- */

static char *kwlist_ab[] = {"a", "b", "autojunk", NULL};

PyDoc_STRVAR(matched_doc,
"matched(a, b, autojunk=True) -> int\n\n"
"Total size of difflib.SequenceMatcher(None, a, b, autojunk=autojunk).get_matching_blocks().");

static PyObject *
py_matched(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *a, *b;
    int autojunk = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|p:matched", kwlist_ab, &a, &b, &autojunk))
        return NULL;
    Py_ssize_t m = matched_pair(a, b, autojunk);
    if (m < 0)
        return NULL;
    return PyLong_FromSsize_t(m);
}

PyDoc_STRVAR(ratio_doc,
"ratio(a, b, autojunk=True) -> float\n\n"
"Exactly difflib.SequenceMatcher(None, a, b, autojunk=autojunk).ratio(): 2.0*M/(len(a)+len(b)),\n"
"1.0 when both strings are empty.");

static PyObject *
py_ratio(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *a, *b;
    int autojunk = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UU|p:ratio", kwlist_ab, &a, &b, &autojunk))
        return NULL;
    Py_ssize_t m = matched_pair(a, b, autojunk);
    if (m < 0)
        return NULL;
    Py_ssize_t length = PyUnicode_GET_LENGTH(a) + PyUnicode_GET_LENGTH(b);
    /* difflib._calculate_ratio: `2.0 * matches / length if length else 1.0` */
    if (length == 0)
        return PyFloat_FromDouble(1.0);
    return PyFloat_FromDouble(2.0 * (double)m / (double)length);
}

static char *kwlist_many[] = {"seq", "b", "autojunk", NULL};

PyDoc_STRVAR(matched_many_doc,
"matched_many(seq, b, autojunk=True) -> list[int]\n\n"
"[matched(a, b, autojunk) for a in seq], building b's tables (b2j) once.");

static PyObject *
py_matched_many(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *seq, *b;
    int autojunk = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OU|p:matched_many", kwlist_many, &seq, &b, &autojunk))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "matched_many: seq must be a sequence of str");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    btable_t t;
    if (btable_init(&t, b, autojunk) < 0) {
        Py_DECREF(out);
        Py_DECREF(fast);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyUnicode_Check(a)) {
            PyErr_Format(PyExc_TypeError, "matched_many: item %zd is %.100s, not str", i, Py_TYPE(a)->tp_name);
            goto error;
        }
        Py_ssize_t m = matched_with_table(a, &t);
        if (m < 0)
            goto error;
        PyObject *v = PyLong_FromSsize_t(m);
        if (v == NULL)
            goto error;
        PyList_SET_ITEM(out, i, v);
    }
    btable_free(&t);
    Py_DECREF(fast);
    return out;
error:
    btable_free(&t);
    Py_DECREF(out);
    Py_DECREF(fast);
    return NULL;
}

static PyMethodDef methods[] = {
    {"matched", (PyCFunction)(void (*)(void))py_matched, METH_VARARGS | METH_KEYWORDS, matched_doc},
    {"ratio", (PyCFunction)(void (*)(void))py_ratio, METH_VARARGS | METH_KEYWORDS, ratio_doc},
    {"matched_many", (PyCFunction)(void (*)(void))py_matched_many, METH_VARARGS | METH_KEYWORDS,
     matched_many_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"Exact, fast difflib.SequenceMatcher(None, a, b).ratio() on str (CPython 3.11+ semantics, autojunk\n"
"optional). See the comment at the top of src/srl/_difflib.c for the correspondence with difflib.py.");

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "srl.rewards._difflib", module_doc, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__difflib(void)
{
    return PyModule_Create(&moduledef);
}
