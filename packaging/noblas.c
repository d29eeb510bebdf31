/* A small stand-in for NumPy's bundled OpenBLAS (libscipy_openblas64_*.so, 25 MB), for the frozen
 * teddywatch app only.
 *
 * NumPy links OpenBLAS for matrix products (dot, matmul, inner) and numpy.linalg. onnxruntime does
 * the network's arithmetic with its own kernels and the preprocessing is elementwise; the only
 * matrix products are `teddywatch learn`'s small ones (teddywatch/teach/adapter.py), which the
 * plain loops below do in seconds, and teddywatch never uses numpy.linalg. But numpy's extension modules need every symbol to load, and
 * `import numpy` itself checks `ones(2, float32).dot(...)`. So this library provides:
 *
 *   - the CBLAS level 1-3 routines NumPy calls (dot, axpy, gemv, gemm, syrk; real and complex) as
 *     plain, correct C loops: right answers, slower than OpenBLAS on big matrices;
 *   - the LAPACK routines of numpy.linalg as stubs that print one line naming the routine and
 *     abort, since the app has no linear algebra to do.
 *
 * watch.spec builds it with the C compiler at bundle time, names it like the library it replaces,
 * checks it defines every symbol NumPy imports from OpenBLAS, and checks the bundle still
 * classifies. Integer arguments are 64-bit (the "64_" ILP64 interface NumPy's wheels use).
 */
#include <complex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int64_t blasint;
enum { RowMajor = 101, ColMajor = 102 };
enum { NoTrans = 111, Trans = 112, ConjTrans = 113 };
enum { Upper = 121, Lower = 122 };

#define EXPORT __attribute__((visibility("default")))
#define AT(order, i, j, ld) ((order) == RowMajor ? (i) * (ld) + (j) : (i) + (j) * (ld))
#define START(n, inc) ((inc) < 0 ? (1 - (n)) * (inc) : 0)

#define REAL_CONJ(x) (x)
#define CPLX_CONJF(x) conjf(x)
#define CPLX_CONJ(x) conj(x)

/* op(A)[i][l] for A stored in `order` with leading dimension lda. */
#define OPA(T, CONJ, order, trans, A, i, l, lda) \
    ((trans) == NoTrans ? (A)[AT(order, i, l, lda)] \
     : (trans) == Trans ? (A)[AT(order, l, i, lda)] : CONJ((A)[AT(order, l, i, lda)]))

