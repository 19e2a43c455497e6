// The search spaces. Values are chosen to bracket the heuristic default by a factor of two
// to four each way; the tuner's racing keeps the cost of the wide ones low.
#include "autotune/search_space.h"

#include <algorithm>

#include "support/json.h"

namespace fuseopt::autotune {

std::vector<Config> SearchSpace::all_configs() const {
  std::vector<Config> configs{Config{}};
  for (const Knob& knob : knobs) {
    std::vector<Config> next;
    for (const Config& partial : configs) {
      for (int64_t value : knob.values) {
        Config config = partial;
        config.set(knob.name, value);
        next.push_back(std::move(config));
      }
    }
    configs = std::move(next);
  }
  return configs;
}

SearchSpace cpu_search_space(const CpuDescription& cpu) {
  SearchSpace space;
  space.backend = "cpu";
  std::vector<int64_t> threads = {1};
  if (cpu.logical_cores >= 4) threads.push_back(cpu.logical_cores / 2);
  if (cpu.logical_cores >= 2) threads.push_back(0);  // every core
  space.knobs = {
      {kVectorKnob, {4, 8, 16}},
      {kUnrollKnob, {1, 2, 4}},
      {kChunkKnob, {4096, 16384, 65536, 262144}},
      {kThreadsKnob, threads},
  };
  space.default_config = cpu_config(codegen::default_cpu_schedule());
  space.stages = {{kVectorKnob, kUnrollKnob}, {kChunkKnob, kThreadsKnob}};
  return space;
}

SearchSpace cuda_search_space(const GpuDescription& gpu) {
  SearchSpace space;
  space.backend = "cuda";
  std::vector<int64_t> blocks = {128, 256, 512, 1024};
  (void)gpu;  // every SM since Volta takes 1024-thread blocks
  space.knobs = {
      {"block", blocks},
      {"items", {1, 2, 4, 8}},
  };
  space.default_config = Config{{"block", 256}, {"items", 4}};
  space.stages = {{"block", "items"}};
  return space;
}

std::vector<Config> stage_candidates(const SearchSpace& space, size_t stage,
                                     const Config& incumbent) {
  std::vector<Config> result{incumbent};
  if (stage >= space.stages.size()) return result;
  const std::vector<std::string>& free = space.stages[stage];
  for (const Config& config : space.all_configs()) {
    bool same_elsewhere = true;
    for (const auto& [name, value] : config.knobs()) {
      if (std::find(free.begin(), free.end(), name) != free.end()) continue;
      if (incumbent.find(name) != value) same_elsewhere = false;
    }
    if (same_elsewhere && std::find(result.begin(), result.end(), config) == result.end()) {
      result.push_back(config);
    }
  }
  return result;
}

Config cpu_equivalence_key(const Config& config, int64_t elements, int64_t tensors,
                           int logical_cores) {
  Config key = config;
  tensors = std::max<int64_t>(1, tensors);
  const int64_t per_tensor = std::max<int64_t>(1, (elements + tensors - 1) / tensors);
  const int64_t chunk = std::min(config.get(kChunkKnob), per_tensor);
  key.set(kChunkKnob, chunk);
  const int64_t chunks = tensors * ((per_tensor + chunk - 1) / chunk);
  const int64_t threads = config.get(kThreadsKnob);
  const int64_t effective = threads == 0 ? std::max(1, logical_cores) : threads;
  key.set(kThreadsKnob, std::min(effective, chunks));
  return key;
}

support::Sha256Digest search_space_hash(const SearchSpace& space) {
  support::JsonWriter w;
  w.begin_object();
  w.key("backend").value(space.backend);
  w.key("default").value(space.default_config.to_json());
  w.key("knobs").begin_array();
  for (const Knob& knob : space.knobs) {
    w.begin_object().key("name").value(knob.name).key("values").begin_array();
    for (int64_t value : knob.values) w.value(value);
    w.end_array().end_object();
  }
  w.end_array();
  w.key("stages").begin_array();
  for (const auto& stage : space.stages) {
    w.begin_array();
    for (const std::string& name : stage) w.value(name);
    w.end_array();
  }
  w.end_array();
  w.end_object();
  return support::sha256(w.str());
}

}  // namespace fuseopt::autotune
