/* pathway.population._firstpass: the population run's first pass reads a few top-level fields
 * of each NDJSON line, not the whole resource.
 *
 *     members(line: bytes, groups: tuple[tuple[str, ...], ...]) -> tuple[bytes, ...] | None
 *
 * Checks that `line` is one JSON object as orjson.loads reads it and returns, for each group of
 * names, the JSON text of the object's top-level members so named (in the group's order,
 * joined by NUL bytes, an absent member empty). Nothing is built from the rest of the line:
 * it is checked and skipped. Parsing a member's text gives the value the whole line's parse
 * would have there. It returns None whenever it is not sure of all that, and the caller then
 * parses the line with orjson as before (which also raises for a line that is not JSON). None,
 * among others, for: anything orjson would refuse (bad syntax, control characters in strings,
 * invalid UTF-8, lone surrogates, an infinite number, trailing data), a top level that is not
 * an object, a member name with an escape (it might spell one of ours), one of our names given
 * twice, a number whose size comes near the double range, nesting deeper than MAX_DEPTH. A
 * group's text given before comes back as the same bytes object (see share). No
 * clinical rule is here: which members the first pass needs and what it decides from them stay
 * in Python (pathway.population.firstpass).
 * tests/population/test_firstpass.py compares it with orjson on real and generated lines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 128   /* orjson allows 1024; deeper lines go to orjson */
#define MAX_KEYS 32     /* names in all groups */
#define SHARED_SLOTS 1024 /* a power of two */
#define SHARED_MAXLEN 512 /* texts up to this size are shared between calls (see share) */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int depth;
} Scan;

typedef struct {
    const unsigned char *start;
    Py_ssize_t len;
    int escaped; /* a backslash escape inside */
} Str;

/* 1 for a byte that may stand in a string as itself with nothing to check: printable ASCII
 * other than '"' and '\\' (and DEL, which JSON allows). */
static unsigned char plain[256];

static inline void skip_ws(Scan *s) {
    while (s->p < s->end && *s->p <= ' ' &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static inline int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

static int hex4(const unsigned char *p, unsigned int *out) {
    unsigned int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned int)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned int)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned int)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* s->p at the opening quote. 1 and the string's bytes in *out, s->p past the closing quote;
 * 0 when the line is not one orjson surely reads the same way. */
static int scan_string(Scan *s, Str *out) {
    const unsigned char *p = s->p + 1, *end = s->end;
    out->start = p;
    out->escaped = 0;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time while 16 are left: stop at '"', '\\', a control character or a
         * byte >= 0x80 (negative as a signed char) */
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
            int mask = _mm_movemask_epi8(hit);
            if (mask != 0) {
                p += __builtin_ctz((unsigned int)mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && plain[*p]) p++;
        if (p >= end) return 0;
        unsigned char c = *p;
        if (c == '"') break;
        if (c == '\\') {
            out->escaped = 1;
            if (p + 1 >= end) return 0;
            unsigned char e = p[1];
            if (e == 'u') {
                unsigned int cp;
                if (p + 6 > end || !hex4(p + 2, &cp)) return 0;
                if (cp >= 0xD800 && cp <= 0xDFFF) return 0; /* surrogates: orjson decides */
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return 0;
            }
            continue;
        }
        if (c < 0x20) return 0; /* a control character: orjson refuses the line */
        /* UTF-8, strictly (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF */
        Py_ssize_t left = end - p;
        if (c >= 0xC2 && c <= 0xDF) {
            if (left < 2 || !is_cont(p[1])) return 0;
            p += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (left < 3 || !is_cont(p[1]) || !is_cont(p[2])) return 0;
            if (c == 0xE0 && p[1] < 0xA0) return 0;
            if (c == 0xED && p[1] > 0x9F) return 0;
            p += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (left < 4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3])) return 0;
            if (c == 0xF0 && p[1] < 0x90) return 0;
            if (c == 0xF4 && p[1] > 0x8F) return 0;
            p += 4;
        } else {
            return 0;
        }
    }
    out->len = p - out->start;
    s->p = p + 1;
    return 1;
}

/* A JSON number at s->p: 0 for bad syntax or a size orjson might find infinite. */
static int scan_number(Scan *s) {
    const unsigned char *p = s->p, *end = s->end;
    if (p < end && *p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') return 0;
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    Py_ssize_t n_int = p - digits;
    int exp = 0;
    long exp_value = 0;
    int exp_neg = 0;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            exp_neg = *p == '-';
            p++;
        }
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp_value < 100000) exp_value = exp_value * 10 + (*p - '0');
            p++;
        }
        exp = 1;
    }
    /* magnitude below 10^(n_int + exponent): keep well inside the double range (~1.8e308) */
    if (n_int + (exp && !exp_neg ? exp_value : 0) > 300) return 0;
    s->p = p;
    return 1;
}