/* Level 1 and 3 bodies shared by the real and complex entry points. */
#define DEFINE_KERNELS(P, T, CONJ)                                                              \
static T P##_dot(blasint n, const T *x, blasint incx, const T *y, blasint incy, int conj_x) {   \
    T sum = 0;                                                                                  \
    const T *px = x + START(n, incx), *py = y + START(n, incy);                                 \
    for (blasint k = 0; k < n; k++, px += incx, py += incy)                                     \
        sum += (conj_x ? CONJ(*px) : *px) * *py;                                                \
    return sum;                                                                                 \
}                                                                                               \
static void P##_axpy(blasint n, T alpha, const T *x, blasint incx, T *y, blasint incy) {        \
    const T *px = x + START(n, incx);                                                           \
    T *py = y + START(n, incy);                                                                 \
    for (blasint k = 0; k < n; k++, px += incx, py += incy) *py += alpha * *px;                 \
}                                                                                               \
static void P##_gemv(int order, int trans, blasint m, blasint n, T alpha, const T *A,           \
                     blasint lda, const T *x, blasint incx, T beta, T *y, blasint incy) {       \
    blasint rows = trans == NoTrans ? m : n, cols = trans == NoTrans ? n : m;                   \
    const T *x0 = x + START(cols, incx);                                                        \
    T *py = y + START(rows, incy);                                                              \
    for (blasint i = 0; i < rows; i++, py += incy) {                                            \
        T sum = 0;                                                                              \
        const T *px = x0;                                                                       \
        for (blasint j = 0; j < cols; j++, px += incx)                                          \
            sum += OPA(T, CONJ, order, trans, A, i, j, lda) * *px;                              \
        *py = alpha * sum + (beta == 0 ? 0 : beta * *py);                                       \
    }                                                                                           \
}                                                                                               \
static void P##_gemm(int order, int ta, int tb, blasint M, blasint N, blasint K, T alpha,       \
                     const T *A, blasint lda, const T *B, blasint ldb, T beta, T *C,            \
                     blasint ldc) {                                                             \
    for (blasint i = 0; i < M; i++)                                                             \
        for (blasint j = 0; j < N; j++) {                                                       \
            T sum = 0;                                                                          \
            for (blasint l = 0; l < K; l++)                                                     \
                sum += OPA(T, CONJ, order, ta, A, i, l, lda)                                    \
                       * OPA(T, CONJ, order, tb, B, l, j, ldb);                                 \
            T *c = &C[AT(order, i, j, ldc)];                                                    \
            *c = alpha * sum + (beta == 0 ? 0 : beta * *c);                                     \
        }                                                                                       \
}                                                                                               \
static void P##_syrk(int order, int uplo, int trans, blasint N, blasint K, T alpha,             \
                     const T *A, blasint lda, T beta, T *C, blasint ldc) {                      \
    /* C = alpha * op(A) op(A)^T + beta * C on the `uplo` triangle; op(A) is N x K. */          \
    int op = trans == NoTrans ? NoTrans : Trans;                                                \
    for (blasint i = 0; i < N; i++)                                                             \
        for (blasint j = uplo == Upper ? i : 0; j < (uplo == Upper ? N : i + 1); j++) {         \
            T sum = 0;                                                                          \
            for (blasint l = 0; l < K; l++)                                                     \
                sum += OPA(T, CONJ, order, op, A, i, l, lda)                                    \
                       * OPA(T, CONJ, order, op, A, j, l, lda);                                 \
            T *c = &C[AT(order, i, j, ldc)];                                                    \
            *c = alpha * sum + (beta == 0 ? 0 : beta * *c);                                     \
        }                                                                                       \
}

DEFINE_KERNELS(s, float, REAL_CONJ)
DEFINE_KERNELS(d, double, REAL_CONJ)
DEFINE_KERNELS(c, float complex, CPLX_CONJF)
DEFINE_KERNELS(z, double complex, CPLX_CONJ)

/* Real entry points: scalars by value. */
#define REAL_API(P, T)                                                                          \
EXPORT T scipy_cblas_##P##dot64_(blasint n, const T *x, blasint incx, const T *y,              \
                                 blasint incy) { return P##_dot(n, x, incx, y, incy, 0); }     \
EXPORT void scipy_cblas_##P##axpy64_(blasint n, T alpha, const T *x, blasint incx, T *y,        \
                                     blasint incy) { P##_axpy(n, alpha, x, incx, y, incy); }   \
EXPORT void scipy_cblas_##P##gemv64_(int order, int trans, blasint m, blasint n, T alpha,       \
                                     const T *A, blasint lda, const T *x, blasint incx,        \
                                     T beta, T *y, blasint incy) {                             \
    P##_gemv(order, trans, m, n, alpha, A, lda, x, incx, beta, y, incy);                        \
}                                                                                               \
EXPORT void scipy_cblas_##P##gemm64_(int order, int ta, int tb, blasint M, blasint N,           \
                                     blasint K, T alpha, const T *A, blasint lda, const T *B,  \
                                     blasint ldb, T beta, T *C, blasint ldc) {                 \
    P##_gemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);                      \
}                                                                                               \
EXPORT void scipy_cblas_##P##syrk64_(int order, int uplo, int trans, blasint N, blasint K,      \
                                     T alpha, const T *A, blasint lda, T beta, T *C,           \
                                     blasint ldc) {                                            \
    P##_syrk(order, uplo, trans, N, K, alpha, A, lda, beta, C, ldc);                            \
}

