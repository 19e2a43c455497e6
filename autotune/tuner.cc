// The measurement protocol (docs/autotuning.md, "The protocol"), stage by stage:
//   1. prepare (compile) and check every config against the reference; failures are out;
//   2. warm up each survivor and choose its iterations per sample;
//   3. rounds of one sample per config (restore, one untimed settling step, then the timed
//      steps), in a new random order each round (interleaving spreads drift over all
//      configs); after the first rounds, and every few rounds
//      after, prune (successive halving); stop when the finalists' samples are stable;
//   4. the stage's winner (lowest median; the incumbent on a tie) becomes the incumbent of
//      the next stage.
// Then a paired shootout of the final winner against the default: the winner must beat it
// by more than the noise, otherwise the default stays.
#include "autotune/tuner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "support/error.h"

namespace fuseopt::autotune {

const char* status_name(CandidateStatus status) {
  switch (status) {
    case CandidateStatus::kOk:
      return "ok";
    case CandidateStatus::kCompileError:
      return "compile_error";
    case CandidateStatus::kRuntimeError:
      return "runtime_error";
    case CandidateStatus::kMismatch:
      return "mismatch";
    case CandidateStatus::kNotMeasured:
      return "timeout";
  }
  return "?";
}

const CandidateResult* TuneResult::find(const Config& config) const {
  for (const CandidateResult& candidate : candidates) {
    if (candidate.config == config) return &candidate;
  }
  return nullptr;
}

struct Tuner::Entry {
  CandidateResult result;
  bool alive = false;
  SampleStats stats;  // of result.samples, refreshed after each sample
};

namespace {

// Samples a config needs before its median may decide anything.
constexpr int64_t kMinRankSamples = 3;

// What prepare() and check() said about a config, kept across stages.
struct Verdict {
  CandidateStatus status = CandidateStatus::kOk;
  std::string message;
};

}  // namespace

Tuner::Tuner(TuningDevice& device, Clock& clock, Protocol protocol)
    : device_(device), clock_(clock), protocol_(protocol), rng_state_(protocol.seed | 1) {}

std::string Tuner::spell(const Config& config) const {
  return spell_ ? spell_(config) : config.describe();
}

void Tuner::report(double fraction, size_t stage, size_t stages, const std::string& activity) {
  if (!progress_) return;
  TuneProgress progress;
  const double elapsed = deadline_ > start_ ? (clock_.now() - start_) / (deadline_ - start_) : 0;
  progress.fraction = std::clamp(std::max(fraction, elapsed), 0.0, 1.0);
  progress.stage = stage;
  progress.stages = stages;
  progress.activity = activity;
  progress_(progress);
}

void Tuner::warm_up(Entry& entry) {
  device_.restore(entry.result.config);
  std::vector<double> times;
  const double begin = clock_.now();
  // Untimed runs until both minimums are met (bounded, for configs that take no time).
  while (static_cast<int>(times.size()) < protocol_.warmup_runs ||
         (clock_.now() - begin < protocol_.warmup_seconds && times.size() < 10000)) {
    const double t0 = clock_.now();
    device_.run(entry.result.config, 1);
    times.push_back(clock_.now() - t0);
  }
  // The first run pays for page faults and cold caches: estimate from the others.
  times.erase(times.begin());
  const double estimate = median_of(times);
  int64_t iterations = protocol_.max_iterations;
  if (estimate > 0) {
    // (1 - 1e-6): 1 ms / 0.1 ms is 10, not the 11 that rounding errors of the clock give.
    iterations = static_cast<int64_t>(
        std::ceil(protocol_.min_sample_seconds / estimate * (1 - 1e-6)));
  }
  entry.result.iterations = std::clamp<int64_t>(iterations, 1, protocol_.max_iterations);
}

bool Tuner::sample(Entry& entry) {
  try {
    device_.restore(entry.result.config);
    if (protocol_.settle_runs > 0) device_.run(entry.result.config, protocol_.settle_runs);
    const double t0 = clock_.now();
    device_.run(entry.result.config, entry.result.iterations);
    const double t1 = clock_.now();
    entry.result.samples.push_back((t1 - t0) / static_cast<double>(entry.result.iterations));
    entry.stats = summarize(entry.result.samples);
    ++samples_;
    return true;
  } catch (const std::exception& error) {
    entry.result.status = CandidateStatus::kRuntimeError;
    entry.result.message = error.what();
    entry.alive = false;
    return false;
  }
}

void Tuner::prune(std::vector<Entry*>& alive, const Entry* incumbent) const {
  std::vector<Entry*> ranked;
  for (Entry* entry : alive) {
    if (!entry->result.samples.empty()) ranked.push_back(entry);
  }
  if (ranked.size() < 2) return;
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const Entry* a, const Entry* b) { return a->stats.median < b->stats.median; });
  const Entry* best = ranked.front();
  const size_t keep = std::max<size_t>(
      1, static_cast<size_t>(std::ceil(static_cast<double>(ranked.size()) * protocol_.keep_fraction)));
  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    Entry* entry = ranked[rank];
    const bool close = entry->stats.p20 <= (1 + protocol_.prune_slack) * best->stats.p80;
    if (entry == incumbent || rank < keep || close) continue;
    entry->alive = false;
    entry->result.pruned = true;
  }
  std::erase_if(alive, [](const Entry* e) { return !e->alive; });
}

