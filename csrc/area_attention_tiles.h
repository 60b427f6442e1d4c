// Tile sizes and index formulas of the area-attention kernel (area_attention.cu), in one place.
//
// The kernel reads every address, mask and tile size through these functions, and
// tests/test_cuda_kernel_model.py compiles this same header on the host (g++, through
// tests/area_attention_tiles_host.cpp) and runs its CPU model of the kernel through them: a change
// here is what the CPU test checks, on a machine without a GPU. What stays in the .cu (which
// register feeds which MMA operand, the online softmax, the instructions themselves) is checked
// by the GPU tests (tests/test_cuda_backend.py). Plain integer arithmetic on values, no pointers
// or CUDA types: host and device code alike. Every function here is used by the kernel and
// exposed to the host model (tests/test_cuda_kernel_model.py checks both).
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define Y12_TILE_FN __host__ __device__ __forceinline__ constexpr
#else
#define Y12_TILE_FN inline constexpr
#endif

namespace y12 {
namespace attn {

// ---- tile sizes per head_dim d --------------------------------------------------------------
// d = 32 (every YOLOv12 scale): 5 warps, 80 query rows and 80-key tiles, at most 200 registers so
// that two CTAs of 160 threads share an SM's 64K registers (__launch_bounds__(160, 2) would cap
// at 168, where it spills: ptxas counts 5 warps as 6 there). d = 64: the 16 x 64 O accumulator
// leaves no room for a 16 x 80 score tile, so 4 warps, 64 x 64 tiles and up to 255 registers.
Y12_TILE_FN int warps(int d) { return d <= 32 ? 5 : 4; }
Y12_TILE_FN int threads(int d) { return 32 * warps(d); }
Y12_TILE_FN int block_m(int d) { return 16 * warps(d); }       // query rows per CTA
Y12_TILE_FN int block_n(int d) { return d <= 32 ? 80 : 64; }   // keys per shared-memory tile
Y12_TILE_FN int max_regs(int d) { return d <= 32 ? 200 : 255; }
// K/V tiles in flight: double-buffered with cp.async on sm_80+, one buffer on sm_75 (no cp.async)
Y12_TILE_FN int stages(int arch) { return arch >= 800 ? 2 : 1; }
// the grid's query tiles (blockIdx.y) and the key tiles each CTA walks, for n tokens per area
Y12_TILE_FN int64_t query_tiles(int64_t n, int d) { return (n + block_m(d) - 1) / block_m(d); }
Y12_TILE_FN int64_t key_tiles(int64_t n, int d) { return (n + block_n(d) - 1) / block_n(d); }
// elements of padding per shared row: row strides of 80, 144 and 176 bytes put the 8 rows of
// every 8x8 ldmatrix in 8 different 16-byte bank groups, and keep rows 16-byte aligned
Y12_TILE_FN int pad() { return 8; }

// ---- the shared K/V tile: [key][d] (tm = false) or [d][key] (tm, "token-major") -------------
Y12_TILE_FN int tile_row(int d, bool tm) { return tm ? block_n(d) + pad() : d + pad(); }
Y12_TILE_FN int tile_elems(int d, bool tm) { return (tm ? d : block_n(d)) * tile_row(d, tm); }
Y12_TILE_FN int smem_index(int line, int col, int d, bool tm) {  // shared row `line`, column
  return line * tile_row(d, tm) + col;
}

// ---- a problem = one (batch, area, head); its first token and its tensors' base offsets ------
Y12_TILE_FN int64_t problem_head(int64_t prob, int64_t heads) { return prob % heads; }
Y12_TILE_FN int64_t problem_area(int64_t prob, int64_t heads, int64_t areas) {
  return (prob / heads) % areas;
}
Y12_TILE_FN int64_t problem_batch(int64_t prob, int64_t heads, int64_t areas) {
  return (prob / heads) / areas;
}
Y12_TILE_FN int64_t area_first_token(int64_t area, int64_t n) { return area * n; }
Y12_TILE_FN int64_t base_offset(int64_t b, int64_t h, int64_t tok0, int64_t sb, int64_t sh,
                                int64_t st) {
  return b * sb + h * sh + tok0 * st;
}
// element (token, dim) of a [token][dim] matrix with strides st, sd: Q loads, element-wise K/V
// loads, output stores
Y12_TILE_FN int64_t token_dim_offset(int64_t tok, int dim, int64_t st, int64_t sd) {
  return tok * st + dim * sd;
}
Y12_TILE_FN bool key_in_area(int64_t key, int64_t n) { return key < n; }  // else loaded as zero
Y12_TILE_FN bool row_in_area(int64_t row, int64_t n) { return row < n; }  // else never stored

// ---- loading keys [r0, r0 + block_n) into a tile ---------------------------------------------
// kVector: 16-byte copies of 8 consecutive elements along the contiguous dimension (d, or tokens
// when tm: n % 8 == 0 there, so a chunk is all inside the area or all outside)
Y12_TILE_FN int chunks_per_line(int d, bool tm) { return (tm ? block_n(d) : d) / 8; }
Y12_TILE_FN int chunk_count(int d, bool tm) {
  return (tm ? d : block_n(d)) * chunks_per_line(d, tm);
}
Y12_TILE_FN int chunk_line(int i, int d, bool tm) { return i / chunks_per_line(d, tm); }
Y12_TILE_FN int chunk_col(int i, int d, bool tm) { return (i % chunks_per_line(d, tm)) * 8; }
Y12_TILE_FN int64_t chunk_key(int64_t r0, int line, int col, bool tm) {
  return r0 + (tm ? col : line);
}
Y12_TILE_FN int64_t chunk_src(int64_t key, int line, int col, int64_t st, int64_t sd, bool tm) {
  return tm ? key + line * sd : key * st + col;
}
// kScalar: element i, consecutive threads along the unit-stride dimension
Y12_TILE_FN int elem_count(int d) { return block_n(d) * d; }
Y12_TILE_FN int elem_line(int i, int d, bool tm) { return tm ? i / block_n(d) : i / d; }
Y12_TILE_FN int elem_col(int i, int d, bool tm) { return tm ? i % block_n(d) : i % d; }
Y12_TILE_FN int elem_key(int line, int col, bool tm) { return tm ? col : line; }
Y12_TILE_FN int elem_dim(int line, int col, bool tm) { return tm ? line : col; }

// ---- which layout and load mode (chosen on the host, uniform per launch) ---------------------
Y12_TILE_FN int mode_scalar() { return 0; }
Y12_TILE_FN int mode_vector() { return 1; }
// The shared layout follows K: [d][key] when K's token axis has unit stride and its dim axis does
// not (the model's qkv), else [key][d] (the drop-in tensors, and views without a unit stride).
Y12_TILE_FN bool token_major(int64_t k_st, int64_t k_sd) { return k_st == 1 && k_sd != 1; }
// kVector when every 8-element chunk along the layout's contiguous dimension is one aligned
// 16-byte copy for every (batch, head, area): the base pointer (`aligned16`), the batch and head
// strides and the other dimension's stride multiples of 8 elements, and for token chunks also the
// area's first token (a * n, so n % 8 == 0).
Y12_TILE_FN int load_mode(bool tm, bool aligned16, int64_t sb, int64_t st, int64_t sh, int64_t sd,
                          int64_t n) {
  return !aligned16 || sb % 8 != 0 || sh % 8 != 0 ? mode_scalar()
         : tm ? (st == 1 && sd % 8 == 0 && n % 8 == 0 ? mode_vector() : mode_scalar())
              : (sd == 1 && st % 8 == 0 ? mode_vector() : mode_scalar());
}
// the output stores two neighbouring dims as one 4-byte word: unit dim stride, the row start
// (`aligned4`) and the batch, head and token strides even
Y12_TILE_FN bool vec_store(bool aligned4, int64_t sb, int64_t st, int64_t sh, int64_t sd) {
  return sd == 1 && aligned4 && sb % 2 == 0 && sh % 2 == 0 && st % 2 == 0;
}

// ---- lanes and MMA fragments (m16n8k16; the PTX ISA's fragment tables) ------------------------
Y12_TILE_FN int lane_group(int lane) { return lane / 4; }     // g: fragment row
Y12_TILE_FN int lane_in_group(int lane) { return lane % 4; }  // t: fragment column pair
Y12_TILE_FN int ldm_matrix(int lane) { return lane / 8; }     // ldmatrix.x4: the matrix
Y12_TILE_FN int ldm_row(int lane) { return lane % 8; }        // and the row this lane addresses
// the 4 lanes of a fragment row exchange with xor 1 and xor 2
Y12_TILE_FN int row_shuffles() { return 2; }
Y12_TILE_FN int row_shuffle_mask(int step) { return 1 << step; }
Y12_TILE_FN int64_t warp_first_row(int64_t tile_y, int warp, int d) {
  return tile_y * block_m(d) + warp * 16;
}
// Q (the A operand, straight from global memory): register r of k-step ks holds row
// m0 + g (+8 for r = 1, 3), columns 2t, 2t + 1 (+8 for r = 2, 3)
Y12_TILE_FN int64_t q_frag_row(int64_t m0, int g, int r) { return m0 + g + ((r & 1) ? 8 : 0); }
Y12_TILE_FN int q_frag_col(int ks, int t, int r) { return ks * 16 + 2 * t + ((r & 2) ? 8 : 0); }
// S = Q K^T, B = K^T: one ldmatrix.x4 gives b0, b1 of k-steps 2 k32 and 2 k32 + 1; matrix mi
// covers dims k32 * 32 + 8 mi .. + 7 and keys nb * 8 .. + 7. [d][key] is read transposed.
Y12_TILE_FN bool k_frag_trans(bool tm) { return tm; }
Y12_TILE_FN int k_frag_offset(int d, bool tm, int k32, int nb, int lane) {
  return tm ? smem_index(k32 * 32 + ldm_matrix(lane) * 8 + ldm_row(lane), nb * 8, d, tm)
            : smem_index(nb * 8 + ldm_row(lane), k32 * 32 + ldm_matrix(lane) * 8, d, tm);
}
// S accumulator element i of 8-key block nb: key nb * 8 + 2t + (i & 1) of the tile, row g (i < 2)
// or g + 8; keys from `keys_left` on are past the area's end and masked to -inf
Y12_TILE_FN int score_key(int nb, int t, int i) { return nb * 8 + 2 * t + (i & 1); }
Y12_TILE_FN int keys_left(int64_t n, int64_t n0, int d) {
  return n - n0 < block_n(d) ? static_cast<int>(n - n0) : block_n(d);
}
Y12_TILE_FN bool key_valid(int key, int keys_left) { return key < keys_left; }
// O += P V, B = V: one ldmatrix.x4 gives b0, b1 of dim blocks 2 dp and 2 dp + 1; matrix mi covers
// keys kk * 16 + 8 (mi & 1) .. + 7 and dims (2 dp + mi / 2) * 8 .. + 7. [key][d] is read
// transposed.
Y12_TILE_FN bool v_frag_trans(bool tm) { return !tm; }
Y12_TILE_FN int v_frag_offset(int d, bool tm, int kk, int dp, int lane) {
  return tm ? smem_index((2 * dp + ldm_matrix(lane) / 2) * 8 + ldm_row(lane),
                         kk * 16 + (ldm_matrix(lane) & 1) * 8, d, tm)
            : smem_index(kk * 16 + (ldm_matrix(lane) & 1) * 8 + ldm_row(lane),
                         (2 * dp + ldm_matrix(lane) / 2) * 8, d, tm);
}
// the O accumulator (and S): elements 2r, 2r + 1 of dim block db are row m0 + g + 8r, dims
// db * 8 + 2t and + 1
Y12_TILE_FN int64_t acc_row(int64_t m0, int g, int r) { return m0 + g + 8 * r; }
Y12_TILE_FN int acc_col(int db, int t) { return db * 8 + 2 * t; }

}  // namespace attn
}  // namespace y12