/* Complex entry points: scalars by pointer, dot products written to `ret`. */
#define COMPLEX_API(P, T)                                                                       \
EXPORT void scipy_cblas_##P##dotu_sub64_(blasint n, const void *x, blasint incx,               \
                                         const void *y, blasint incy, void *ret) {             \
    *(T *)ret = P##_dot(n, (const T *)x, incx, (const T *)y, incy, 0);                          \
}                                                                                               \
EXPORT void scipy_cblas_##P##dotc_sub64_(blasint n, const void *x, blasint incx,               \
                                         const void *y, blasint incy, void *ret) {             \
    *(T *)ret = P##_dot(n, (const T *)x, incx, (const T *)y, incy, 1);                          \
}                                                                                               \
EXPORT void scipy_cblas_##P##axpy64_(blasint n, const void *alpha, const void *x,              \
                                     blasint incx, void *y, blasint incy) {                    \
    P##_axpy(n, *(const T *)alpha, (const T *)x, incx, (T *)y, incy);                           \
}                                                                                               \
EXPORT void scipy_cblas_##P##gemv64_(int order, int trans, blasint m, blasint n,                \
                                     const void *alpha, const void *A, blasint lda,            \
                                     const void *x, blasint incx, const void *beta, void *y,   \
                                     blasint incy) {                                           \
    P##_gemv(order, trans, m, n, *(const T *)alpha, (const T *)A, lda, (const T *)x, incx,      \
             *(const T *)beta, (T *)y, incy);                                                  \
}                                                                                               \
EXPORT void scipy_cblas_##P##gemm64_(int order, int ta, int tb, blasint M, blasint N,           \
                                     blasint K, const void *alpha, const void *A, blasint lda, \
                                     const void *B, blasint ldb, const void *beta, void *C,    \
                                     blasint ldc) {                                            \
    P##_gemm(order, ta, tb, M, N, K, *(const T *)alpha, (const T *)A, lda, (const T *)B, ldb,   \
             *(const T *)beta, (T *)C, ldc);                                                   \
}                                                                                               \
EXPORT void scipy_cblas_##P##syrk64_(int order, int uplo, int trans, blasint N, blasint K,      \
                                     const void *alpha, const void *A, blasint lda,            \
                                     const void *beta, void *C, blasint ldc) {                 \
    P##_syrk(order, uplo, trans, N, K, *(const T *)alpha, (const T *)A, lda, *(const T *)beta,  \
             (T *)C, ldc);                                                                     \
}

REAL_API(s, float)
REAL_API(d, double)
COMPLEX_API(c, float complex)
COMPLEX_API(z, double complex)

/* numpy.linalg's LAPACK (and the BLAS copies it uses): not available in the app bundle. */
static void no_lapack(const char *name) {
    fprintf(stderr, "teddywatch: numpy.linalg (%s) is not available in the desktop app bundle, "
                    "which carries no LAPACK; use the Python package for linear algebra\n", name);
    fflush(stderr);
    abort();
}
#define NO_LAPACK(name) EXPORT void scipy_##name##_64_(void) { no_lapack(#name); }
#define NO_LAPACK4(name) NO_LAPACK(s##name) NO_LAPACK(d##name) NO_LAPACK(c##name) NO_LAPACK(z##name)

NO_LAPACK4(copy)
NO_LAPACK4(gesv)
NO_LAPACK4(getrf)
NO_LAPACK4(potrf)
NO_LAPACK4(geev)
NO_LAPACK4(gesdd)
NO_LAPACK4(gelsd)
NO_LAPACK(ssyevd) NO_LAPACK(dsyevd) NO_LAPACK(cheevd) NO_LAPACK(zheevd)
NO_LAPACK(dgeqrf) NO_LAPACK(zgeqrf) NO_LAPACK(dorgqr) NO_LAPACK(zungqr)
