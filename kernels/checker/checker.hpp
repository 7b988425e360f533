// moecheck device checker: launch API of the batch kernels that generate counter cases on the
// device, poison their outputs, and judge the fused kernel's outputs row by row with the fp64
// device oracle (kernels/checker/row_check.hpp). Raw device pointers; every launcher returns the
// cudaError_t of its launch (cudaGetLastError right after it). Design: DESIGN.md, "Device checker".
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/checker/counter_gen.hpp"
#include "kernels/checker/row_check.hpp"

namespace moecheck::checker {

/// Guard elements before and after each case's outputs (harness/core/target.hpp's
/// kOutputGuardElements) and their fill.
constexpr std::int64_t kCkGuardElements = 64;
constexpr std::uint32_t kCkGuardWeightBits = 0x7fa5a5a5u;
constexpr std::int32_t kCkGuardId = static_cast<std::int32_t>(0xa5a5a5a5u);

/// One case of a batch and where its buffers live in the batch's flat buffers.
struct BatchCase {
  CounterCaseDesc desc;
  std::int64_t storage_byte = 0;   ///< byte offset of its gating storage in the storage buffer
  std::int64_t out_begin = 0;      ///< first output element (guard included) in weights / ids
  std::int64_t scale_begin = 0;    ///< first element of its scale in the scale buffer (prefix)
  std::int64_t row_begin = 0;      ///< first flat row index (prefix over cases)
  std::int32_t has_scale = 0;      ///< 1: E scale elements at scale_begin; 0: none (all ones)
  std::int32_t reserved = 0;
};

/// Largest k a row record holds (kernels::kMaxK).
constexpr int kRecordMaxK = 32;

/// A row the device flagged, or a row sampled for the host: the row's outputs and the
/// device verdict.
struct RowRecord {
  std::int32_t case_slot = 0;  ///< index of the case in the batch
  std::int32_t code = 0;       ///< CheckCode (kCheckOk for a passing sampled row)
  std::int64_t row = 0;        ///< row in the case (-1: a guard)
  std::int32_t slot = -1;
  std::int32_t k = 0;
  float weights[kRecordMaxK];
  std::int32_t ids[kRecordMaxK];
};

/// Buffers and parameters of one check launch (device pointers).
struct CheckLaunch {
  const BatchCase* cases = nullptr;
  std::int32_t n_cases = 0;
  std::int64_t rows_total = 0;
  const std::uint8_t* storage = nullptr;
  const float* weights = nullptr;
  const std::int32_t* ids = nullptr;
  const float* scale = nullptr;
  CheckPrecision precision{};
  std::int32_t mutant = kCheckerCorrect;
  std::uint32_t sample_one_in = 1000;   ///< host-sample rate (see counter_sampled_row)
  RowRecord* fails = nullptr;           ///< first `fail_capacity` flagged rows
  std::uint32_t fail_capacity = 0;
  std::uint32_t* fail_count = nullptr;  ///< all flagged rows (may exceed the capacity)
  RowRecord* samples = nullptr;         ///< sampled rows, any order
  std::uint32_t sample_capacity = 0;
  std::uint32_t* sample_count = nullptr;
  std::uint32_t* case_classes = nullptr;     ///< [n_cases] ClassBit union over the case's rows
  std::uint32_t* case_fail_count = nullptr;  ///< [n_cases] flagged rows per case
};

/// Writes every case's gating storage (values and gap fill), its scale (gemma4 with a scale
/// family other than ones) and its outputs (guard fill around poison) for a batch. rows_total:
/// the batch's rows (the sum of T); storage_total, out_total, scale_total: its storage, output
/// and scale elements.
cudaError_t launch_counter_generate(const BatchCase* cases, std::int32_t n_cases, std::int64_t rows_total,
                                    std::int64_t storage_total, std::int64_t out_total, std::int64_t scale_total, std::uint8_t* storage,
                                    float* weights, std::int32_t* ids, float* scale, cudaStream_t stream);

/// Judges every row of the batch (one thread per row) and every case's guards; the counters in
/// `p` must be zero before the launch.
cudaError_t launch_device_check(const CheckLaunch& p, cudaStream_t stream);

}  // namespace moecheck::checker
