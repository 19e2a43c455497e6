/* A hand-written stand-in for a shared object from codegen/halide, following the calling
 * convention of codegen/halide/cpu_codegen.h, for two tiny rules of cpu_binary_test.cc:
 *   single: param = param - lr * grad                      (1 phase)
 *   norm:   %r0 = sum(grad * grad); param = param - %0 * grad  (2 phases)
 * It rounds exactly as the interpreter does (built with -ffp-contract=off), so the loader
 * can be tested bit for bit without Halide. */
#include <HalideRuntime.h>
#include <stddef.h>

/* The variant build is another object whose single phase steps twice as far: loading both
 * must give two different kernels. */
#ifdef FUSEOPT_FAKE_VARIANT
#define LR_SCALE 2.0f
#else
#define LR_SCALE 1.0f
#endif

/* As codegen/halide's objects do: halide_error keeps the thread's last message, which the
 * loader reads through fuseopt_halide_last_error. */
static __thread char last_error[256];

const char* fuseopt_halide_last_error(void) { return last_error; }

static int fail(const char* message, int code) {
  size_t i = 0;
  for (; message[i] != 0 && i + 1 < sizeof(last_error); ++i) last_error[i] = message[i];
  last_error[i] = 0;
  return code;
}

static float* data(void* buffer) { return (float*)((halide_buffer_t*)buffer)->host; }
static int extent(void* buffer) { return ((halide_buffer_t*)buffer)->dim[0].extent; }

static int check_vector(void* buffer) {
  const halide_buffer_t* b = (const halide_buffer_t*)buffer;
  return b->dimensions == 1 && b->type.code == halide_type_float && b->type.bits == 32 &&
         b->dim[0].min == 0 && b->dim[0].stride == 1 && b->host != NULL;
}

/* argv: param, grad, &lr, param (out). Fails on 13 elements, to test error reporting. */
int fake_single_argv(void** args) {
  if (!check_vector(args[0]) || !check_vector(args[1]) || !check_vector(args[3])) {
    return fail("fake: bad buffer", -1);
  }
  const int n = extent(args[0]);
  if (n == 13) return fail("fake failure at 13 elements\n", -42);
  const float* p = data(args[0]);
  const float* g = data(args[1]);
  const float lr = LR_SCALE * *(const float*)args[2];
  float* out = data(args[3]);
  for (int i = 0; i < n; ++i) {
    const float step = lr * g[i];
    out[i] = p[i] - step;
  }
  return 0;
}

static const struct halide_filter_argument_t single_arguments[4] = {
    {"param", halide_argument_kind_input_buffer, 1, {halide_type_float, 32, 1}, NULL, NULL, NULL, NULL, NULL},
    {"grad", halide_argument_kind_input_buffer, 1, {halide_type_float, 32, 1}, NULL, NULL, NULL, NULL, NULL},
    {"lr", halide_argument_kind_input_scalar, 0, {halide_type_float, 32, 1}, NULL, NULL, NULL, NULL, NULL},
    {"param_out", halide_argument_kind_output_buffer, 1, {halide_type_float, 32, 1}, NULL, NULL, NULL, NULL, NULL},
};

static const struct halide_filter_metadata_t single_metadata = {1, 4, single_arguments, "x86-64-linux",
                                                         "fake_single"};

const struct halide_filter_metadata_t* fake_single_metadata(void) { return &single_metadata; }

/* The same function, declared (by its metadata) with a different argument count. */
int fake_wrong_argv(void** args) { return fake_single_argv(args); }

static const struct halide_filter_metadata_t wrong_metadata = {1, 3, single_arguments, "x86-64-linux",
                                                        "fake_wrong"};

const struct halide_filter_metadata_t* fake_wrong_metadata(void) { return &wrong_metadata; }

/* argv: param, grad, the 0-D f64 partial of sum(grad * grad). */
int fake_norm0_argv(void** args) {
  const halide_buffer_t* partial = (const halide_buffer_t*)args[2];
  if (!check_vector(args[0]) || !check_vector(args[1]) || partial->dimensions != 0 ||
      partial->type.code != halide_type_float || partial->type.bits != 64) {
    return fail("fake: bad buffer", -1);
  }
  const int n = extent(args[1]);
  const float* g = data(args[1]);
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const float square = g[i] * g[i];
    sum += (double)square;
  }
  *(double*)partial->host = sum;
  return 0;
}

/* argv: param, grad, &scale, param (out). */
int fake_norm1_argv(void** args) {
  const int n = extent(args[0]);
  const float* p = data(args[0]);
  const float* g = data(args[1]);
  const float scale = *(const float*)args[2];
  float* out = data(args[3]);
  for (int i = 0; i < n; ++i) {
    const float step = scale * g[i];
    out[i] = p[i] - step;
  }
  return 0;
}
