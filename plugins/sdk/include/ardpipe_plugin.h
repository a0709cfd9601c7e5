/*
 * ardpipe plugin ABI, version 1 — for plugins written in C (or anything that speaks C).
 *
 * This header mirrors `src/abi.rs` of the ardpipe-plugin-sdk crate field for field; Rust authors
 * use the crate instead. A plugin is a shared library exporting one function:
 *
 *     const ArdPluginDescriptor *ardpipe_plugin_v1(const ArdHost *host);
 *
 * returning a descriptor that stays valid for the life of the process (a static is ideal: build
 * its strings with ARD_STR_INIT, below).
 * Rules:
 *   - abi_version and struct_size are the descriptor's first fields; set them to
 *     ARDPIPE_ABI_VERSION and sizeof(ArdPluginDescriptor).
 *   - Strings are UTF-8, pointer + length, no NUL needed; a NULL ptr means "absent".
 *   - Fallible functions return ARD_OK, ARD_ERROR or ARD_PANIC. `err` is never NULL and arrives
 *     zeroed; on failure fill err->message (and, for an option error, err->key) and give each a
 *     release callback that frees it (or release = NULL for static text). The host reads *err
 *     whatever the status, copies it and calls each release once; on ARD_OK leave it untouched.
 *   - Memory you hand to the host (errors, record batches, scalars) carries an `owner` and a
 *     `release` callback; the host copies the data and calls release(owner) exactly once.
 *   - A handle is used by one thread at a time and closed/destroyed exactly once, even after errors.
 *   - Never let a C++ exception or longjmp cross these functions.
 *   - `host->log(host->ctx, level, msg)` sends a line to ardpipe's log; keep `host` (it lives forever).
 */
#ifndef ARDPIPE_PLUGIN_H
#define ARDPIPE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARDPIPE_ABI_VERSION 1u
#define ARDPIPE_ENTRY_SYMBOL "ardpipe_plugin_v1"

#define ARD_OK 0
#define ARD_ERROR 1
#define ARD_PANIC 2

#define ARD_KIND_LOADER 1u
#define ARD_KIND_METRIC 2u

#define ARD_DTYPE_F32 1u
#define ARD_DTYPE_I64 2u

#define ARD_LOG_ERROR 1u
#define ARD_LOG_WARN 2u
#define ARD_LOG_INFO 3u
#define ARD_LOG_DEBUG 4u
#define ARD_LOG_TRACE 5u

typedef struct ArdStr {
    const uint8_t *ptr; /* NULL = absent */
    size_t len;
} ArdStr;

typedef void (*ArdReleaseFn)(void *owner);

typedef struct ArdOwnedStr {
    const uint8_t *ptr;
    size_t len;
    void *owner;
    ArdReleaseFn release; /* may be NULL when nothing needs freeing (e.g. a static string) */
} ArdOwnedStr;

typedef struct ArdError {
    ArdOwnedStr message;
    ArdOwnedStr key; /* the option at fault, or ptr == NULL */
} ArdError;

typedef struct ArdHost {
    uint32_t abi_version;
    uint32_t struct_size;
    void *ctx;
    void (*log)(void *ctx, uint32_t level, ArdStr message);
} ArdHost;

typedef struct ArdOptionSpec {
    ArdStr key;
    ArdStr kind;          /* "string", "path", "integer", "number", "boolean", "list of strings" */
    ArdStr default_value; /* ptr == NULL when there is no default */
    ArdStr help;
    uint32_t required;    /* 1 = must be given */
    uint32_t _reserved;
} ArdOptionSpec;

typedef struct ArdField {
    ArdStr key;
    ArdStr value;
} ArdField;

typedef struct ArdRecord {
    ArdStr text;      /* required */
    ArdStr text_pair; /* optional */
    ArdStr label;     /* optional */
    const ArdField *extra;
    size_t extra_len;
} ArdRecord;

typedef struct ArdRecordBatch {
    const ArdRecord *records;
    size_t len; /* 0 = end of stream */
    void *owner;
    ArdReleaseFn release;
} ArdRecordBatch;