static int literal(Scan *s, const char *word, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, word, (size_t)n) != 0) return 0;
    s->p += n;
    return 1;
}

/* Check and skip one value. */
static int skip_value(Scan *s) {
    if (s->p >= s->end) return 0;
    unsigned char c = *s->p;
    Str str;
    switch (c) {
    case '"':
        return scan_string(s, &str);
    case '{':
        if (++s->depth > MAX_DEPTH) return 0;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            s->depth--;
            return 1;
        }
        for (;;) {
            if (s->p >= s->end || *s->p != '"' || !scan_string(s, &str)) return 0;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':') return 0;
            s->p++;
            skip_ws(s);
            if (!skip_value(s)) return 0;
            skip_ws(s);
            if (s->p >= s->end) return 0;
            if (*s->p == ',') {
                s->p++;
                skip_ws(s);
                continue;
            }
            if (*s->p != '}') return 0;
            s->p++;
            s->depth--;
            return 1;
        }
    case '[':
        if (++s->depth > MAX_DEPTH) return 0;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            s->depth--;
            return 1;
        }
        for (;;) {
            if (!skip_value(s)) return 0;
            skip_ws(s);
            if (s->p >= s->end) return 0;
            if (*s->p == ',') {
                s->p++;
                skip_ws(s);
                continue;
            }
            if (*s->p != ']') return 0;
            s->p++;
            s->depth--;
            return 1;
        }
    case 't':
        return literal(s, "true", 4);
    case 'f':
        return literal(s, "false", 5);
    case 'n':
        return literal(s, "null", 4);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return scan_number(s);
        return 0;
    }
}

/* ------------------------------------------------------------------ members() */

/* The same text twice gives the same bytes object: the caller's memos look texts up in dicts,
 * and a bytes object keeps its hash, so a text seen before (the patient of the line before, a
 * common code) is neither allocated nor hashed again. A small table by a hash of the text; a
 * slot keeps its last text (a new reference from the table, released when replaced). */
static PyObject *shared[SHARED_SLOTS];

static inline uint64_t text_hash(const unsigned char *p, Py_ssize_t n, Py_ssize_t g) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n ^ ((uint64_t)g << 56);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, (size_t)n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

static PyObject *share(Py_ssize_t g, const unsigned char *text, Py_ssize_t size) {
    PyObject **slot = &shared[text_hash(text, size, g) & (SHARED_SLOTS - 1)];
    PyObject *old = *slot;
    if (old != NULL && PyBytes_GET_SIZE(old) == size &&
        memcmp(PyBytes_AS_STRING(old), text, (size_t)size) == 0) {
        Py_INCREF(old);
        return old;
    }
    PyObject *v = PyBytes_FromStringAndSize((const char *)text, size);
    if (v == NULL) return NULL;
    Py_INCREF(v);
    *slot = v;
    Py_XDECREF(old);
    return v;
}

/* The names of the last `groups` (a run passes the same tuple every time), flattened. */
#define MAX_NAME 64
static PyObject *known_groups = NULL;
static Py_ssize_t n_groups = 0, n_keys = 0;
static const char *key_bytes[MAX_KEYS];
static Py_ssize_t key_group[MAX_KEYS];
static uint32_t by_len[MAX_NAME + 1]; /* the names of each length, as bits of key_bytes */

static int load_groups(PyObject *groups) {
    static const char *usage =
        "groups must be a tuple of tuples of str (32 names at most, of 64 bytes at most)";
    if (groups == known_groups) return 1;
    if (!PyTuple_Check(groups)) {
        PyErr_SetString(PyExc_TypeError, usage);
        return 0;
    }
    /* read into these first: a bad `groups` leaves the last good one in place */
    const char *bytes[MAX_KEYS];
    Py_ssize_t group[MAX_KEYS];
    uint32_t lens[MAX_NAME + 1] = {0};
    Py_ssize_t n = 0;
    for (Py_ssize_t g = 0; g < PyTuple_GET_SIZE(groups); g++) {
        PyObject *names = PyTuple_GET_ITEM(groups, g);
        if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) == 0) {
            PyErr_SetString(PyExc_TypeError, usage);
            return 0;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
            PyObject *k = PyTuple_GET_ITEM(names, i);
            if (!PyUnicode_Check(k) || n >= MAX_KEYS) {
                PyErr_SetString(PyExc_TypeError, usage);
                return 0;
            }
            Py_ssize_t len;
            const char *b = PyUnicode_AsUTF8AndSize(k, &len);
            if (b == NULL) return 0;
            if (len > MAX_NAME) {
                PyErr_SetString(PyExc_TypeError, usage);
                return 0;
            }
            lens[len] |= 1u << n;
            bytes[n] = b; /* owned by the str, kept alive by known_groups */
            group[n] = g;
            n++;
        }
    }
    Py_INCREF(groups);
    Py_XSETREF(known_groups, groups);
    n_groups = PyTuple_GET_SIZE(groups);
    n_keys = n;
    memcpy(key_bytes, bytes, sizeof(bytes[0]) * (size_t)n);
    memcpy(key_group, group, sizeof(group[0]) * (size_t)n);
    memcpy(by_len, lens, sizeof by_len);
    return 1;
}

