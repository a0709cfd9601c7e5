/*
 * A loader plugin written in C against plugins/sdk/include/ardpipe_plugin.h: it streams a
 * tab-separated file, one record per non-empty line, `LABEL<TAB>TEXT` (a line without a tab is
 * TEXT alone, with no label). Each record carries its `file` and `line` as extra fields, so a
 * record the pipeline refuses is reported at its line.
 *
 * Build (Linux; `.dylib` on macOS):
 *     cc -std=c11 -pedantic -Wall -Wextra -Werror -shared -fPIC \
 *        -I plugins/sdk/include plugins/examples/c-loader/tsv_loader.c -o libtsv_loader.so
 * Use:
 *     plugin tsv { library = "libtsv_loader.so"  abi = 1 }
 *     dataset d { format = plugin(tsv, limit = 100)  path = "data.tsv" }
 *
 * Options (checked by the host against OPTIONS below before `open` runs, so this file only reads
 * them): `path` (required: the dataset's `path`) and `limit` (optional, an integer: the host turns
 * the pipeline's `limit = 100` into the JSON integer 100). The JSON the host passes is compact and
 * machine-written: {"limit":100,"path":"/abs/data.tsv"}; the small reader below handles exactly
 * that (strings with escapes, integers), not arbitrary JSON.
 *
 * It leaves `size_hint` NULL (it cannot tell its size without reading the file twice), which the
 * ABI allows, and declares no `size-hint` capability.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ardpipe_plugin.h"

/* ---- errors ---------------------------------------------------------------------------------- */

static void release_malloced(void *owner) { free(owner); }

/* Fills *err with a copy of `message` (and `key`, when the error is about an option). */
static int32_t fail(ArdError *err, const char *message, const char *key) {
    size_t n = strlen(message);
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, message, n + 1);
        err->message.ptr = (const uint8_t *)copy;
        err->message.len = n;
        err->message.owner = copy;
        err->message.release = release_malloced;
    }
    if (key) { /* a static string: nothing to release */
        err->key.ptr = (const uint8_t *)key;
        err->key.len = strlen(key);
        err->key.owner = NULL;
        err->key.release = NULL;
    }
    return ARD_ERROR;
}

/* ---- the options object ---------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} Cursor;

/* Reads a JSON string at c (after its opening quote) into a malloc'ed NUL-terminated copy. */
static char *json_string(Cursor *c) {
    char *out = malloc((size_t)(c->end - c->p) + 1);
    size_t n = 0;
    if (!out) return NULL;
    while (c->p < c->end && *c->p != '"') {
        uint8_t ch = *c->p++;
        if (ch == '\\' && c->p < c->end) {
            uint8_t e = *c->p++;
            switch (e) {
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'u': free(out); return NULL; /* \uXXXX: not needed for paths this example reads */
            default: ch = e; /* \" \\ \/ */
            }
        }
        out[n++] = (char)ch;
    }
    if (c->p >= c->end) { free(out); return NULL; }
    c->p++; /* closing quote */
    out[n] = '\0';
    return out;
}

typedef struct {
    char *path;
    long long limit; /* -1 = none */
} Options;

static int32_t parse_options(ArdStr options, Options *o, ArdError *err) {
    Cursor c = {options.ptr, options.ptr + options.len};
    o->path = NULL;
    o->limit = -1;
    if (c.p == c.end || *c.p++ != '{') return fail(err, "options must be a JSON object", NULL);
    while (c.p < c.end && *c.p != '}') {
        if (*c.p == ',') { c.p++; continue; }
        if (*c.p++ != '"') return fail(err, "malformed options object", NULL);
        char *key = json_string(&c);
        if (!key || c.p >= c.end || *c.p++ != ':') { free(key); return fail(err, "malformed options object", NULL); }
        if (strcmp(key, "path") == 0 && c.p < c.end && *c.p == '"') {
            c.p++;
            free(o->path);
            o->path = json_string(&c);
            if (!o->path) { free(key); return fail(err, "`path` is not a plain string", "path"); }
        } else if (strcmp(key, "limit") == 0) {
            /* The host has checked it is an integer: digits only, e.g. 100 (never 100.0). */
            char *stop;
            o->limit = strtoll((const char *)c.p, &stop, 10);
            if ((const uint8_t *)stop == c.p || o->limit < 0) { free(key); return fail(err, "`limit` must be a whole number >= 0", "limit"); }
            c.p = (const uint8_t *)stop;
        } else {
            /* Cannot happen: the host refuses keys that OPTIONS does not declare. */
            free(key);
            return fail(err, "unexpected option", NULL);
        }
        free(key);
    }
    if (!o->path) return fail(err, "missing required option `path`", "path");
    return ARD_OK;
}

/* ---- the loader ------------------------------------------------------------------------------ */

typedef struct {
    FILE *file;
    char *path;
    long long limit;
    long long emitted;
    unsigned long line_no;
} Tsv;

/* One batch and everything its records point into; freed by release_batch. */
typedef struct {
    ArdRecord *records;
    ArdField *fields; /* two per record: file, line */
    char **lines;     /* the text of each line (label and text point into it) */
    char (*numbers)[24];
    size_t len;
} Batch;

static void release_batch(void *owner) {
    Batch *b = owner;
    for (size_t i = 0; i < b->len; i++) free(b->lines[i]);
    free(b->records);
    free(b->fields);
    free(b->lines);
    free(b->numbers);
    free(b);
}

