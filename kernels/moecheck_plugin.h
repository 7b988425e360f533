/* moecheck plugin ABI, versions 1 and 2: external routing implementations loaded with dlopen
 * and fuzzed exactly like the built-in ones.
 *
 * Plain C99 (also valid C++). A version-1 plugin is a shared object exporting one symbol,
 *
 *     const moecheck_plugin_desc_v1* moecheck_plugin_v1(void);
 *
 * that returns a pointer to a descriptor with static storage duration. The caller checks
 * `abi_version == MOECHECK_PLUGIN_ABI_VERSION` and `struct_size >= sizeof(its own view)`
 * before touching anything else; later ABI versions only append fields and export a new
 * entry point, so a version-1 loader keeps working.
 *
 * Version 2 appends the plugin's declared contract (moecheck_plugin_desc_v2, below): a plugin
 * exports
 *
 *     const moecheck_plugin_desc_v2* moecheck_plugin_v2(void);
 *
 * (and may also export moecheck_plugin_v1 for older loaders). moecheck looks for
 * moecheck_plugin_v2 first and checks `base.abi_version == MOECHECK_PLUGIN_ABI_VERSION_2` and
 * `base.struct_size >= sizeof(moecheck_plugin_desc_v2)`; plugins without it load as version 1
 * and are judged by the strict contract below.
 *
 * Routing contract (the same as moecheck's reference, reference/routing.hpp):
 *   gating G[T, E], element (t, e) at gating + (t * row_stride + e * col_stride) elements of
 *   `dtype`; for each row the k experts with the largest logits (NaN ranks as -inf, ties may
 *   be broken in any order), weights = family formula (gemma4: softmax over all E, top k,
 *   renormalise, times scale[id]; softmax_topk: same without scale; softmax_topk_raw: full
 *   softmax probability), an all -inf/NaN row gives weights 0, +inf logits share the mass.
 *   Outputs weights[T * k] (fp32) and ids[T * k] (int32), row-major contiguous, every element
 *   written. T may be 0 (nothing to do, pointers may be NULL).
 * This is the "strict" contract. A version-2 plugin may declare another one (NaN or +inf
 * zeroing the row, selection on fp32 probabilities, ties to the lowest index, ...; see
 * reference/CONTRACTS.md) and the inputs it takes: moecheck then judges its outputs by that
 * contract and never passes it input outside the declared layouts, alignment or size.
 */
#ifndef MOECHECK_PLUGIN_H
#define MOECHECK_PLUGIN_H

#include <stdint.h>

#define MOECHECK_PLUGIN_ABI_VERSION 1
/** Name of the exported entry point, for dlsym. */
#define MOECHECK_PLUGIN_ENTRY_V1 "moecheck_plugin_v1"
/** abi_version of a moecheck_plugin_desc_v2 descriptor. */
#define MOECHECK_PLUGIN_ABI_VERSION_2 2
/** Name of the version-2 entry point, for dlsym. */
#define MOECHECK_PLUGIN_ENTRY_V2 "moecheck_plugin_v2"

#if defined(_WIN32)
#define MOECHECK_PLUGIN_EXPORT __declspec(dllexport)
#else
#define MOECHECK_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Gating element types (values match moecheck::DType). */
enum moecheck_dtype { MOECHECK_DTYPE_F32 = 0, MOECHECK_DTYPE_F16 = 1, MOECHECK_DTYPE_BF16 = 2 };

/** Routing families (values match moecheck::Family). */
enum moecheck_family {
  MOECHECK_FAMILY_GEMMA4 = 0,
  MOECHECK_FAMILY_SOFTMAX_TOPK = 1,
  MOECHECK_FAMILY_SOFTMAX_TOPK_RAW = 2,
  MOECHECK_FAMILY_SIGMOID_GROUPED = 3,
  MOECHECK_FAMILY_SIGMOID_TOP1 = 4
};

/** Gating layouts, as moecheck classifies a view by its strides (reference/contract.hpp):
 *  contiguous: element (t, e) at t * E + e; padded: unit column stride, row stride > E;
 *  transposed: unit row stride, column stride >= T; strided: anything else. */
enum moecheck_layout {
  MOECHECK_LAYOUT_CONTIGUOUS = 0,
  MOECHECK_LAYOUT_PADDED = 1,
  MOECHECK_LAYOUT_TRANSPOSED = 2,
  MOECHECK_LAYOUT_STRIDED = 3
};

/** Where the pointers passed to route() live. */
enum moecheck_device { MOECHECK_DEVICE_HOST = 0, MOECHECK_DEVICE_CUDA = 1 };