void Tuner::race(std::vector<Entry>& entries, double deadline, size_t stage, size_t stages) {
  const double stage_base = static_cast<double>(stage) / static_cast<double>(stages);
  const double stage_share = 1.0 / static_cast<double>(stages);
  std::vector<Entry*> alive;
  for (Entry& entry : entries) {
    if (entry.alive) alive.push_back(&entry);
  }
  Entry* incumbent = entries.empty() ? nullptr : &entries.front();

  size_t warmed = 0;
  for (Entry* entry : alive) {
    report(stage_base + stage_share * 0.2 * static_cast<double>(warmed++) /
                            static_cast<double>(alive.size()),
           stage, stages, "warming up " + spell(entry->result.config));
    try {
      warm_up(*entry);
    } catch (const std::exception& error) {
      entry->result.status = CandidateStatus::kRuntimeError;
      entry->result.message = error.what();
      entry->alive = false;
    }
  }
  std::erase_if(alive, [](const Entry* e) { return !e->alive; });

  for (int round = 0; !alive.empty(); ++round) {
    if (round >= protocol_.first_round_samples) {
      bool all_stable = true;
      bool all_full = true;
      for (const Entry* entry : alive) {
        const int64_t n = entry->stats.count;
        all_stable = all_stable && n >= protocol_.min_samples &&
                     entry->stats.rel_spread() <= protocol_.target_spread;
        all_full = all_full && n >= protocol_.max_samples;
      }
      if (all_stable || all_full || alive.size() == 1) break;
    }
    // A new order every round (Fisher-Yates with xorshift64): interleaving.
    std::vector<Entry*> order = alive;
    for (size_t i = order.size(); i > 1; --i) {
      rng_state_ ^= rng_state_ << 13;
      rng_state_ ^= rng_state_ >> 7;
      rng_state_ ^= rng_state_ << 17;
      std::swap(order[i - 1], order[rng_state_ % i]);
    }
    bool sampled = false;
    for (Entry* entry : order) {
      const bool over = clock_.now() >= deadline;
      // Past the deadline only the incumbent still gets its minimum: it is the reference.
      if (over && !(entry == incumbent && entry->stats.count < kMinRankSamples)) continue;
      sampled = sample(*entry) || sampled;
    }
    std::erase_if(alive, [](const Entry* e) { return !e->alive; });
    if (!sampled) break;

    // Hopeless configs leave at once: their fastest sample is far slower than the best
    // median.
    double best_median = 0;
    for (const Entry* entry : alive) {
      if (entry->stats.count >= 2 && (best_median == 0 || entry->stats.median < best_median)) {
        best_median = entry->stats.median;
      }
    }
    for (Entry* entry : alive) {
      if (entry != incumbent && entry->stats.count >= 2 && best_median > 0 &&
          entry->stats.min > protocol_.hopeless_factor * best_median) {
        entry->alive = false;
        entry->result.pruned = true;
      }
    }
    std::erase_if(alive, [](const Entry* e) { return !e->alive; });

    const int after_first = round + 1 - protocol_.first_round_samples;
    if (after_first == 0 || (after_first > 0 && protocol_.prune_every_rounds > 0 &&
                             after_first % protocol_.prune_every_rounds == 0)) {
      prune(alive, incumbent);
    }
    const double work = std::min(1.0, static_cast<double>(round + 1) /
                                          static_cast<double>(protocol_.max_samples));
    report(stage_base + stage_share * (0.2 + 0.8 * work), stage, stages,
           "measuring " + std::to_string(alive.size()) + " configs");
  }
}

