// Configs as canonical JSON and as CPU schedules.
#include "autotune/config.h"

#include <charconv>

#include "support/error.h"
#include "support/json.h"

namespace fuseopt::autotune {

int64_t Config::get(const std::string& name) const {
  auto found = knobs_.find(name);
  FUSEOPT_CHECK(found != knobs_.end(), "config " + to_json() + " has no knob '" + name + "'");
  return found->second;
}

std::optional<int64_t> Config::find(const std::string& name) const {
  auto found = knobs_.find(name);
  if (found == knobs_.end()) return std::nullopt;
  return found->second;
}

std::string Config::to_json() const {
  support::JsonWriter w;
  w.begin_object();
  for (const auto& [name, value] : knobs_) w.key(name).value(value);
  w.end_object();
  return w.str();
}

std::optional<Config> Config::from_json(std::string_view text) {
  // The grammar of to_json(): '{' ( '"' name '"' ':' integer ( ',' ... )* )? '}'.
  Config config;
  size_t i = 0;
  auto expect = [&](char c) {
    if (i < text.size() && text[i] == c) {
      ++i;
      return true;
    }
    return false;
  };
  if (!expect('{')) return std::nullopt;
  if (expect('}')) return i == text.size() ? std::optional<Config>(config) : std::nullopt;
  while (true) {
    if (!expect('"')) return std::nullopt;
    const size_t name_end = text.find('"', i);
    if (name_end == std::string_view::npos || name_end == i) return std::nullopt;
    const std::string name(text.substr(i, name_end - i));
    if (name.find('\\') != std::string::npos) return std::nullopt;
    i = name_end + 1;
    if (!expect(':')) return std::nullopt;
    int64_t value = 0;
    const auto result = std::from_chars(text.data() + i, text.data() + text.size(), value);
    if (result.ec != std::errc() || result.ptr == text.data() + i) return std::nullopt;
    i = static_cast<size_t>(result.ptr - text.data());
    if (config.knobs_.count(name) != 0) return std::nullopt;
    config.knobs_[name] = value;
    if (expect('}')) break;
    if (!expect(',')) return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  return config;
}

support::Sha256Digest Config::hash() const { return support::sha256(to_json()); }

std::string Config::describe() const {
  std::string text;
  for (const auto& [name, value] : knobs_) {
    if (!text.empty()) text += ' ';
    text += name + "=" + std::to_string(value);
  }
  return text;
}

Config cpu_config(const codegen::CpuSchedule& schedule) {
  return Config{{kVectorKnob, schedule.vector_width},
                {kUnrollKnob, schedule.unroll},
                {kChunkKnob, schedule.chunk_elements},
                {kThreadsKnob, schedule.threads}};
}

codegen::CpuSchedule cpu_schedule(const Config& config) {
  const auto vector = config.find(kVectorKnob);
  const auto unroll = config.find(kUnrollKnob);
  const auto chunk = config.find(kChunkKnob);
  const auto threads = config.find(kThreadsKnob);
  if (!vector || !unroll || !chunk || !threads) {
    throw UserError("'" + config.to_json() + "' is not a CPU configuration (it needs vector, "
                    "unroll, chunk and threads)");
  }
  codegen::CpuSchedule schedule;
  schedule.vector_width = static_cast<int>(*vector);
  schedule.unroll = static_cast<int>(*unroll);
  schedule.chunk_elements = *chunk;
  schedule.threads = static_cast<int>(*threads);
  return schedule;
}

Config cpu_code_config(const Config& config) {
  return Config{{kVectorKnob, config.get(kVectorKnob)}, {kUnrollKnob, config.get(kUnrollKnob)}};
}

std::string cpu_spelling(const Config& config) {
  return "v" + std::to_string(config.get(kVectorKnob)) + "_u" +
         std::to_string(config.get(kUnrollKnob)) + "_c" + std::to_string(config.get(kChunkKnob)) +
         "_t" + std::to_string(config.get(kThreadsKnob));
}

}  // namespace fuseopt::autotune
