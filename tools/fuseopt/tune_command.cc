// `fuseopt tune RULE... [--sizes N,...] [--budget SECONDS] [--backend cpu|cuda]`: measures the
// configurations of each rule's search space on this machine (docs/autotuning.md) and records
// every measurement and the winners in the cache, with a progress bar on a terminal and plain
// lines otherwise; then a summary of the winner against the default per size.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "autotune/cache_location.h"
#include "autotune/fingerprint.h"
#include "autotune/kernel_store.h"
#include "autotune/size_bucket.h"
#include "frontend/rule.h"
#include "support/error.h"
#include "support/json.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

constexpr int64_t kMaxTuneSize = int64_t{1} << 32;

// "65536", "64K", "16M", "1G" (binary multiples).
int64_t parse_size(const std::string& text) {
  std::string digits = text;
  int64_t scale = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k':
      case 'K':
        scale = int64_t{1} << 10;
        break;
      case 'm':
      case 'M':
        scale = int64_t{1} << 20;
        break;
      case 'g':
      case 'G':
        scale = int64_t{1} << 30;
        break;
      default:
        break;
    }
    if (scale != 1) digits.pop_back();
  }
  const int64_t value = parse_integer(digits, "size '" + text + "' in --sizes", 1, kMaxTuneSize / scale);
  return value * scale;
}