/** Return codes of route(). Anything nonzero is an error; last_error() explains it. */
enum moecheck_status {
  MOECHECK_PLUGIN_OK = 0,
  MOECHECK_PLUGIN_INVALID_ARGUMENT = 1, /**< caller misuse (k > E, NULL pointer...) */
  MOECHECK_PLUGIN_UNSUPPORTED = 2,      /**< valid problem this plugin does not handle */
  MOECHECK_PLUGIN_INTERNAL_ERROR = 3    /**< the plugin failed (e.g. a CUDA error) */
};

/** Bit for value v in the dtypes / families / devices masks below. */
#define MOECHECK_PLUGIN_BIT(v) (1u << (unsigned)(v))

/**
 * Routes T rows. Strides are in elements (>= 0). scale is NULL (all ones) or [E] fp32 and is
 * only used by MOECHECK_FAMILY_GEMMA4. device == MOECHECK_DEVICE_CUDA: every pointer is a device
 * pointer and `stream` is the cudaStream_t to work on (the call may return before the work is
 * done; the caller synchronizes the stream); device == MOECHECK_DEVICE_HOST: host pointers,
 * stream is NULL and the outputs are complete on return.
 * Returns MOECHECK_PLUGIN_OK or an error code (outputs then unspecified).
 */
typedef int (*moecheck_route_fn_v1)(const void* gating, int64_t row_stride, int64_t col_stride,
                                    int32_t dtype, int64_t T, int32_t E, int32_t k,
                                    int32_t family, const float* scale, float* weights,
                                    int32_t* ids, int32_t device, void* stream);

/**
 * Message describing the last nonzero return of route() on the calling thread (never NULL;
 * "" when there was none). Valid until the next route() call on that thread.
 */
typedef const char* (*moecheck_last_error_fn_v1)(void);

/** Plugin descriptor, version 1. */
typedef struct moecheck_plugin_desc_v1 {
  uint32_t abi_version;   /**< MOECHECK_PLUGIN_ABI_VERSION */
  uint32_t struct_size;   /**< sizeof(moecheck_plugin_desc_v1) as the plugin was compiled */
  const char* name;       /**< short identifier, e.g. "example" */
  const char* version;    /**< free-form version string of the implementation */
  uint32_t dtypes;        /**< MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_*) of the supported dtypes */
  uint32_t families;      /**< MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_*) of the supported families */
  uint32_t devices;       /**< MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_*) of the supported devices */
  int32_t max_experts;    /**< largest E handled (0 = no limit) */
  int32_t max_k;          /**< largest k handled (0 = no limit) */
  moecheck_route_fn_v1 route;
  moecheck_last_error_fn_v1 last_error;
} moecheck_plugin_desc_v1;

/** Type of the exported entry point. */
typedef const moecheck_plugin_desc_v1* (*moecheck_plugin_entry_v1)(void);

/** The entry point every version-1 plugin defines (and exports with MOECHECK_PLUGIN_EXPORT). */
MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void);

/**
 * Plugin descriptor, version 2: the version-1 fields (base.abi_version =
 * MOECHECK_PLUGIN_ABI_VERSION_2, base.struct_size = sizeof(moecheck_plugin_desc_v2)) followed by
 * the plugin's declared contract. Later versions append after these fields.
 */
typedef struct moecheck_plugin_desc_v2 {
  moecheck_plugin_desc_v1 base;
  /** The routing contract its outputs follow: NULL or "" for the strict contract, the name of a
   *  built-in contract ("probability-ranked", "nan-zeroes-row",
   *  "dense-probability-nan-zeroes-row", "nan-propagates", ...), or the text of a contract file
   *  (reference/CONTRACTS.md; several "key = value" lines). */
  const char* contract;
  /** MOECHECK_PLUGIN_BIT(MOECHECK_LAYOUT_*) of the layouts route() takes (0 = all); narrows the
   *  contract's layouts. */
  uint32_t layouts;
  /** Bytes the gating base pointer must be aligned to (0 or 1 = none; at most 16); the larger of
   *  this and the contract's base_alignment applies. */
  uint32_t alignment;
  /** Largest T * E route() takes (0 = no limit); the smaller of this and the contract's
   *  max_elements applies. */
  int64_t max_elements;
} moecheck_plugin_desc_v2;

/** Type of the version-2 entry point. */
typedef const moecheck_plugin_desc_v2* (*moecheck_plugin_entry_v2)(void);

/** The entry point a version-2 plugin defines (and exports with MOECHECK_PLUGIN_EXPORT). */
MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v2* moecheck_plugin_v2(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOECHECK_PLUGIN_H */
