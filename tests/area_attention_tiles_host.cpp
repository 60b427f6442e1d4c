// Host entry point to csrc/area_attention_tiles.h for the CPU model of the attention kernel
// (tests/test_cuda_kernel_model.py loads it with ctypes): the kernel's own tile sizes and index
// formulas, compiled by g++ instead of nvcc.
//
//   int y12t_eval(const char* name, const int64_t* args, int nargs, int64_t count, int64_t* out)
//
// evaluates the header's function `name` on `count` rows of `nargs` int64 arguments (argument k of
// row i at args[k * count + i]) into out[i] (a bool as 0/1). Returns 0, -1 for an unknown name,
// -2 for a wrong argument count. y12t_name(i) lists the names (nullptr past the end).
#include <cstdint>
#include <cstring>

#include "area_attention_tiles.h"

namespace {

using namespace y12::attn;
using Fn = int64_t (*)(const int64_t*);

struct Entry {
  const char* name;
  int nargs;
  Fn fn;
};

#define I(k) static_cast<int>(a[k])
#define B(k) (a[k] != 0)
#define L(k) a[k]
#define FN(name, nargs, expr) {#name, nargs, [](const int64_t* a) -> int64_t { return (expr); }}

const Entry kTable[] = {
    FN(warps, 1, warps(I(0))),
    FN(threads, 1, threads(I(0))),
    FN(block_m, 1, block_m(I(0))),
    FN(block_n, 1, block_n(I(0))),
    FN(max_regs, 1, max_regs(I(0))),
    FN(stages, 1, stages(I(0))),
    FN(query_tiles, 2, query_tiles(L(0), I(1))),
    FN(key_tiles, 2, key_tiles(L(0), I(1))),
    FN(pad, 0, pad()),
    FN(tile_row, 2, tile_row(I(0), B(1))),
    FN(tile_elems, 2, tile_elems(I(0), B(1))),
    FN(smem_index, 4, smem_index(I(0), I(1), I(2), B(3))),
    FN(problem_head, 2, problem_head(L(0), L(1))),
    FN(problem_area, 3, problem_area(L(0), L(1), L(2))),
    FN(problem_batch, 3, problem_batch(L(0), L(1), L(2))),
    FN(area_first_token, 2, area_first_token(L(0), L(1))),
    FN(base_offset, 6, base_offset(L(0), L(1), L(2), L(3), L(4), L(5))),
    FN(token_dim_offset, 4, token_dim_offset(L(0), I(1), L(2), L(3))),
    FN(key_in_area, 2, key_in_area(L(0), L(1))),
    FN(row_in_area, 2, row_in_area(L(0), L(1))),
    FN(chunks_per_line, 2, chunks_per_line(I(0), B(1))),
    FN(chunk_count, 2, chunk_count(I(0), B(1))),
    FN(chunk_line, 3, chunk_line(I(0), I(1), B(2))),
    FN(chunk_col, 3, chunk_col(I(0), I(1), B(2))),
    FN(chunk_key, 4, chunk_key(L(0), I(1), I(2), B(3))),
    FN(chunk_src, 6, chunk_src(L(0), I(1), I(2), L(3), L(4), B(5))),
    FN(elem_count, 1, elem_count(I(0))),
    FN(elem_line, 3, elem_line(I(0), I(1), B(2))),
    FN(elem_col, 3, elem_col(I(0), I(1), B(2))),
    FN(elem_key, 3, elem_key(I(0), I(1), B(2))),
    FN(elem_dim, 3, elem_dim(I(0), I(1), B(2))),
    FN(mode_scalar, 0, mode_scalar()),
    FN(mode_vector, 0, mode_vector()),
    FN(token_major, 2, token_major(L(0), L(1))),
    FN(load_mode, 7, load_mode(B(0), B(1), L(2), L(3), L(4), L(5), L(6))),
    FN(vec_store, 5, vec_store(B(0), L(1), L(2), L(3), L(4))),
    FN(lane_group, 1, lane_group(I(0))),
    FN(lane_in_group, 1, lane_in_group(I(0))),
    FN(ldm_matrix, 1, ldm_matrix(I(0))),
    FN(ldm_row, 1, ldm_row(I(0))),
    FN(row_shuffles, 0, row_shuffles()),
    FN(row_shuffle_mask, 1, row_shuffle_mask(I(0))),
    FN(warp_first_row, 3, warp_first_row(L(0), I(1), I(2))),
    FN(q_frag_row, 3, q_frag_row(L(0), I(1), I(2))),
    FN(q_frag_col, 3, q_frag_col(I(0), I(1), I(2))),
    FN(k_frag_trans, 1, k_frag_trans(B(0))),
    FN(k_frag_offset, 5, k_frag_offset(I(0), B(1), I(2), I(3), I(4))),
    FN(score_key, 3, score_key(I(0), I(1), I(2))),
    FN(keys_left, 3, keys_left(L(0), L(1), I(2))),
    FN(key_valid, 2, key_valid(I(0), I(1))),
    FN(v_frag_trans, 1, v_frag_trans(B(0))),
    FN(v_frag_offset, 5, v_frag_offset(I(0), B(1), I(2), I(3), I(4))),
    FN(acc_row, 3, acc_row(L(0), I(1), I(2))),
    FN(acc_col, 2, acc_col(I(0), I(1))),
};

}  // namespace

extern "C" int y12t_eval(const char* name, const int64_t* args, int nargs, int64_t count,
                         int64_t* out) {
  for (const Entry& e : kTable) {
    if (std::strcmp(e.name, name) != 0) continue;
    if (e.nargs != nargs) return -2;
    int64_t row[8];
    for (int64_t i = 0; i < count; ++i) {
      for (int k = 0; k < nargs; ++k) row[k] = args[k * count + i];
      out[i] = e.fn(row);
    }
    return 0;
  }
  return -1;
}

extern "C" const char* y12t_name(int i) {
  return i >= 0 && i < static_cast<int>(sizeof(kTable) / sizeof(kTable[0])) ? kTable[i].name
                                                                              : nullptr;
}
