// numpy's float64 summation, for bitwise agreement with Python code that calls np.sum on a 1-D
// contiguous float64 array (or .sum(axis=-1) on C-contiguous rows): the add-reduction starts
// from 0.0 and adds numpy's pairwise sum of the whole row (8 accumulators up to 128 values,
// halving above, split points rounded down to a multiple of 8). Checked against numpy 2.x for
// lengths 1 .. 20000 (no 8192-element blocking for contiguous input).
#pragma once

#include <cstdint>

namespace case_fast {

inline double numpy_pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double res = 0.0;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

// np.sum(a) for a 1-D contiguous float64 array of n values.
inline double numpy_sum(const double* a, int64_t n) { return 0.0 + numpy_pairwise_sum(a, n); }

}  // namespace case_fast