typedef struct ArdTensor {
    uint32_t dtype; /* ARD_DTYPE_F32 or ARD_DTYPE_I64 */
    uint32_t ndim;
    const int64_t *shape;
    const void *data; /* dense, row-major */
    size_t len;       /* number of elements = product of shape */
} ArdTensor;

typedef struct ArdScalar {
    ArdStr name;
    double value;
} ArdScalar;

typedef struct ArdScalars {
    const ArdScalar *items;
    size_t len;
    void *owner;
    ArdReleaseFn release;
} ArdScalars;

typedef struct ArdLoaderVTable {
    uint32_t struct_size; /* sizeof(ArdLoaderVTable) */
    uint32_t _reserved;
    /* options: the pipeline block's options as a compact JSON object, already checked by the host
     * against the declared options (see docs/PLUGINS.md, "Options as the plugin receives them").
     * Same options + seed => same records. */
    int32_t (*open)(ArdStr options, uint64_t seed, void **out_handle, ArdError *err);
    /* 1 to max_records records (the host asks for 256 at a time, at most 65536); more is refused
     * as invalid output. An empty batch (len = 0) ends the stream. */
    int32_t (*next_batch)(void *handle, size_t max_records, ArdRecordBatch *out, ArdError *err);
    /* Optional: NULL when the plugin cannot tell its size. Otherwise *out_known = 1 and
     * *out_len = total when known, else *out_known = 0. */
    int32_t (*size_hint)(void *handle, uint64_t *out_len, uint8_t *out_known, ArdError *err);
    void (*close)(void *handle);
} ArdLoaderVTable;

typedef struct ArdMetricVTable {
    uint32_t struct_size; /* sizeof(ArdMetricVTable) */
    uint32_t _reserved;
    int32_t (*create)(ArdStr options, void **out_handle, ArdError *err);
    /* predictions: f32 logits [.., classes] or i64 ids; labels: i64 (-100 = ignore). */
    int32_t (*update)(void *handle, const ArdTensor *predictions, const ArdTensor *labels, ArdError *err);
    int32_t (*finish)(void *handle, ArdScalars *out, ArdError *err);
    void (*destroy)(void *handle);
} ArdMetricVTable;

typedef struct ArdPluginDescriptor {
    uint32_t abi_version; /* ARDPIPE_ABI_VERSION; read first */
    uint32_t struct_size; /* sizeof(ArdPluginDescriptor); read second */
    uint32_t kind;        /* ARD_KIND_LOADER or ARD_KIND_METRIC */
    uint32_t _reserved;
    ArdStr name;
    ArdStr version;
    ArdStr description;
    const ArdStr *capabilities;
    size_t capabilities_len;
    const ArdOptionSpec *options;
    size_t options_len;
    const ArdLoaderVTable *loader; /* non-NULL iff kind == ARD_KIND_LOADER */
    const ArdMetricVTable *metric; /* non-NULL iff kind == ARD_KIND_METRIC */
} ArdPluginDescriptor;

/*
 * ArdStr from a string literal, in two forms because ISO C allows compound literals only as
 * values, not as initialisers of static objects:
 *   ARD_STR_INIT("x")  a brace initialiser, a constant expression: use it in static descriptors,
 *                      option tables and capability lists, e.g.
 *                          static const ArdStr CAPS[] = {ARD_STR_INIT("labels")};
 *   ARD_STR("x")       a value (compound literal), for assignments and arguments in code:
 *                          d.name = ARD_STR("my-plugin");
 * ARD_STR_NONE_INIT / ARD_STR_NONE are the absent string (NULL ptr) in the same two forms.
 */
#define ARD_STR_INIT(literal) {(const uint8_t *)(literal), sizeof(literal) - 1}
#define ARD_STR(literal) ((ArdStr)ARD_STR_INIT(literal))
#define ARD_STR_NONE_INIT {NULL, 0}
#define ARD_STR_NONE ((ArdStr)ARD_STR_NONE_INIT)

typedef const ArdPluginDescriptor *(*ArdEntryFn)(const ArdHost *host);

#ifdef __cplusplus
}
#endif

#endif /* ARDPIPE_PLUGIN_H */