static PyObject *members(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "members(line: bytes, groups: tuple[tuple[str, ...], ...])");
        return NULL;
    }
    if (!load_groups(args[1])) return NULL;
    const unsigned char *start[MAX_KEYS], *stop[MAX_KEYS];
    uint32_t seen = 0;
    Scan s;
    s.p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    s.end = s.p + PyBytes_GET_SIZE(args[0]);
    s.depth = 1;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') Py_RETURN_NONE;
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            Str key;
            if (s.p >= s.end || *s.p != '"' || !scan_string(&s, &key) || key.escaped)
                Py_RETURN_NONE; /* an escaped name might spell one of ours */
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':') Py_RETURN_NONE;
            s.p++;
            skip_ws(&s);
            uint32_t which = 0; /* our names it is (a name may be in several groups) */
            for (uint32_t m = key.len <= MAX_NAME ? by_len[key.len] : 0; m != 0; m &= m - 1) {
                int i = __builtin_ctz(m);
                if (memcmp(key_bytes[i], key.start, (size_t)key.len) == 0) which |= 1u << i;
            }
            if (seen & which) Py_RETURN_NONE; /* given twice: orjson decides */
            seen |= which;
            const unsigned char *value = s.p;
            if (!skip_value(&s)) Py_RETURN_NONE;
            for (uint32_t m = which; m != 0; m &= m - 1) {
                int i = __builtin_ctz(m);
                start[i] = value;
                stop[i] = s.p;
            }
            skip_ws(&s);
            if (s.p >= s.end) Py_RETURN_NONE;
            if (*s.p == ',') {
                s.p++;
                skip_ws(&s);
                continue;
            }
            if (*s.p != '}') Py_RETURN_NONE;
            s.p++;
            break;
        }
    }
    skip_ws(&s);
    if (s.p != s.end) Py_RETURN_NONE; /* trailing data */
    /* each group: its members' texts in order, joined by NUL (which valid JSON text never
     * holds: a control character in a string is refused above), absent ones empty */
    PyObject *out = PyTuple_New(n_groups);
    if (out == NULL) return NULL;
    Py_ssize_t i = 0;
    for (Py_ssize_t g = 0; g < n_groups; g++) {
        Py_ssize_t first = i, size = 0;
        for (; i < n_keys && key_group[i] == g; i++) {
            if (i > first) size += 1;
            if (seen & (1u << i)) size += stop[i] - start[i];
        }
        unsigned char small[SHARED_MAXLEN];
        PyObject *v = NULL;
        unsigned char *at;
        if (size <= SHARED_MAXLEN) {
            at = small;
        } else {
            v = PyBytes_FromStringAndSize(NULL, size);
            if (v == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            at = (unsigned char *)PyBytes_AS_STRING(v);
        }
        for (Py_ssize_t k = first; k < i; k++) {
            if (k > first) *at++ = '\0';
            if (seen & (1u << k)) {
                memcpy(at, start[k], (size_t)(stop[k] - start[k]));
                at += stop[k] - start[k];
            }
        }
        if (v == NULL) {
            v = share(g, small, size);
            if (v == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        }
        PyTuple_SET_ITEM(out, g, v);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"members", (PyCFunction)(void (*)(void))members, METH_FASTCALL,
     "members(line, groups) -> tuple[bytes, ...] | None: for each group of names, the JSON "
     "text of the top-level members of the object `line` so named, in the group's order, "
     "joined by NUL (an absent one: empty); None when not sure that orjson.loads reads the "
     "line the same way (parse it with orjson)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_firstpass",
    "The population run's first pass: the JSON text of a few top-level members of an NDJSON line.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__firstpass(void) {
    for (int c = 0x20; c < 0x80; c++) plain[c] = 1;
    plain['"'] = 0;
    plain['\\'] = 0;
    return PyModule_Create(&module);
}
