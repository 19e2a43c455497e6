// The storage types of support/low_precision.h as CUDA C device functions: widening loads,
// round-to-nearest-even and stochastic stores, and the counter-based random stream. The same
// integer and float operations as the C++ definition, so a kernel's bits match the
// interpreter's (tests/codegen_cuda/storage_functions_test.cc compiles this text as host C++
// and compares it value by value, and compiles it with NVRTC).
#pragma once

#include <string>

#include "support/low_precision.h"

namespace fuseopt::codegen {

/// The CUDA C source of the device functions, with no includes: it needs only
/// __float_as_uint, __uint_as_float and floorf. Defines
///   float fuseopt_bf16_to_float(unsigned short), fuseopt_f16_to_float(unsigned short);
///   unsigned short fuseopt_float_to_bf16(float), fuseopt_float_to_f16(float);
///   unsigned short fuseopt_float_to_bf16_sr(float, unsigned int),
///                  fuseopt_float_to_f16_sr(float, unsigned int);
///   unsigned int fuseopt_mix32(unsigned int), fuseopt_rounding_random(unsigned int key,
///                                                                    unsigned int index);
///   unsigned int fuseopt_rounding_index_high(unsigned int upper) (rounding_index_high of an
///     index whose upper 32 bits are `upper`),
///   unsigned int fuseopt_rounding_random_split(unsigned int key, unsigned int low,
///     unsigned int high) (rounding_random(key, index) for low = the index's lower 32 bits and
///     high = fuseopt_rounding_index_high(its upper 32 bits)).
const std::string& cuda_storage_functions();

/// The C type a buffer of `type` is stored as in generated CUDA: "float" or "unsigned short".
const char* cuda_storage_c_type(StorageType type);
/// The expression that widens `stored` (of cuda_storage_c_type(type)) to float.
std::string cuda_widen_expression(StorageType type, const std::string& stored);
/// The expression that rounds float `value` to `type`; `random` (an unsigned int expression)
/// only when `stochastic`.
std::string cuda_round_expression(StorageType type, const std::string& value, bool stochastic,
                                  const std::string& random = "");

}  // namespace fuseopt::codegen
