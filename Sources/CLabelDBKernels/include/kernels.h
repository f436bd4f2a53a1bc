/* Numeric kernels LabelDB compiles per CPU: the softmax and top-K of label regeneration, built
 * for AVX-512, AVX2 and baseline x86-64 and chosen at load time (target_clones), so the library
 * stays portable while each machine runs its widest vectors. */
#ifndef LABELDB_KERNELS_H
#define LABELDB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* For each of `rows` rows of `columns` floats in z: z = softmax((z + bias) * scale), in place
 * (bias may be NULL). With top_k > 0, also writes the row's top_k largest probabilities
 * (descending, ties to the smaller class) and their classes into top_probabilities and
 * top_classes (rows × top_k each). exp is a degree-6 polynomial (relative error below 2e-7);
 * inputs below -87 give 0. */
void ldb_softmax_rows(float *z, size_t rows, size_t columns, const float *bias, float scale,
                      size_t top_k, int32_t *top_classes, float *top_probabilities);

#endif
