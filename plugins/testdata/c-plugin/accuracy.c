/*
 * A metric plugin written in C against include/ardpipe_plugin.h: accuracy over argmax(logits) or
 * predicted ids, ignoring labels equal to -100. The host's tests compile it with `cc` and load it,
 * which keeps the header and the Rust ABI types in step.
 *
 * Options: {"strict": true} is accepted; any other key is refused with an error naming it (a
 * deliberately small JSON check: this file is a test of the ABI, not a JSON parser).
 */
#include <stdlib.h>
#include <string.h>

#include "ardpipe_plugin.h"

static const ArdHost *g_host = NULL;

static void log_line(uint32_t level, const char *text) {
    if (g_host && g_host->log) {
        ArdStr s = {(const uint8_t *)text, strlen(text)};
        g_host->log(g_host->ctx, level, s);
    }
}

typedef struct {
    uint64_t correct;
    uint64_t total;
} Accuracy;

/* Error strings are static here, so no release callback is needed (release = NULL). */
static int32_t fail(ArdError *err, const char *message, const char *key) {
    if (err) {
        err->message.ptr = (const uint8_t *)message;
        err->message.len = strlen(message);
        err->message.owner = NULL;
        err->message.release = NULL;
        if (key) {
            err->key.ptr = (const uint8_t *)key;
            err->key.len = strlen(key);
        }
    }
    return ARD_ERROR;
}

static int32_t acc_create(ArdStr options, void **out_handle, ArdError *err) {
    /* Accept "{}", "" or {"strict": true}; refuse anything else, naming the key. */
    const char *known = "\"strict\"";
    for (size_t i = 0; i < options.len; i++) {
        if (options.ptr[i] == '"') {
            if (options.len - i < strlen(known) || memcmp(options.ptr + i, known, strlen(known)) != 0) {
                return fail(err, "unknown option (this C plugin only knows `strict`)", "unknown");
            }
            break;
        }
    }
    Accuracy *a = calloc(1, sizeof(Accuracy));
    if (!a) return fail(err, "out of memory", NULL);
    *out_handle = a;
    log_line(ARD_LOG_INFO, "c accuracy metric created");
    return ARD_OK;
}

static int32_t acc_update(void *handle, const ArdTensor *predictions, const ArdTensor *labels, ArdError *err) {
    Accuracy *a = handle;
    if (labels->dtype != ARD_DTYPE_I64) return fail(err, "labels must be i64", NULL);
    const int64_t *y = labels->data;
    size_t width = 1;
    if (predictions->dtype == ARD_DTYPE_F32) {
        if (predictions->ndim == 0) return fail(err, "logits need a class axis", NULL);
        width = (size_t)predictions->shape[predictions->ndim - 1];
        if (width == 0 || predictions->len / width != labels->len)
            return fail(err, "logits and labels disagree in size", NULL);
    } else if (predictions->len != labels->len) {
        return fail(err, "ids and labels disagree in size", NULL);
    }
    for (size_t i = 0; i < labels->len; i++) {
        if (y[i] == -100) continue;
        int64_t guess;
        if (predictions->dtype == ARD_DTYPE_F32) {
            const float *row = (const float *)predictions->data + i * width;
            size_t best = 0;
            for (size_t j = 1; j < width; j++)
                if (row[j] > row[best]) best = j;
            guess = (int64_t)best;
        } else {
            guess = ((const int64_t *)predictions->data)[i];
        }
        a->correct += (guess == y[i]);
        a->total += 1;
    }
    return ARD_OK;
}

typedef struct {
    ArdScalar items[2];
} Results;

static void release_results(void *owner) { free(owner); }

static int32_t acc_finish(void *handle, ArdScalars *out, ArdError *err) {
    Accuracy *a = handle;
    if (a->total == 0) return fail(err, "no labelled examples", NULL);
    Results *r = malloc(sizeof(Results));
    if (!r) return fail(err, "out of memory", NULL);
    r->items[0].name = ARD_STR("accuracy");
    r->items[0].value = (double)a->correct / (double)a->total;
    r->items[1].name = ARD_STR("count");
    r->items[1].value = (double)a->total;
    out->items = r->items;
    out->len = 2;
    out->owner = r;
    out->release = release_results;
    return ARD_OK;
}

static void acc_destroy(void *handle) { free(handle); }

static const ArdMetricVTable VTABLE = {
    sizeof(ArdMetricVTable), 0, acc_create, acc_update, acc_finish, acc_destroy,
};

static const ArdStr CAPABILITIES[] = {{(const uint8_t *)"logits", 6}, {(const uint8_t *)"token-ids", 9}};

static const ArdOptionSpec OPTIONS[] = {
    {{(const uint8_t *)"strict", 6}, {(const uint8_t *)"boolean", 7}, {(const uint8_t *)"false", 5},
     {(const uint8_t *)"accepted and ignored", 20}, 0, 0},
};

const ArdPluginDescriptor *ardpipe_plugin_v1(const ArdHost *host) {
    static ArdPluginDescriptor d;
    if (host && host->abi_version == ARDPIPE_ABI_VERSION && host->struct_size >= sizeof(ArdHost)) g_host = host;
    d.abi_version = ARDPIPE_ABI_VERSION;
    d.struct_size = sizeof(ArdPluginDescriptor);
    d.kind = ARD_KIND_METRIC;
    d.name = ARD_STR("c-accuracy");
    d.version = ARD_STR("1.0.0");
    d.description = ARD_STR("accuracy, written in C");
    d.capabilities = CAPABILITIES;
    d.capabilities_len = 2;
    d.options = OPTIONS;
    d.options_len = 1;
    d.loader = NULL;
    d.metric = &VTABLE;
    return &d;
}
