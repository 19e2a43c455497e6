// Configs, search spaces and size buckets: plain data with canonical spellings.
#include "autotune/config.h"

#include <gtest/gtest.h>

#include <set>

#include "autotune/search_space.h"
#include "autotune/size_bucket.h"
#include "support/error.h"

namespace fuseopt::autotune {
namespace {

TEST(ConfigTest, CanonicalJsonRoundTrips) {
  const Config c{{"vector", 8}, {"chunk", 16384}, {"unroll", -2}};
  EXPECT_EQ(c.to_json(), R"({"chunk":16384,"unroll":-2,"vector":8})");
  EXPECT_EQ(Config::from_json(c.to_json()), c);
  EXPECT_EQ(Config::from_json("{}"), Config{});
  EXPECT_EQ(c.hash(), support::sha256(c.to_json()));
  EXPECT_EQ(c.describe(), "chunk=16384 unroll=-2 vector=8");
}

TEST(ConfigTest, RejectsAnythingButItsOwnJson) {
  for (const char* bad : {"", "{", "}", "[]", R"({"a":})", R"({"a":1,})", R"({"a":1.5})",
                          R"({"a":1} )", R"({"a":1,"a":2})", R"({a:1})", R"({"":1})",
                          R"({"a":"1"})", R"({"a\"":1})", R"({"a":99999999999999999999})"}) {
    EXPECT_FALSE(Config::from_json(bad).has_value()) << bad;
  }
}

TEST(ConfigTest, CpuSchedulesConvertBothWays) {
  codegen::CpuSchedule schedule;
  schedule.vector_width = 16;
  schedule.unroll = 4;
  schedule.chunk_elements = 65536;
  schedule.threads = 3;
  const Config c = cpu_config(schedule);
  EXPECT_EQ(cpu_schedule(c), schedule);
  EXPECT_EQ(cpu_spelling(c), "v16_u4_c65536_t3");
  EXPECT_EQ(cpu_code_config(c), (Config{{"vector", 16}, {"unroll", 4}}));
  EXPECT_THROW(cpu_schedule(Config{{"vector", 8}}), UserError);
}

TEST(SearchSpaceTest, CpuSpaceHoldsItsDefaultAndIsAPlainProduct) {
  CpuDescription cpu;
  cpu.logical_cores = 8;
  const SearchSpace space = cpu_search_space(cpu);
  const std::vector<Config> all = space.all_configs();
  EXPECT_EQ(all.size(), 3u * 3u * 4u * 3u);  // threads 1, 4 and every core
  EXPECT_NE(std::find(all.begin(), all.end(), space.default_config), all.end());
  EXPECT_EQ(space.stages.size(), 2u);
  cpu.logical_cores = 1;
  EXPECT_EQ(cpu_search_space(cpu).all_configs().size(), 3u * 3u * 4u);
}

TEST(SearchSpaceTest, StageCandidatesVaryOnlyTheStagesKnobs) {
  CpuDescription cpu;
  cpu.logical_cores = 2;
  const SearchSpace space = cpu_search_space(cpu);
  const std::vector<Config> first = stage_candidates(space, 0, space.default_config);
  EXPECT_EQ(first.front(), space.default_config);
  EXPECT_EQ(first.size(), 9u);
  for (const Config& c : first) {
    EXPECT_EQ(c.get(kChunkKnob), space.default_config.get(kChunkKnob));
    EXPECT_EQ(c.get(kThreadsKnob), space.default_config.get(kThreadsKnob));
  }
  const std::vector<Config> second = stage_candidates(space, 1, space.default_config);
  EXPECT_EQ(second.size(), 8u);  // 4 chunks x {1 thread, every core}
}

TEST(SearchSpaceTest, EquivalentCpuConfigsShareAKey) {
  const Config small_chunk{{"vector", 8}, {"unroll", 1}, {"chunk", 4096}, {"threads", 0}};
  Config big_chunk = small_chunk;
  big_chunk.set(kChunkKnob, 262144);
  Config bigger_chunk = small_chunk;
  bigger_chunk.set(kChunkKnob, 65536);
  // 10000 elements: 65536 and 262144 both cut nothing, and then threads do not matter.
  EXPECT_EQ(cpu_equivalence_key(big_chunk, 10000, 1, 8),
            cpu_equivalence_key(bigger_chunk, 10000, 1, 8));
  EXPECT_NE(cpu_equivalence_key(small_chunk, 10000, 1, 8),
            cpu_equivalence_key(big_chunk, 10000, 1, 8));
  Config one_thread = big_chunk;
  one_thread.set(kThreadsKnob, 1);
  EXPECT_EQ(cpu_equivalence_key(one_thread, 10000, 1, 8), cpu_equivalence_key(big_chunk, 10000, 1, 8));
  // Large problems keep them apart.
  EXPECT_NE(cpu_equivalence_key(one_thread, 1 << 24, 1, 8), cpu_equivalence_key(big_chunk, 1 << 24, 1, 8));
  const std::vector<Config> kept = without_equivalents(
      {small_chunk, big_chunk, bigger_chunk},
      [](const Config& c) { return cpu_equivalence_key(c, 10000, 1, 8); });
  EXPECT_EQ(kept, (std::vector<Config>{small_chunk, big_chunk}));
}

TEST(SearchSpaceTest, HashChangesWithTheSpace) {
  CpuDescription cpu;
  cpu.logical_cores = 4;
  SearchSpace space = cpu_search_space(cpu);
  const auto before = search_space_hash(space);
  EXPECT_EQ(before, search_space_hash(cpu_search_space(cpu)));
  space.knobs[0].values.push_back(32);
  EXPECT_NE(before, search_space_hash(space));
}

TEST(SizeBucketTest, HalfOctaveBuckets) {
  EXPECT_EQ(bucket_for(1).name(), "e0.0");
  EXPECT_EQ(bucket_for(2).name(), "e1.0");
  EXPECT_EQ(bucket_for(3).name(), "e1.5");
  EXPECT_EQ(bucket_for(1 << 20).name(), "e20.0");
  EXPECT_EQ(bucket_for(3 << 19).name(), "e20.5");
  EXPECT_EQ(bucket_for((3 << 19) - 1).name(), "e20.0");
  EXPECT_EQ(bucket_for((1 << 21) - 1).name(), "e20.5");
  EXPECT_EQ(bucket_for(0).name(), "e0.0");
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{1} << 30, (int64_t{1} << 40) + 5}) {
    const SizeBucket b = bucket_for(n);
    EXPECT_LE(b.lower, n);
    EXPECT_LT(n, b.upper);
    EXPECT_LE(b.lower, b.center);
    EXPECT_LT(b.center, b.upper);
    EXPECT_EQ(bucket_for(b.center).index, b.index);
  }
  EXPECT_EQ(bucket_for(1 << 20).center % 64, 0);
}

TEST(SizeBucketTest, ProblemKeysParseAndMeasureDistance) {
  const std::string key = problem_key(bucket_for(3 << 19), 8);
  EXPECT_EQ(key, "n:e20.5|t:3");
  const auto parsed = parse_problem_key(key);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->element_bucket, 41);
  EXPECT_EQ(parsed->tensor_bucket, 3);
  const auto other = parse_problem_key(problem_key(bucket_for(1 << 20), 1));
  EXPECT_EQ(problem_distance(*parsed, *other), 1 + 2 * 3);
  for (const char* bad : {"", "n:e20.5", "n:e20.7|t:0", "n:ex.0|t:0", "n:e20.0|t:", "x:e1.0|t:0",
                          "n:e20.0|t:1x"}) {
    EXPECT_FALSE(parse_problem_key(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace fuseopt::autotune