TuneResult Tuner::tune(const SearchSpace& space, double budget_seconds) {
  start_ = clock_.now();
  deadline_ = start_ + std::max(0.0, budget_seconds);
  samples_ = 0;
  TuneResult out;
  out.default_config = space.default_config;

  auto key_of = [&](const Config& config) { return key_of_ ? key_of_(config) : config; };
  std::map<Config, Verdict> verdicts;            // by key
  std::map<Config, CandidateResult> best_runs;   // by config
  auto remember = [&](const CandidateResult& result) {
    auto found = best_runs.find(result.config);
    if (found == best_runs.end() || result.samples.size() >= found->second.samples.size()) {
      best_runs[result.config] = result;
    }
  };

  const size_t stages = std::max<size_t>(1, space.stages.size());
  Config incumbent = space.default_config;
  for (size_t stage = 0; stage < stages; ++stage) {
    std::vector<Config> configs = space.stages.empty()
                                      ? space.all_configs()
                                      : stage_candidates(space, stage, incumbent);
    if (space.stages.empty()) {
      std::erase(configs, incumbent);
      configs.insert(configs.begin(), incumbent);
    }
    configs = without_equivalents(configs, key_of);

    // This stage's share of what is left; the last stage leaves a third for the shootout.
    const double now = clock_.now();
    const double stage_deadline =
        now + std::max(0.0, deadline_ - now) / (static_cast<double>(stages - stage) + 0.5);

    std::vector<Entry> entries(configs.size());
    for (size_t i = 0; i < configs.size(); ++i) {
      Entry& entry = entries[i];
      entry.result.config = configs[i];
      entry.result.stage = static_cast<int>(stage);
      const Config key = key_of(configs[i]);
      auto known = verdicts.find(key);
      if (known == verdicts.end()) {
        if (i > 0 && clock_.now() >= stage_deadline) {
          out.budget_exhausted = true;
          continue;  // not measured
        }
        report((static_cast<double>(stage) + 0.2 * static_cast<double>(i) /
                                                  static_cast<double>(configs.size())) /
                   static_cast<double>(stages),
               stage, stages, "compiling " + spell(configs[i]));
        Verdict verdict;
        try {
          device_.prepare(configs[i]);
        } catch (const std::exception& error) {
          verdict = {CandidateStatus::kCompileError, error.what()};
        }
        if (verdict.status == CandidateStatus::kOk) {
          try {
            std::string mismatch = device_.check(configs[i]);
            if (!mismatch.empty()) verdict = {CandidateStatus::kMismatch, std::move(mismatch)};
          } catch (const std::exception& error) {
            verdict = {CandidateStatus::kRuntimeError, error.what()};
          }
        }
        known = verdicts.emplace(key, verdict).first;
      }
      entry.result.status = known->second.status;
      entry.result.message = known->second.message;
      entry.alive = entry.result.status == CandidateStatus::kOk;
    }

    race(entries, stage_deadline, stage, stages);
    if (clock_.now() >= stage_deadline) out.budget_exhausted = true;

    // The stage's winner: the lowest median, unless it does not beat the incumbent by
    // min_gain (then the incumbent, which the default started as, stays).
    const Entry* best = nullptr;
    for (const Entry& entry : entries) {
      if (entry.result.status != CandidateStatus::kOk || entry.stats.count < kMinRankSamples) {
        continue;
      }
      if (best == nullptr || entry.stats.median < best->stats.median) best = &entry;
    }
    const Entry& first = entries.front();
    const bool incumbent_ranked =
        first.result.status == CandidateStatus::kOk && first.stats.count >= kMinRankSamples;
    if (best != nullptr && best != &first && incumbent_ranked &&
        best->stats.median >= first.stats.median * (1 - protocol_.min_gain)) {
      best = &first;
    }
    // A config not reached in this stage keeps what an earlier stage measured of it.
    for (const Entry& entry : entries) {
      const bool reached = entry.result.status != CandidateStatus::kNotMeasured;
      if (reached || best_runs.find(entry.result.config) == best_runs.end()) {
        remember(entry.result);
      }
    }
    if (best != nullptr) incumbent = best->result.config;
  }

  // The paired shootout: alternate default and winner, one sample each per pair, so slow
  // drift hits both alike; rank by the median ratio against its standard error.
  Config winner = incumbent;
  const auto default_run = best_runs.find(space.default_config);
  const bool default_ok = default_run != best_runs.end() &&
                          default_run->second.status == CandidateStatus::kOk &&
                          static_cast<int64_t>(default_run->second.samples.size()) >= kMinRankSamples;
  if (!(winner == space.default_config) && default_ok) {
    Entry champion;
    champion.result = best_runs[winner];
    Entry reference;
    reference.result = default_run->second;
    std::vector<double> ratios, reference_times, champion_times;
    report(0.97, stages - 1, stages, "confirming " + spell(winner) + " against the default");
    for (int pair = 0; pair < protocol_.shootout_pairs; ++pair) {
      if (clock_.now() >= deadline_ && pair >= 3) break;
      Entry* order[2] = {&reference, &champion};
      if (pair % 2 == 1) std::swap(order[0], order[1]);
      const size_t before_reference = reference.result.samples.size();
      const size_t before_champion = champion.result.samples.size();
      if (!sample(*order[0]) || !sample(*order[1])) break;
      const double t_reference = reference.result.samples.back();
      const double t_champion = champion.result.samples.back();
      // Shootout samples are not the race's: keep the stored runs as they were.
      reference.result.samples.resize(before_reference);
      champion.result.samples.resize(before_champion);
      if (t_reference > 0) ratios.push_back(t_champion / t_reference);
      reference_times.push_back(t_reference);
      champion_times.push_back(t_champion);
    }
    out.shootout_pairs = static_cast<int>(ratios.size());
    if (!ratios.empty()) {
      out.shootout_default_median = median_of(reference_times);
      out.shootout_winner_median = median_of(champion_times);
    }
    bool accept = false;
    if (champion.result.status != CandidateStatus::kOk) {
      accept = false;
    } else if (ratios.size() >= 3) {
      const double gain = 1 - median_of(ratios);
      const double standard_error =
          1.2533 * robust_stddev(ratios) / std::sqrt(static_cast<double>(ratios.size()));
      accept = gain > std::max(protocol_.min_gain, 2 * standard_error);
      if (accept) out.gain = gain;
    } else {
      // No time for pairs: only a clear separation of the race's samples counts.
      const SampleStats a = summarize(best_runs[winner].samples);
      const SampleStats d = summarize(default_run->second.samples);
      accept = a.p80 < d.p20 * (1 - protocol_.min_gain);
      if (accept) out.gain = 1 - a.median / d.median;
    }
    if (!accept) winner = space.default_config;
  }
  out.winner = winner;

  for (auto& [config, result] : best_runs) out.candidates.push_back(std::move(result));
  if (const CandidateResult* d = out.find(space.default_config);
      d != nullptr && !d->samples.empty()) {
    out.default_stats = d->stats();
  }
  if (const CandidateResult* w = out.find(out.winner);
      w != nullptr && w->status == CandidateStatus::kOk && !w->samples.empty()) {
    out.winner_stats = w->stats();
  }
  out.samples = samples_;
  out.seconds = clock_.now() - start_;
  report(1.0, stages - 1, stages, "done");
  return out;
}

}  // namespace fuseopt::autotune
