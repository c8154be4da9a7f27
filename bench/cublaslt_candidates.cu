/* bench/cublaslt_candidates.cu: bench_cublaslt_candidates [M]: every candidate cuBLASLt's heuristic
 * returns (up to 32) for the Qwen3-1.7B prefill products C (M x N) = A (M x K) W^T in bf16 (graft's
 * operand order, matmul.cu), each timed over 20 runs after 3 warm-ups, twice (the first pass warms
 * the clocks): tile, stages, split-K and TFLOP/s. A standalone probe: constant data (0x3c3c), so the
 * tensor cores run cooler than on real weights and the absolute rates are ~15% above an in-model
 * product; compare candidates with each other (bench/results/prefill-2026-11-24.md). The batch-2
 * shape is the gate and up products as one strided-batched call with A broadcast (stride 0).
 */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#define CK(x) do { auto s_ = (x); if ((int)s_) { printf("%s:%d err %d\n", __FILE__, __LINE__, (int)s_); exit(1);} } while (0)
int main(int argc, char **argv) {
  int M = argc > 1 ? atoi(argv[1]) : 16384;
  int shapes[][3] = {{4096, 2048, 1}, {2048, 2048, 1}, {1024, 2048, 1}, {12288, 2048, 1}, {6144, 2048, 1}, {6144, 2048, 2}, {2048, 6144, 1}};
  cublasLtHandle_t lt; CK(cublasLtCreate(&lt));
  size_t wsb = 32u << 20; void *ws; CK(cudaMalloc(&ws, wsb));
  for (auto &sh : shapes) {
    int N = sh[0], K = sh[1], nb = sh[2];
    __nv_bfloat16 *A, *W, *C;
    CK(cudaMalloc(&A, (size_t)M * K * 2)); CK(cudaMalloc(&W, (size_t)nb * N * K * 2)); CK(cudaMalloc(&C, (size_t)nb * M * N * 2));
    cudaMemset(A, 0x3c, (size_t)M * K * 2); cudaMemset(W, 0x3c, (size_t)nb * N * K * 2);
    cublasLtMatmulDesc_t op; CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n));
    cublasLtMatrixLayout_t la, lb, lc;
    CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K));
    CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N));
    if (nb > 1) {
      int32_t bc = nb; int64_t sa = (int64_t)N * K, sb = 0, sc = (int64_t)M * N;
      CK(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
      CK(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
      CK(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
      CK(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa));
      CK(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb));
      CK(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc));
    }
    cublasLtMatmulPreference_t pref; CK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t w64 = wsb; CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &w64, sizeof w64));
    cublasLtMatmulHeuristicResult_t res[32]; int found = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &found));
    float alpha = 1, beta = 0;
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    double flop = 2.0 * M * N * K * nb;
    printf("M %d N %d K %d batch %d: %d algos\n", M, N, K, nb, found);
    for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < found; i++) {
      if (cublasLtMatmul(lt, op, &alpha, W, la, A, lb, &beta, C, lc, C, lc, &res[i].algo, ws, wsb, 0)) continue;
      for (int w = 0; w < 3; w++) cublasLtMatmul(lt, op, &alpha, W, la, A, lb, &beta, C, lc, C, lc, &res[i].algo, ws, wsb, 0);
      cudaEventRecord(e0);
      for (int r = 0; r < 20; r++) cublasLtMatmul(lt, op, &alpha, W, la, A, lb, &beta, C, lc, C, lc, &res[i].algo, ws, wsb, 0);
      cudaEventRecord(e1); cudaEventSynchronize(e1);
      float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= 20;
      int id = 0, tile = 0, stages = 0, sk = 0; size_t sz;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &sk, sizeof sk, &sz);
      if (pass) printf("  #%2d id %d tile %d stages %d splitk %d: %.4f ms %.0f TFLOP/s\n", i, id, tile, stages, sk, ms, flop / ms / 1e9);
    }
    cudaFree(A); cudaFree(W); cudaFree(C);
  }
  return 0;
}
