/*
 * A metric that lies about lengths in `finish`, for the host's tests. Its option `lie`:
 *   "len"       one result in an array that claims 1 << 40 of them
 *   "name_len"  a result whose name claims 1 << 40 bytes
 *   "none"      one honest result
 * The host must refuse each with an error naming the plugin and `finish`.
 */
#include <string.h>

#include "ardpipe_plugin.h"

static int g_lie;
static int g_handle;
static ArdScalar g_result;

static int contains(ArdStr s, const char *needle) {
    size_t n = strlen(needle);
    for (size_t j = 0; j + n <= s.len; j++)
        if (memcmp(s.ptr + j, needle, n) == 0) return 1;
    return 0;
}

static int32_t liar_create(ArdStr options, void **out_handle, ArdError *err) {
    (void)err;
    g_lie = contains(options, "\"len\"") ? 1 : contains(options, "\"name_len\"") ? 2 : 0;
    *out_handle = &g_handle;
    return ARD_OK;
}

static int32_t liar_update(void *handle, const ArdTensor *predictions, const ArdTensor *labels, ArdError *err) {
    (void)handle;
    (void)predictions;
    (void)labels;
    (void)err;
    return ARD_OK;
}

static int32_t liar_finish(void *handle, ArdScalars *out, ArdError *err) {
    (void)handle;
    (void)err;
    g_result.name = ARD_STR("score");
    g_result.value = 1.0;
    out->items = &g_result;
    out->len = 1;
    if (g_lie == 1) out->len = (size_t)1 << 40;
    if (g_lie == 2) g_result.name.len = (size_t)1 << 40;
    return ARD_OK;
}

static void liar_destroy(void *handle) { (void)handle; }

static const ArdMetricVTable VTABLE = {sizeof(ArdMetricVTable), 0, liar_create, liar_update, liar_finish, liar_destroy};

static const ArdStr CAPABILITIES[] = {ARD_STR_INIT("logits")};

static const ArdOptionSpec OPTIONS[] = {
    {ARD_STR_INIT("lie"), ARD_STR_INIT("string"), ARD_STR_INIT("none"), ARD_STR_INIT("none, len or name_len"), 0, 0},
};

static const ArdPluginDescriptor DESCRIPTOR = {
    ARDPIPE_ABI_VERSION, sizeof(ArdPluginDescriptor), ARD_KIND_METRIC, 0,
    ARD_STR_INIT("c-lying-metric"), ARD_STR_INIT("0.0.1"), ARD_STR_INIT("lies about lengths (host tests)"),
    CAPABILITIES, 1, OPTIONS, 1, NULL, &VTABLE,
};

const ArdPluginDescriptor *ardpipe_plugin_v1(const ArdHost *host) {
    (void)host;
    return &DESCRIPTOR;
}