static int32_t tsv_open(ArdStr options, uint64_t seed, void **out_handle, ArdError *err) {
    (void)seed; /* the file's order is the record order: deterministic without it */
    Options o;
    int32_t status = parse_options(options, &o, err);
    if (status != ARD_OK) { free(o.path); return status; }
    FILE *f = fopen(o.path, "rb");
    if (!f) {
        char message[512];
        snprintf(message, sizeof message, "cannot open %s", o.path);
        free(o.path);
        return fail(err, message, "path");
    }
    Tsv *t = calloc(1, sizeof *t);
    if (!t) { fclose(f); free(o.path); return fail(err, "out of memory", NULL); }
    t->file = f;
    t->path = o.path;
    t->limit = o.limit;
    *out_handle = t;
    return ARD_OK;
}

/* The next line without its newline, malloc'ed; NULL at the end of the file. */
static char *read_line(FILE *f) {
    size_t cap = 128, n = 0;
    char *s = malloc(cap);
    int ch;
    if (!s) return NULL;
    while ((ch = fgetc(f)) != EOF && ch != '\n') {
        if (n + 1 == cap) {
            char *bigger = realloc(s, cap *= 2);
            if (!bigger) { free(s); return NULL; }
            s = bigger;
        }
        s[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) { free(s); return NULL; }
    if (n > 0 && s[n - 1] == '\r') n--;
    s[n] = '\0';
    return s;
}

static ArdStr str_of(const char *s) {
    ArdStr r = {(const uint8_t *)s, strlen(s)};
    return r;
}

static int32_t tsv_next_batch(void *handle, size_t max_records, ArdRecordBatch *out, ArdError *err) {
    Tsv *t = handle;
    Batch *b = calloc(1, sizeof *b);
    if (!b) return fail(err, "out of memory", NULL);
    b->records = calloc(max_records, sizeof *b->records);
    b->fields = calloc(max_records * 2, sizeof *b->fields);
    b->lines = calloc(max_records, sizeof *b->lines);
    b->numbers = calloc(max_records, sizeof *b->numbers);
    if (!b->records || !b->fields || !b->lines || !b->numbers) {
        release_batch(b);
        return fail(err, "out of memory", NULL);
    }
    while (b->len < max_records && (t->limit < 0 || t->emitted < t->limit)) {
        char *line = read_line(t->file);
        if (!line) break;
        t->line_no++;
        if (line[strspn(line, " \t")] == '\0') { free(line); continue; } /* blank */
        size_t i = b->len++;
        b->lines[i] = line;
        ArdRecord *r = &b->records[i];
        char *tab = strchr(line, '\t');
        if (tab) {
            *tab = '\0';
            r->label = str_of(line);
            r->text = str_of(tab + 1);
        } else {
            r->label = ARD_STR_NONE;
            r->text = str_of(line);
        }
        r->text_pair = ARD_STR_NONE;
        snprintf(b->numbers[i], sizeof b->numbers[i], "%lu", t->line_no);
        b->fields[2 * i].key = ARD_STR("file");
        b->fields[2 * i].value = str_of(t->path);
        b->fields[2 * i + 1].key = ARD_STR("line");
        b->fields[2 * i + 1].value = str_of(b->numbers[i]);
        r->extra = &b->fields[2 * i];
        r->extra_len = 2;
        t->emitted++;
    }
    if (ferror(t->file)) {
        release_batch(b);
        return fail(err, "reading the file failed", NULL);
    }
    out->records = b->records;
    out->len = b->len; /* 0: the end of the stream */
    out->owner = b;
    out->release = release_batch;
    return ARD_OK;
}

static void tsv_close(void *handle) {
    Tsv *t = handle;
    fclose(t->file);
    free(t->path);
    free(t);
}

/* ---- the descriptor: all static, built with ARD_STR_INIT --------------------------------------- */

static const ArdLoaderVTable VTABLE = {
    sizeof(ArdLoaderVTable), 0, tsv_open, tsv_next_batch,
    NULL, /* size_hint: optional */
    tsv_close,
};

static const ArdStr CAPABILITIES[] = {ARD_STR_INIT("deterministic"), ARD_STR_INIT("labels")};

static const ArdOptionSpec OPTIONS[] = {
    {ARD_STR_INIT("path"), ARD_STR_INIT("path"), ARD_STR_NONE_INIT,
     ARD_STR_INIT("the tab-separated file (the dataset's `path`)"), 1, 0},
    {ARD_STR_INIT("limit"), ARD_STR_INIT("integer"), ARD_STR_NONE_INIT,
     ARD_STR_INIT("stop after this many records"), 0, 0},
};

static const ArdPluginDescriptor DESCRIPTOR = {
    ARDPIPE_ABI_VERSION,
    sizeof(ArdPluginDescriptor),
    ARD_KIND_LOADER,
    0,
    ARD_STR_INIT("c-tsv"),
    ARD_STR_INIT("1.0.0"),
    ARD_STR_INIT("LABEL<TAB>TEXT lines, written in C"),
    CAPABILITIES,
    sizeof CAPABILITIES / sizeof CAPABILITIES[0],
    OPTIONS,
    sizeof OPTIONS / sizeof OPTIONS[0],
    &VTABLE,
    NULL,
};

const ArdPluginDescriptor *ardpipe_plugin_v1(const ArdHost *host) {
    (void)host;
    return &DESCRIPTOR;
}
