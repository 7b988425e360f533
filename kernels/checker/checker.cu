// moecheck device checker: the batch kernels of kernels/checker/checker.hpp.
#include "kernels/checker/checker.hpp"

namespace moecheck::checker {
namespace {

constexpr int kThreads = 256;

/// Case of flat index i: the last case whose `begin(case)` <= i (prefixes ascend).
template <class Begin>
__device__ int find_case(const BatchCase* cases, int n, std::int64_t i, Begin begin) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (begin(cases[mid]) <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/// One warp per row (grid-stride over the batch's flat rows): the row's keys, plateau and
/// row-level draws are made once (cg_row), then the lanes write its storage span
/// (counter_write_row: values and gaps, the bits of counter_storage_bits at every element).
__global__ void generate_rows_kernel(const BatchCase* __restrict__ cases, int n, std::int64_t rows_total,
                                     std::uint8_t* __restrict__ storage) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const std::int64_t warps = (static_cast<std::int64_t>(gridDim.x) * blockDim.x) / 32;
  for (std::int64_t r = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32; r < rows_total;
       r += warps) {
    const int c = find_case(cases, n, r, [](const BatchCase& b) { return b.row_begin; });
    const BatchCase& b = cases[c];
    // A copy in registers: the stores below could otherwise alias the descriptor's fields, and
    // every element would reload them from memory.
    const CounterCaseDesc d = b.desc;
    const std::int64_t t = r - b.row_begin;
    const std::int32_t dt = d.dtype;
    std::uint8_t* base = storage + b.storage_byte;
    counter_write_row(d, cg_row(d, t), lane, 32, [&](std::int64_t at, std::uint32_t bits) {
      if (dt == 0) {
        reinterpret_cast<std::uint32_t*>(base)[at] = bits;
      } else {
        reinterpret_cast<std::uint16_t*>(base)[at] = static_cast<std::uint16_t>(bits);
      }
    });
  }
}

__global__ void generate_outputs_kernel(const BatchCase* cases, int n, std::int64_t total, float* weights,
                                        std::int32_t* ids) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int c = find_case(cases, n, i, [](const BatchCase& b) { return b.out_begin; });
    const BatchCase& b = cases[c];
    const std::int64_t local = i - b.out_begin;
    const std::int64_t body = b.desc.T * b.desc.k;
    const bool guard = local < kCkGuardElements || local >= kCkGuardElements + body;
    weights[i] = __uint_as_float(guard ? kCkGuardWeightBits : kCkPoisonWeightBits);
    ids[i] = guard ? kCkGuardId : kCkPoisonId;
  }
}

__global__ void generate_scale_kernel(const BatchCase* cases, int n, std::int64_t total, float* scale) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int c = find_case(cases, n, i, [](const BatchCase& b) { return b.scale_begin; });
    scale[i] = counter_scale(cases[c].desc, i - cases[c].scale_begin);
  }
}

__device__ void store_record(RowRecord* list, std::uint32_t capacity, std::uint32_t* count, int case_slot,
                             std::int32_t code, std::int64_t row, std::int32_t slot, int k, const float* w,
                             const std::int32_t* id) {
  const std::uint32_t at = atomicAdd(count, 1u);
  if (at >= capacity) return;
  RowRecord& r = list[at];
  r.case_slot = case_slot;
  r.code = code;
  r.row = row;
  r.slot = slot;
  r.k = k;
  for (int j = 0; j < kRecordMaxK; ++j) {
    r.weights[j] = (w && j < k) ? w[j] : 0.0f;
    r.ids[j] = (id && j < k) ? id[j] : 0;
  }
}

/// Logit e of one row (x(e) of check_softmax_row). Rows of unit column stride that start on a
/// 16-byte boundary are read 16 bytes at a time (the checker walks a row in expert order, one
/// row per thread: a 2- or 4-byte load per expert would cost a cache wavefront per lane); the
/// last unit of a row may reach up to 15 bytes past it, inside the batch's storage (cases start
/// on 256-byte boundaries, and the buffer has 256 bytes of slack). Other rows: one load per call.
struct RowReader {
  const std::uint8_t* base;
  std::int64_t row_off, cs;
  std::int32_t dt;
  bool vec;
  mutable std::int64_t unit = -1;
  mutable uint4 buf;
  __device__ RowReader(const std::uint8_t* b, std::int64_t off, std::int64_t col_stride, std::int32_t dtype)
      : base(b), row_off(off), cs(col_stride), dt(dtype) {
    const std::int64_t elem = dt == 0 ? 4 : 2;
    vec = cs == 1 && (row_off * elem) % 16 == 0;
  }
  __device__ float operator()(std::int32_t e) const {
    if (!vec) {
      const std::int64_t at = row_off + e * cs;
      if (dt == 0) return reinterpret_cast<const float*>(base)[at];
      return cg_bits_value(reinterpret_cast<const std::uint16_t*>(base)[at], dt);
    }
    const int shift = dt == 0 ? 2 : 3;  // elements per 16-byte unit: 4 or 8
    const std::int64_t u = e >> shift;
    if (u != unit) {
      const std::int64_t byte = row_off * (dt == 0 ? 4 : 2) + u * 16;
      buf = *reinterpret_cast<const uint4*>(base + byte);
      unit = u;
    }
    const int w = dt == 0 ? (e & 3) : ((e & 7) >> 1);
    const std::uint32_t word = w == 0 ? buf.x : (w == 1 ? buf.y : (w == 2 ? buf.z : buf.w));
    if (dt == 0) return __uint_as_float(word);
    return cg_bits_value((e & 1) ? (word >> 16) : (word & 0xffffu), dt);
  }
  /// visit(e, x(e)) for e = 0 .. E - 1 in order (ck_scan): vector rows one 16-byte unit per
  /// step, its elements unpacked with constant indices.
  static constexpr bool kScans = true;
  template <class Visit>
  __device__ void scan(std::int32_t E, const Visit& visit) const {
    if (!vec) {
      for (std::int32_t e = 0; e < E; ++e) visit(e, (*this)(e));
      return;
    }
    const uint4* p = reinterpret_cast<const uint4*>(base + row_off * (dt == 0 ? 4 : 2));
    if (dt == 0) {
      for (std::int32_t e0 = 0; e0 < E; e0 += 4) {
        const uint4 u = p[e0 >> 2];
        const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (e0 + j < E) visit(e0 + j, __uint_as_float(w[j]));
        }
      }
      return;
    }
    for (std::int32_t e0 = 0; e0 < E; e0 += 8) {
      const uint4 u = p[e0 >> 3];
      const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const std::uint32_t h = (j & 1) ? (w[j >> 1] >> 16) : (w[j >> 1] & 0xffffu);
        if (e0 + j < E) visit(e0 + j, cg_bits_value(h, dt));
      }
    }
  }
};

