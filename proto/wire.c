#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

int ml_wire_pack(const char *method, uint64_t call_id, int32_t status, const char *error,
                 const char *token, const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
    Microlog__V1__Envelope env = MICROLOG__V1__ENVELOPE__INIT;
    uint8_t *raw = NULL, *packed = NULL, *buf = NULL;
    size_t raw_len = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    int rv = -ENOMEM;

    if (raw_len > ML_WIRE_MAX_RAW)
        return -EMSGSIZE;
    env.version = ML_WIRE_VERSION;
    env.method = (char *)(method ? method : "");
    env.call_id = call_id;
    env.status = status;
    env.error = (char *)(error ? error : "");
    env.token = (char *)(token ? token : "");
    if (raw_len > 0) {
        if ((raw = malloc(raw_len)) == NULL)
            goto done;
        protobuf_c_message_pack(msg, raw);
        env.raw_size = (uint32_t)raw_len;
        env.payload.data = raw;
        env.payload.len = raw_len;
        if (raw_len >= ML_WIRE_COMPRESS_MIN) {
            int bound = LZ4_compressBound((int)raw_len);
            if ((packed = malloc((size_t)bound)) == NULL)
                goto done;
            int n = LZ4_compress_default((const char *)raw, (char *)packed, (int)raw_len, bound);
            if (n > 0 && (size_t)n < raw_len) {
                env.compression = MICROLOG__V1__COMPRESSION__COMPRESSION_LZ4;
                env.payload.data = packed;
                env.payload.len = (size_t)n;
            }
        }
    }
    size_t len = microlog__v1__envelope__get_packed_size(&env);
    if (len > ML_WIRE_MAX_MESSAGE) {
        rv = -EMSGSIZE;
        goto done;
    }
    if ((buf = malloc(len ? len : 1)) == NULL)
        goto done;
    microlog__v1__envelope__pack(&env, buf);
    *out = buf;
    *out_len = len;
    rv = 0;
done:
    free(raw);
    free(packed);
    return rv;
}

int ml_wire_unpack(const uint8_t *buf, size_t len, ml_wire_msg *out)
{
    Microlog__V1__Envelope *env;
    uint8_t *raw = NULL;

    if (len > ML_WIRE_MAX_MESSAGE)
        return -EMSGSIZE;
    if ((env = microlog__v1__envelope__unpack(NULL, len, buf)) == NULL)
        return -EBADMSG;
    if (env->version != ML_WIRE_VERSION) {
        memset(out, 0, sizeof(*out));
        out->env = env;
        return -EPROTO;
    }
    const uint8_t *payload = env->payload.data;
    size_t payload_len = env->payload.len;
    switch (env->compression) {
    case MICROLOG__V1__COMPRESSION__COMPRESSION_NONE:
        break;
    case MICROLOG__V1__COMPRESSION__COMPRESSION_LZ4:
        if (env->raw_size == 0 || env->raw_size > ML_WIRE_MAX_RAW || payload_len > INT32_MAX)
            goto bad;
        if ((raw = malloc(env->raw_size)) == NULL) {
            microlog__v1__envelope__free_unpacked(env, NULL);
            return -ENOMEM;
        }
        if (LZ4_decompress_safe((const char *)payload, (char *)raw, (int)payload_len,
                                (int)env->raw_size) != (int)env->raw_size)
            goto bad;
        payload = raw;
        payload_len = env->raw_size;
        break;
    default:
        goto bad;
    }
    out->env = env;
    out->payload = payload;
    out->payload_len = payload_len;
    out->owned = raw;
    return 0;
bad:
    free(raw);
    microlog__v1__envelope__free_unpacked(env, NULL);
    return -EBADMSG;
}

void ml_wire_msg_free(ml_wire_msg *m)
{
    if (m->env)
        microlog__v1__envelope__free_unpacked(m->env, NULL);
    free(m->owned);
    memset(m, 0, sizeof(*m));
}

const char *ml_wire_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case -EMSGSIZE:
        return "message too large";
    case -EBADMSG:
        return "malformed envelope";
    case -EPROTO:
        return "unsupported protocol version";
    case -ENOMEM:
        return "out of memory";
    default:
        return "error";
    }
}