std::vector<int64_t> parse_sizes(const std::string& list) {
  std::vector<int64_t> sizes;
  size_t begin = 0;
  while (begin <= list.size()) {
    const size_t comma = list.find(',', begin);
    const std::string item = list.substr(begin, comma == std::string::npos ? std::string::npos
                                                                           : comma - begin);
    if (item.empty()) throw UserError("--sizes takes a comma-separated list of sizes, not '" + list + "'");
    sizes.push_back(parse_size(item));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  return sizes;
}

std::string format_time(std::optional<double> ns) {
  if (!ns) return "-";
  char text[32];
  if (*ns < 1e3) {
    std::snprintf(text, sizeof text, "%.0f ns", *ns);
  } else if (*ns < 1e6) {
    std::snprintf(text, sizeof text, "%.1f us", *ns / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.2f ms", *ns / 1e6);
  }
  return text;
}

// Left-aligned in `width` columns, and at least one space after it whatever its length.
std::string pad(std::string text, size_t width) {
  text += ' ';
  if (text.size() < width) text.resize(width, ' ');
  return text;
}

std::string spelling(const autotune::Config& config) {
  return config.empty() ? "-" : autotune::cpu_spelling(config);
}

// The progress display: a bar redrawn in place on a terminal, a line per size otherwise.
class Progress {
 public:
  explicit Progress(bool terminal) : terminal_(terminal) {}
  ~Progress() { clear(); }

  void start(const std::string& rule, int64_t size, size_t index, size_t count) {
    label_ = rule + " n=" + std::to_string(size) + " (" + std::to_string(index + 1) + "/" +
             std::to_string(count) + ")";
    if (!terminal_) std::cerr << "tune: " << label_ << ": measuring\n";
  }

  void update(const autotune::TuneEvent& event) {
    if (!terminal_) return;
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(std::lround(event.progress.fraction * kWidth));
    std::string line = "\r[" + std::string(static_cast<size_t>(filled), '#') +
                       std::string(static_cast<size_t>(kWidth - filled), '.') + "] " +
                       std::to_string(static_cast<int>(event.progress.fraction * 100)) + "% " +
                       label_ + " " + event.progress.activity;
    if (line.size() > 100) line.resize(100);
    const size_t shown = line.size();
    if (shown < width_) line += std::string(width_ - shown, ' ');
    width_ = shown;
    std::cerr << line << std::flush;
  }

  void finish(const autotune::KeyReport& report) {
    clear();
    std::cerr << "tune: " << label_ << ": " << outcome_line(report) << "\n";
  }

  static std::string outcome_line(const autotune::KeyReport& report) {
    using Outcome = autotune::KeyReport::Outcome;
    switch (report.outcome) {
      case Outcome::kAlreadyTuned:
        return "already tuned (--force tunes again)";
      case Outcome::kTunedElsewhere:
        return "tuned by another process meanwhile";
      case Outcome::kNoValidConfig:
        return "no configuration passed its correctness check" +
               (report.message.empty() ? std::string() : " (default: " + report.message + ")");
      case Outcome::kTuned: {
        char text[160];
        std::snprintf(text, sizeof text, "%s in %.1f s (%lld configs, %lld samples%s)",
                      report.winner == report.default_config ? "default kept" : "tuned",
                      report.seconds, static_cast<long long>(report.configs_measured),
                      static_cast<long long>(report.samples),
                      report.budget_exhausted ? ", budget reached" : "");
        return text;
      }
    }
    return "?";
  }

 private:
  void clear() {
    if (terminal_ && width_ > 0) {
      std::cerr << "\r" << std::string(width_, ' ') << "\r" << std::flush;
      width_ = 0;
    }
  }

  bool terminal_;
  std::string label_;
  size_t width_ = 0;
};

// Timings taken on a busy machine are noisy: say so once, before measuring.
void warn_if_busy() {
  std::FILE* file = std::fopen("/proc/loadavg", "r");
  if (file == nullptr) return;
  double load = 0;
  const bool read = std::fscanf(file, "%lf", &load) == 1;
  std::fclose(file);
  const int cores = autotune::host_cpu().logical_cores;
  if (read && load > 0.5 * cores + 0.5) {
    char text[200];
    std::snprintf(text, sizeof text,
                  "fuseopt: warning: this machine is busy (load %.1f on %d cores): timings will "
                  "be noisy, and a busy machine may favour other configurations than a quiet one\n",
                  load, cores);
    std::cerr << text;
  }
}

struct RuleReports {
  std::string rule;
  std::string options;
  std::vector<autotune::KeyReport> reports;
};

void print_summary(const std::vector<RuleReports>& all) {
  std::cout << pad("rule", 14) << pad("size", 11) << pad("bucket", 13) << pad("default", 28)
            << pad("tuned", 28) << pad("speedup", 9) << "time\n";
  for (const RuleReports& r : all) {
    for (const autotune::KeyReport& k : r.reports) {
      std::string speedup = "-";
      if (k.default_ns && k.winner_ns && *k.winner_ns > 0) {
        char text[32];
        std::snprintf(text, sizeof text, "%.2fx", *k.default_ns / *k.winner_ns);
        speedup = text;
      }
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.1f s", k.seconds);
      const std::string bucket = k.problem_key.substr(2, k.problem_key.find('|') - 2);
      std::cout << pad(r.rule, 14) << pad(std::to_string(k.size), 11) << pad(bucket, 13)
                << pad(spelling(k.default_config) + " " + format_time(k.default_ns), 28)
                << pad(spelling(k.winner) + " " + format_time(k.winner_ns), 28)
                << pad(speedup, 9) << seconds;
      if (k.outcome != autotune::KeyReport::Outcome::kTuned) {
        std::cout << "  (" << Progress::outcome_line(k) << ")";
      } else if (k.winner == k.default_config) {
        std::cout << "  (nothing beat the default beyond noise)";
      }
      std::cout << "\n";
    }
  }
}

void print_json(const std::vector<RuleReports>& all, const std::string& cache_path) {
  support::JsonWriter w(2);
  w.begin_object().key("cache").value(cache_path).key("results").begin_array();
  for (const RuleReports& r : all) {
    for (const autotune::KeyReport& k : r.reports) {
      w.begin_object();
      w.key("rule").value(r.rule);
      w.key("options").value(r.options);
      w.key("size").value(k.size);
      w.key("problem_key").value(k.problem_key);
      w.key("outcome").value(Progress::outcome_line(k));
      w.key("default").value(spelling(k.default_config));
      w.key("winner").value(spelling(k.winner));
      w.key("default_ns");
      k.default_ns ? w.value(*k.default_ns) : w.null();
      w.key("winner_ns");
      k.winner_ns ? w.value(*k.winner_ns) : w.null();
      w.key("gain").value(k.gain);
      w.key("seconds").value(k.seconds);
      w.key("configs_measured").value(k.configs_measured);
      w.key("configs_rejected").value(k.configs_rejected);
      w.key("samples").value(k.samples);
      w.key("measurements").value(k.measurements);
      w.key("saved").value(k.saved);
      w.key("bytes_per_element").value(k.bytes_per_element);
      w.end_object();
    }
  }
  w.end_array().end_object();
  std::cout << w.str() << "\n";
}

}  // namespace

CommandSpec tune_spec() {
  return {
      .name = "tune",
      .synopsis = "RULE... [--sizes N,...] [--budget SECONDS] [--backend cpu|cuda] "
                  "[--option NAME=VALUE]... [--tensors K] [--target T] [--force] [--json]",
      .description =
          "Measures the configurations of each rule's search space on this machine and records\n"
          "every measurement and the winner per size bucket in the cache (see 'fuseopt cache').\n"
          "Each candidate is first checked against the reference interpreter; the winner must\n"
          "beat the default configuration beyond the measured noise. Sizes default to\n"
          "65536, 1M and 16M elements; sizes already tuned on this machine are skipped unless\n"
          "--force is given. Another process tuning the same size is waited for.\n",
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = -1,
      .flags =
          {
              {"--sizes", FlagKind::kValue, "N,...",
               "element counts to tune for (K, M, G suffixes allowed)"},
              {"--budget", FlagKind::kValue, "SECONDS",
               "time for the whole run, shared by its sizes (default: 20 s per size)"},
              {"--backend", FlagKind::kValue, "B", "cpu (default) or cuda"},
              {"--option", FlagKind::kRepeated, "NAME=VALUE",
               "set an option: true, false or an integer (repeatable)"},
              {"--tensors", FlagKind::kValue, "K", "tensors the elements are split into (1)"},
              {"--target", FlagKind::kValue, "T",
               "CPU target: host, x86-64-v2, x86-64-v3, x86-64-v4 or a Halide target"},
              {"--force", FlagKind::kSwitch, "", "tune sizes that are already tuned again"},
              {"--json", FlagKind::kSwitch, "", "print the results as JSON"},
          },
  };
}

int run_tune(const Args& args) {
  const std::string backend = args.value_or("--backend", "cpu");
  if (backend == "cuda") {
    throw EnvironmentError("tuning for cuda needs the cuda backend, which this build does not "
                           "have yet; use --backend cpu");
  }
  if (backend != "cpu" && backend != "auto") {
    throw UserError("--backend must be cpu or cuda, not '" + backend + "'");
  }
  autotune::TuneSettings settings;
  settings.sizes = args.has("--sizes") ? parse_sizes(*args.value("--sizes"))
                                       : autotune::kDefaultTuneSizes;
  settings.tensors = args.has("--tensors")
                         ? parse_integer(*args.value("--tensors"), "--tensors", 1, 1 << 20)
                         : 1;
  for (int64_t size : settings.sizes) {
    if (size < settings.tensors) {
      throw UserError("size " + std::to_string(size) + " cannot be split into " +
                      std::to_string(settings.tensors) + " tensors");
    }
  }
  settings.force = args.has("--force");
  settings.cpu_target = args.value_or("--target", "host");
  std::optional<double> total_budget;
  if (args.has("--budget")) {
    total_budget = parse_number(*args.value("--budget"), "--budget");
    if (*total_budget <= 0) throw UserError("--budget must be a positive number of seconds");
  }
  const auto overrides = parse_assignments(args.values("--option"), "--option");

  // Every rule is checked and compiled to IR before anything is measured.
  struct Job {
    std::string name;
    std::string options;
    ir::Kernel kernel;
  };
  std::vector<Job> jobs;
  for (const std::string& name : args.positionals()) {
    const frontend::Rule rule = frontend::load_rule(name);
    const auto options = rule.resolve_options(overrides);
    jobs.push_back({rule.name(), describe_options(options), compile_rule(rule, options)});
  }

  warn_if_busy();
  autotune::KernelStore& store = autotune::default_kernel_store();
  const bool json = args.has("--json");
  Progress progress(!json && isatty(STDERR_FILENO) == 1);
  std::vector<RuleReports> all;
  const size_t keys = jobs.size() * settings.sizes.size();
  size_t done = 0;
  double spent = 0;
  for (const Job& job : jobs) {
    RuleReports reports{job.name, job.options, {}};
    for (size_t i = 0; i < settings.sizes.size(); ++i) {
      autotune::TuneSettings one = settings;
      one.sizes = {settings.sizes[i]};
      if (total_budget) {
        // What is left, shared by the sizes still to tune: time a size does not use goes
        // to the ones after it.
        one.budget_seconds = std::max(0.0, *total_budget - spent) / static_cast<double>(keys - done);
      }
      progress.start(job.name, settings.sizes[i], i, settings.sizes.size());
      const auto report =
          store.tune_cpu(job.kernel, one, [&](const autotune::TuneEvent& e) { progress.update(e); });
      progress.finish(report[0]);
      spent += report[0].seconds;
      ++done;
      reports.reports.push_back(report[0]);
    }
    all.push_back(std::move(reports));
  }

  const std::string cache_path = store.cache().path();
  const bool saved = store.cache().can_write();
  if (json) {
    print_json(all, saved ? cache_path : "");
  } else {
    print_summary(all);
    if (saved) {
      std::cout << "recorded in " << cache_path << "\n";
    } else {
      const autotune::CacheLocation location = autotune::cache_location();
      std::cout << "not recorded: "
                << (location.disabled_because.empty() ? "the cache cannot be written"
                                                      : "caching is off (" + location.disabled_because + ")")
                << "\n";
    }
  }
  return 0;
}

}  // namespace fuseopt::tools
