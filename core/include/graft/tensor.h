/* graft/tensor.h: dtypes, devices and the tensor descriptor shared by the core and plugins.
 *
 * A graft_tensor describes memory it does not own: the core allocates (DESIGN: the core owns
 * memory) and hands out views. Shapes and strides are int64_t element counts; strides are in
 * elements, not bytes. Plugins may require contiguous row-major tensors and refuse others with
 * graft_tensor_is_contiguous().
 *
 * No CUDA, BLAS or HDF5 types appear here; a device pointer is a plain void *.
 */
#ifndef GRAFT_TENSOR_H
#define GRAFT_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_MAX_DIMS 6

typedef enum graft_dtype {
    GRAFT_DTYPE_F32 = 0,
    GRAFT_DTYPE_BF16 = 1,
    GRAFT_DTYPE_F16 = 2,
    GRAFT_DTYPE_I32 = 3,
    GRAFT_DTYPE_I64 = 4,
    GRAFT_DTYPE_U32 = 5,
    GRAFT_DTYPE_U8 = 6,
    GRAFT_DTYPE_F64 = 7
} graft_dtype;

typedef enum graft_device {
    GRAFT_DEVICE_CPU = 0,
    GRAFT_DEVICE_CUDA = 1
} graft_device;

typedef struct graft_tensor {
    void *data;                      /* first element; not owned                               */
    graft_dtype dtype;
    graft_device device;
    int32_t device_index;            /* CUDA ordinal; 0 on the CPU                             */
    int32_t ndim;                    /* 0..GRAFT_MAX_DIMS; 0 is a scalar                       */
    int64_t shape[GRAFT_MAX_DIMS];
    int64_t stride[GRAFT_MAX_DIMS];  /* in elements; row-major contiguous: stride[ndim-1] = 1  */
} graft_tensor;

/* Bytes of one element, 0 for an unknown dtype. */
static inline size_t graft_dtype_size(graft_dtype dt) {
    switch (dt) {
    case GRAFT_DTYPE_F32: case GRAFT_DTYPE_I32: case GRAFT_DTYPE_U32: return 4;
    case GRAFT_DTYPE_BF16: case GRAFT_DTYPE_F16: return 2;
    case GRAFT_DTYPE_I64: case GRAFT_DTYPE_F64: return 8;
    case GRAFT_DTYPE_U8: return 1;
    }
    return 0;
}

/* "F32", "BF16", ... (safetensors spelling), "?" for an unknown value. */
static inline const char *graft_dtype_name(graft_dtype dt) {
    switch (dt) {
    case GRAFT_DTYPE_F32: return "F32";
    case GRAFT_DTYPE_BF16: return "BF16";
    case GRAFT_DTYPE_F16: return "F16";
    case GRAFT_DTYPE_I32: return "I32";
    case GRAFT_DTYPE_I64: return "I64";
    case GRAFT_DTYPE_U32: return "U32";
    case GRAFT_DTYPE_U8: return "U8";
    case GRAFT_DTYPE_F64: return "F64";
    }
    return "?";
}

/* Number of elements (1 for a scalar). The caller guarantees the shape was validated. */
static inline int64_t graft_tensor_numel(const graft_tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* 1 when the strides are those of a dense row-major array of this shape. */
static inline int graft_tensor_is_contiguous(const graft_tensor *t) {
    int64_t s = 1;
    for (int32_t i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* 1 when the n tensors t[0..n) are contiguous, of one dtype, and each starts where the previous
 * one ends: then they can be read as one array (a plugin streams several projection matrices with
 * the same input width as one product; the core lays a mixer's parameters out in declared order). */
static inline int graft_tensors_back_to_back(const graft_tensor *t, int n) {
    for (int i = 0; i + 1 < n; i++)
        if (!graft_tensor_is_contiguous(&t[i]) || !graft_tensor_is_contiguous(&t[i + 1]) || t[i].dtype != t[i + 1].dtype ||
            (const char *)t[i + 1].data !=
                (const char *)t[i].data + (size_t)graft_tensor_numel(&t[i]) * graft_dtype_size(t[i].dtype))
            return 0;
    return 1;
}

/* A contiguous descriptor of `ndim` dims over `data`. */
static inline graft_tensor graft_tensor_make(void *data, graft_dtype dtype, graft_device device,
                                             int32_t ndim, const int64_t *shape) {
    graft_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    t.ndim = ndim;
    int64_t s = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = s;
        s *= shape[i];
    }
    return t;
}

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_TENSOR_H */