__global__ void check_rows_kernel(CheckLaunch p) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < p.rows_total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int c = find_case(p.cases, p.n_cases, i, [](const BatchCase& b) { return b.row_begin; });
    const BatchCase& b = p.cases[c];
    const CounterCaseDesc& d = b.desc;
    const std::int64_t t = i - b.row_begin;
    const std::int32_t dt = d.dtype;
    const RowReader x(p.storage + b.storage_byte, t * d.row_stride, d.col_stride, dt);
    const std::int64_t out = b.out_begin + kCkGuardElements + t * d.k;
    const float* w = p.weights + out;
    const std::int32_t* id = p.ids + out;
    const float* scale = b.has_scale ? p.scale + b.scale_begin : nullptr;
    const RowVerdict v = check_softmax_row(d.family, dt, d.E, d.k, x, scale, w, id, p.precision, p.mutant);
    if (v.classes) atomicOr(p.case_classes + c, v.classes);
    if (v.code != kCheckOk) {
      atomicAdd(p.case_fail_count + c, 1u);
      store_record(p.fails, p.fail_capacity, p.fail_count, c, v.code, t, v.slot, d.k, w, id);
    }
    if (counter_sampled_row(d, t, p.sample_one_in)) {
      store_record(p.samples, p.sample_capacity, p.sample_count, c, v.code, t, v.slot, d.k, w, id);
    }
  }
}

/// One block per case: the guards before and after its weights and ids.
__global__ void check_guards_kernel(CheckLaunch p) {
  const int c = blockIdx.x;
  if (c >= p.n_cases) return;
  const BatchCase& b = p.cases[c];
  const std::int64_t body = b.desc.T * b.desc.k;
  __shared__ int damaged;
  if (threadIdx.x == 0) damaged = 0;
  __syncthreads();
  for (int g = threadIdx.x; g < 2 * kCkGuardElements; g += blockDim.x) {
    const std::int64_t local = g < kCkGuardElements ? g : kCkGuardElements + body + (g - kCkGuardElements);
    const std::int64_t at = b.out_begin + local;
    if (__float_as_uint(p.weights[at]) != kCkGuardWeightBits || p.ids[at] != kCkGuardId) atomicOr(&damaged, 1);
  }
  __syncthreads();
  if (threadIdx.x == 0 && damaged) {
    atomicAdd(p.case_fail_count + c, 1u);
    store_record(p.fails, p.fail_capacity, p.fail_count, c, kCheckGuard, -1, -1, 0, nullptr, nullptr);
  }
}

int blocks_for(std::int64_t n) {
  const std::int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

}  // namespace

cudaError_t launch_counter_generate(const BatchCase* cases, std::int32_t n_cases, std::int64_t rows_total,
                                    std::int64_t storage_total, std::int64_t out_total, std::int64_t scale_total, std::uint8_t* storage,
                                    float* weights, std::int32_t* ids, float* scale, cudaStream_t stream) {
  if (n_cases <= 0) return cudaSuccess;
  if (cases == nullptr || (storage_total > 0 && storage == nullptr) ||
      (out_total > 0 && (weights == nullptr || ids == nullptr)) || (scale_total > 0 && scale == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (storage_total > 0 && rows_total > 0) {
    generate_rows_kernel<<<blocks_for(rows_total * 32), kThreads, 0, stream>>>(cases, n_cases, rows_total, storage);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  if (out_total > 0) {
    generate_outputs_kernel<<<blocks_for(out_total), kThreads, 0, stream>>>(cases, n_cases, out_total, weights, ids);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  if (scale_total > 0) {
    generate_scale_kernel<<<blocks_for(scale_total), kThreads, 0, stream>>>(cases, n_cases, scale_total, scale);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t launch_device_check(const CheckLaunch& p, cudaStream_t stream) {
  if (p.n_cases <= 0) return cudaSuccess;
  if (p.cases == nullptr || p.fail_count == nullptr || p.sample_count == nullptr || p.case_classes == nullptr ||
      p.case_fail_count == nullptr || p.weights == nullptr || p.ids == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (p.rows_total > 0) {
    check_rows_kernel<<<blocks_for(p.rows_total), kThreads, 0, stream>>>(p);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  check_guards_kernel<<<p.n_cases, 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moecheck::checker
