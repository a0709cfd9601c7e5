/*
 * A loader that lies about lengths, for the host's tests of plugin output it cannot trust. Its
 * one option `lie` says where:
 *   "len"        a batch of one record with len = 1 << 20 (more than the host asked for)
 *   "text_len"   a record whose text claims 1 << 40 bytes
 *   "extra_len"  a record claiming 1 << 30 extra fields
 *   "error_len"  next_batch fails with a message that claims 1 << 40 bytes
 *   "none"       one honest record, then the end
 * The host must refuse each with an error naming the plugin and the function, never read past
 * the real data or try to allocate what was claimed.
 */
#include <string.h>

#include "ardpipe_plugin.h"

typedef struct {
    int lie;
    int done;
} Liar;

static Liar g_liar; /* one handle at a time is all the tests need */
static const char TEXT[] = "the only record";
static ArdRecord g_record;
/* Real memory behind the first 128 KiB of the error message that claims a terabyte. */
static const char BIG[1 << 17] = "a message that claims to be a terabyte long";
static const ArdField FIELD = {ARD_STR_INIT("key"), ARD_STR_INIT("value")};

static int32_t liar_open(ArdStr options, uint64_t seed, void **out_handle, ArdError *err) {
    (void)seed;
    (void)err;
    static const char *const LIES[] = {"\"none\"", "\"len\"", "\"text_len\"", "\"extra_len\"", "\"error_len\""};
    g_liar.lie = 0;
    g_liar.done = 0;
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(LIES[i]);
        for (size_t j = 0; j + n <= options.len; j++)
            if (memcmp(options.ptr + j, LIES[i], n) == 0) g_liar.lie = i;
    }
    *out_handle = &g_liar;
    return ARD_OK;
}

static int32_t liar_next_batch(void *handle, size_t max_records, ArdRecordBatch *out, ArdError *err) {
    Liar *l = handle;
    (void)max_records;
    if (l->done) {
        out->len = 0;
        return ARD_OK;
    }
    l->done = 1;
    memset(&g_record, 0, sizeof g_record);
    g_record.text = ARD_STR(TEXT);
    switch (l->lie) {
    case 1: out->records = &g_record; out->len = (size_t)1 << 20; return ARD_OK;
    case 2: g_record.text.len = (size_t)1 << 40; break;
    case 3: g_record.extra = &FIELD; g_record.extra_len = (size_t)1 << 30; break;
    case 4:
        err->message.ptr = (const uint8_t *)BIG;
        err->message.len = (size_t)1 << 40;
        return ARD_ERROR;
    default: break;
    }
    out->records = &g_record;
    out->len = 1;
    return ARD_OK;
}

static void liar_close(void *handle) { (void)handle; }

static const ArdLoaderVTable VTABLE = {sizeof(ArdLoaderVTable), 0, liar_open, liar_next_batch, NULL, liar_close};

static const ArdOptionSpec OPTIONS[] = {
    {ARD_STR_INIT("lie"), ARD_STR_INIT("string"), ARD_STR_INIT("none"),
     ARD_STR_INIT("none, len, text_len, extra_len or error_len"), 0, 0},
};

static const ArdPluginDescriptor DESCRIPTOR = {
    ARDPIPE_ABI_VERSION, sizeof(ArdPluginDescriptor), ARD_KIND_LOADER, 0,
    ARD_STR_INIT("c-liar"), ARD_STR_INIT("0.0.1"), ARD_STR_INIT("lies about lengths (host tests)"),
    NULL, 0, OPTIONS, 1, &VTABLE, NULL,
};

const ArdPluginDescriptor *ardpipe_plugin_v1(const ArdHost *host) {
    (void)host;
    return &DESCRIPTOR;
}
