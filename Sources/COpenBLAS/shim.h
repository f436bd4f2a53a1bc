#include <stddef.h>
#include <cblas.h>

/* LAPACK (Fortran ABI, shipped inside libopenblas): only the routines LabelDB calls. The trailing
   size_t arguments are gfortran's hidden lengths of the character arguments; passing them keeps
   the calls correct with compilers that rely on them. */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);
void spotrs_(const char *uplo, const int *n, const int *nrhs, const float *a, const int *lda,
             float *b, const int *ldb, int *info, size_t uplo_len);
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
             float *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);
