// Trains logistic regression on generated data with two fuseopt rules, adam and
// adamomentum, compiled for the CPU, and prints the loss as training goes.
//
//   build/release/examples/logistic_regression
//
// The model's weights and bias are plain arrays this program owns; the optimizer updates
// them in place from the gradients the program computes.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "api/fuseopt.h"

namespace {

constexpr int kSamples = 2048;
constexpr int kFeatures = 32;

struct Dataset {
  std::vector<float> x;  // kSamples x kFeatures, row-major
  std::vector<float> y;  // 0 or 1
};

// Labels come from a hidden linear rule plus noise, so a good model exists.
Dataset make_dataset() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> true_w(kFeatures);
  for (float& w : true_w) w = normal(rng);
  Dataset data{std::vector<float>(kSamples * kFeatures), std::vector<float>(kSamples)};
  for (int i = 0; i < kSamples; ++i) {
    float z = 0.5f;
    for (int j = 0; j < kFeatures; ++j) {
      data.x[i * kFeatures + j] = normal(rng);
      z += true_w[j] * data.x[i * kFeatures + j];
    }
    data.y[i] = (z + 0.5f * normal(rng)) > 0 ? 1.0f : 0.0f;
  }
  return data;
}

// Mean binary cross-entropy and its gradient with respect to w and b.
float loss_and_gradient(const Dataset& data, const std::vector<float>& w, float b,
                        std::vector<float>& grad_w, float& grad_b) {
  std::fill(grad_w.begin(), grad_w.end(), 0.0f);
  grad_b = 0;
  double loss = 0;
  for (int i = 0; i < kSamples; ++i) {
    float z = b;
    for (int j = 0; j < kFeatures; ++j) z += w[j] * data.x[i * kFeatures + j];
    const float p = 1.0f / (1.0f + std::exp(-z));
    loss -= data.y[i] * std::log(p + 1e-7f) + (1 - data.y[i]) * std::log(1 - p + 1e-7f);
    const float d = (p - data.y[i]) / kSamples;
    for (int j = 0; j < kFeatures; ++j) grad_w[j] += d * data.x[i * kFeatures + j];
    grad_b += d;
  }
  return static_cast<float>(loss / kSamples);
}

void train(const char* rule, const Dataset& data) {
  std::vector<float> w(kFeatures, 0.0f), grad_w(kFeatures);
  float b = 0, grad_b = 0;

  fuseopt::CompileOptions options;
  options.backend = fuseopt::Backend::kCpu;
  fuseopt::Optimizer optimizer = fuseopt::make_optimizer(rule, options, {{"lr", 0.05}});
  optimizer.add_tensor(w.data(), grad_w.data(), kFeatures);
  optimizer.add_tensor(&b, &grad_b, 1);

  std::printf("%s (%s)\n", rule, optimizer.kernel().name.c_str());
  for (int step = 0; step <= 200; ++step) {
    const float loss = loss_and_gradient(data, w, b, grad_w, grad_b);
    if (step % 25 == 0) std::printf("  step %3d  loss %.4f\n", step, loss);
    optimizer.step();
  }
}

}  // namespace

int main() {
  try {
    const Dataset data = make_dataset();
    train("adam", data);
    train("adamomentum", data);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "logistic_regression: %s\n", e.what());
    return 1;
  }
}
