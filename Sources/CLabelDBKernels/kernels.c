/* The softmax and top-K of regeneration, in clang vector extensions. One source, compiled three
 * times (target_clones): the lanes below become one AVX-512 register, two AVX2 registers, or four
 * SSE2 registers, and the loader picks the clone for the CPU it runs on. */
#include "kernels.h"

#include <math.h>
#include <string.h>

/* Every helper is always inlined into the cloned entry point: a 16-float vector passed across a
 * call between code built for different CPUs would change its calling convention (clang warns
 * with -Wpsabi; nothing crosses such a call here, so the warning is silenced). */
#pragma clang diagnostic ignored "-Wpsabi"

#define LANES 16
typedef float vf __attribute__((ext_vector_type(LANES)));
typedef int32_t vi __attribute__((ext_vector_type(LANES)));

#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

static inline __attribute__((always_inline)) vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline __attribute__((always_inline)) void store(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* e^x for x <= 0: x = k ln2 + f, e^f by a degree-6 polynomial, 2^k through the exponent bits
 * (the same polynomial and reduction as LinearAlgebra.expVector). */
static inline __attribute__((always_inline)) vf exp_vector(vf x) {
    vf clamped = x < -87.0f ? (vf)(-87.0f) : x;
    const vf magic = (vf)12582912.0f; /* 1.5 * 2^23 */
    vf t = clamped * 1.442695040888963f + magic;
    vf k = t - magic;
    vf f = clamped - k * 0.693145751953125f - k * 1.428606765330187e-06f;
    vf p = (vf)(1.0f / 720);
    p = p * f + 1.0f / 120;
    p = p * f + 1.0f / 24;
    p = p * f + 1.0f / 6;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    vi bits = (vi)t - (vi)magic;
    vf scale = (vf)((bits + 127) << 23);
    vf result = p * scale;
    return x < -87.0f ? (vf)0.0f : result;
}

static inline __attribute__((always_inline)) float exp_scalar(float x) {
    vf v = (vf)x;
    return exp_vector(v)[0];
}

/* Inserts (v, j) into the sorted top list when it belongs there (ties keep the smaller index). */
static inline __attribute__((always_inline)) void offer(float v, int32_t j, size_t k, size_t *count, float *threshold,
                                                         int32_t *classes, float *values) {
    if (*count == k && !(v > *threshold)) return;
    size_t position = *count < k ? *count : k - 1;
    if (*count < k) (*count)++;
    while (position > 0 && v > values[position - 1]) {
        values[position] = values[position - 1];
        classes[position] = classes[position - 1];
        position--;
    }
    values[position] = v;
    classes[position] = j;
    if (*count == k) *threshold = values[k - 1];
}

/* One row: softmax in three passes over the row (which stays in L1). The top-K is chosen in the
 * first pass, on the logits (softmax keeps their order): a vector compare against the current
 * K-th value skips almost every block, and only the few candidates are inserted one by one. The
 * chosen classes' probabilities are read back from the normalised row. */
static inline __attribute__((always_inline)) void softmax_row(float *row, size_t n, const float *bias, float scale,
                                                               size_t k, int32_t *classes, float *probabilities) {
    size_t vector_end = n & ~(size_t)(LANES - 1), j = 0, count = 0;
    float threshold = -INFINITY;
    vf m = (vf)(-INFINITY);
    for (; j < vector_end; j += LANES) {
        vf v = load(row + j);
        if (bias) v += load(bias + j);
        v *= scale;
        store(row + j, v);
        m = v > m ? v : m;
        if (k > 0 && (count < k || __builtin_reduce_or(v > threshold)))
            for (int l = 0; l < LANES; l++) offer(v[l], (int32_t)(j + l), k, &count, &threshold, classes, probabilities);
    }
    float max = -INFINITY;
    for (int l = 0; l < LANES; l++) max = m[l] > max ? m[l] : max;
    for (; j < n; j++) {
        row[j] = (row[j] + (bias ? bias[j] : 0)) * scale;
        max = row[j] > max ? row[j] : max;
        if (k > 0) offer(row[j], (int32_t)j, k, &count, &threshold, classes, probabilities);
    }
    vf sum = (vf)0.0f;
    for (j = 0; j < vector_end; j += LANES) {
        vf e = exp_vector(load(row + j) - max);
        store(row + j, e);
        sum += e;
    }
    float total = 0;
    for (int l = 0; l < LANES; l++) total += sum[l];
    for (; j < n; j++) {
        row[j] = exp_scalar(row[j] - max);
        total += row[j];
    }
    float inverse = 1.0f / total;
    for (j = 0; j < vector_end; j += LANES) store(row + j, load(row + j) * inverse);
    for (; j < n; j++) row[j] *= inverse;
    for (size_t i = 0; i < count; i++) probabilities[i] = row[classes[i]];
}

CLONES
void ldb_softmax_rows(float *z, size_t rows, size_t columns, const float *bias, float scale,
                      size_t top_k, int32_t *top_classes, float *top_probabilities) {
    size_t k = top_classes && top_probabilities ? top_k : 0;
    for (size_t r = 0; r < rows; r++)
        softmax_row(z + r * columns, columns, bias, scale, k, k ? top_classes + r * k : NULL, k ? top_probabilities + r * k : NULL);
}
