// End-to-end tests of the `fuseopt` program (shared/design/CLI.md): each test runs the built
// binary in a fresh temporary folder and checks its exit code, its messages and its files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "support/low_precision.h"
#include "support/npy.h"
#include "tests/cli/json_value.h"
#include "tests/cli/process.h"

#ifndef FUSEOPT_BINARY
#error "FUSEOPT_BINARY must name the fuseopt program (tests/cli/CMakeLists.txt)"
#endif

namespace fuseopt::testing {
namespace {

namespace fs = std::filesystem;

// The rules of rules/README.md; `fuseopt rules` may list more.
const std::vector<std::string> kBuiltinRules = {
    "adabelief", "adadelta", "adagrad", "adam",  "adamax", "adamomentum", "adamw", "ademamix",
    "lamb",      "lars",     "lion",    "nadam", "radam",  "rmsprop",     "rprop", "sgd"};

const char* const kBadRule =
    "rule bad \"a rule with two errors\"\n"
    "hyper lr = 0.1\n"
    "state m = 0\n"
    "step {\n"
    "  m = m + gard\n"
    "  grad = m\n"
    "  param = param - lr * m\n"
    "}\n";

const char* const kRuleWithWarning =
    "rule warn \"a rule with an unused hyper\"\n"
    "hyper lr = 0.1\n"
    "hyper unused = 1\n"
    "step {\n"
    "  param = param - lr * grad\n"
    "}\n";

// A .npy file as NumPy writes it, for dtypes fuseopt must refuse.
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  return bytes + header + data;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/fuseopt-cli-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  ProcessResult fuseopt(const std::vector<std::string>& args) const {
    ProcessResult result = run_process(FUSEOPT_BINARY, args, dir_);
    EXPECT_EQ(result.signal, 0) << "fuseopt died of a signal; stderr:\n" << result.err;
    // Never a stack trace or an abort message, whatever happened.
    EXPECT_EQ(result.err.find("terminate called"), std::string::npos) << result.err;
    EXPECT_EQ(result.err.find("Aborted"), std::string::npos) << result.err;
    return result;
  }

  void write_text(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
  }

  std::string write_f32(const std::string& name, const std::vector<int64_t>& shape,
                        const std::vector<float>& data) const {
    support::write_npy_f32(path(name), shape, data);
    return path(name);
  }

  // Runs `fuseopt run` with P and G written from the given arrays; the output folder is
  // DIR/out.
  ProcessResult run_rule(const std::string& rule, const std::vector<int64_t>& p_shape,
                         const std::vector<float>& p, const std::vector<int64_t>& g_shape,
                         const std::vector<float>& g, std::vector<std::string> extra) const {
    write_f32("P.npy", p_shape, p);
    write_f32("G.npy", g_shape, g);
    std::vector<std::string> args = {"run",    rule,          "--param", path("P.npy"),
                                     "--grad", path("G.npy"), "--out",   path("out")};
    args.insert(args.end(), extra.begin(), extra.end());
    return fuseopt(args);
  }

  std::string dir_;
};

// The exit code and a message: on stderr, prefixed "fuseopt: error: ", containing `text`.
void expect_error(const ProcessResult& result, int exit_code, const std::string& text) {
  EXPECT_EQ(result.exit_code, exit_code) << "stderr:\n" << result.err;
  EXPECT_NE(result.err.find("fuseopt: error: "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(text), std::string::npos) << "stderr lacks '" << text << "':\n"
                                                      << result.err;
}

const std::vector<float> kParam = {0.5f, -1.25f, 3.0f, 0.1f, 2.5e-3f, -7.75f, 1000.0f};
const std::vector<float> kGrad = {0.3f, -0.2f, 1.7f, 0.0f, -5.5f, 0.01f, 2.0f};
const std::vector<int64_t> kShape = {7};

// --- the program as a whole -------------------------------------------------------------

TEST_F(CliTest, VersionPrintsTheProjectVersion) {
  const ProcessResult r = fuseopt({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "fuseopt 0.1.0\n");
}

TEST_F(CliTest, HelpListsEverySubcommand) {
  const ProcessResult r = fuseopt({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub :
       {"rules", "check", "emit", "run", "demo", "bench", "tune", "cache", "pack"}) {
    const size_t at = r.out.find(std::string("\n  ") + sub + " ");
    ASSERT_NE(at, std::string::npos) << sub;
    const std::string line = r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1);
    EXPECT_EQ(line.find("(not built yet)"), std::string::npos) << line;
  }
}

TEST_F(CliTest, SubcommandHelpPrintsItsUsage) {
  for (const char* sub :
       {"rules", "check", "emit", "run", "demo", "bench", "tune", "cache", "pack"}) {
    const ProcessResult r = fuseopt({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_TRUE(r.out.starts_with(std::string("usage: fuseopt ") + sub)) << r.out;
  }
  const ProcessResult run = fuseopt({"run", "--help"});
  for (const char* flag : {"--param", "--grad", "--out", "--steps", "--set", "--option", "--state",
                           "--backend", "--threads"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag;
  }
  // --help wins over a command line that would otherwise be wrong.
  EXPECT_EQ(fuseopt({"run", "--bogus", "--help"}).exit_code, 0);
  EXPECT_EQ(fuseopt({"help", "emit"}).exit_code, 0);
}

TEST_F(CliTest, UnknownSubcommandIsAUsageError) {
  expect_error(fuseopt({"frobnicate"}), 2, "unknown subcommand 'frobnicate'");
  expect_error(fuseopt({"chek"}), 2, "did you mean 'check'?");
  expect_error(fuseopt({}), 2, "a subcommand is needed");
  expect_error(fuseopt({"--frob"}), 2, "unknown flag '--frob'");
}

TEST_F(CliTest, UnknownFlagIsAUsageError) {
  const ProcessResult r = fuseopt({"run", "adam", "--x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "fuseopt: error: unknown flag '--x' for 'run'; see 'fuseopt run --help'\n");
  expect_error(fuseopt({"rules", "--jsn"}), 2, "did you mean '--json'?");
  expect_error(fuseopt({"rules", "--json=yes"}), 2, "flag '--json' takes no value");
}

TEST_F(CliTest, MissingArgumentIsAUsageError) {
  write_f32("P.npy", kShape, kParam);
  expect_error(fuseopt({"run", "adam", "--param", path("P.npy"), "--grad", path("P.npy")}), 2,
               "'run' needs --out DIR");
  expect_error(fuseopt({"run", "--param", "P.npy", "--grad", "P.npy", "--out", "o"}), 2,
               "'run' needs a RULE");
  expect_error(fuseopt({"run", "adam", "sgd", "--param", "P.npy", "--grad", "P.npy", "--out", "o"}),
               2, "'sgd'");
  expect_error(
      fuseopt({"run", "adam", "--param", "P.npy", "--grad", "P.npy", "--out", "o", "--steps"}), 2,
      "flag '--steps' needs a value");
  expect_error(fuseopt({"check"}), 2, "needs a RULE");
  expect_error(fuseopt({"emit", "adam"}), 2,
               "'emit' needs one of --ir, --halide, --cuda, --cubin and --ptx");
  expect_error(fuseopt({"emit", "adam", "--ir", "--cuda"}), 2, "only one of");
  expect_error(fuseopt({"rules", "extra"}), 2, "unexpected argument 'extra'");
}

TEST_F(CliTest, MissingPacksAndBadActionsAndFlagsAreClearErrors) {
  expect_error(fuseopt({"pack", "inspect", "x.pack"}), 1, "no kernel pack at 'x.pack'");
  expect_error(fuseopt({"pack", "frob"}), 2, "unknown pack action 'frob'");
  // A typo is a usage error.
  expect_error(fuseopt({"bench", "adam", "--sise", "4"}), 2, "unknown flag '--sise'");
}

// --- rules, check, emit -----------------------------------------------------------------

TEST_F(CliTest, RulesJsonDescribesEveryBuiltinRule) {
  const ProcessResult r = fuseopt({"rules", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string error;
  const auto json = parse_json(r.out, &error);
  ASSERT_TRUE(json.has_value()) << error << "\n" << r.out;
  ASSERT_EQ(json->kind, JsonValue::Kind::kArray);

  std::set<std::string> names;
  for (const JsonValue& rule : json->array) {
    ASSERT_EQ(rule.kind, JsonValue::Kind::kObject);
    for (const char* key : {"name", "summary", "hypers", "options", "states", "scalars",
                            "param_storage", "grad_storage"}) {
      EXPECT_TRUE(rule.has(key)) << key;
    }
    EXPECT_FALSE(rule["summary"].string.empty()) << rule["name"].string;
    names.insert(rule["name"].string);
  }
  for (const std::string& name : kBuiltinRules) EXPECT_TRUE(names.count(name)) << name;

  auto find = [&](const std::string& name) -> const JsonValue& {
    for (const JsonValue& rule : json->array) {
      if (rule["name"].string == name) return rule;
    }
    static const JsonValue kNull;
    return kNull;
  };
  const JsonValue& adam = find("adam");
  ASSERT_GE(adam["hypers"].array.size(), 5u);
  EXPECT_EQ(adam["hypers"].array[0]["name"].string, "lr");
  EXPECT_EQ(adam["hypers"].array[0]["default"].number, 1e-3);
  ASSERT_EQ(adam["options"].array.size(), 2u);
  EXPECT_EQ(adam["options"].array[0]["name"].string, "amsgrad");
  EXPECT_EQ(adam["options"].array[0]["default"].kind, JsonValue::Kind::kBool);
  EXPECT_FALSE(adam["options"].array[0]["default"].boolean);
  ASSERT_EQ(adam["states"].array.size(), 3u);
  EXPECT_EQ(adam["states"].array[0]["name"].string, "exp_avg");
  EXPECT_EQ(adam["states"].array[0]["init"].string, "0");
  EXPECT_EQ(adam["states"].array[0]["when"].kind, JsonValue::Kind::kNull);
  EXPECT_EQ(adam["states"].array[2]["name"].string, "max_exp_avg_sq");
  EXPECT_EQ(adam["states"].array[2]["when"].string, "amsgrad");

  const JsonValue& nadam = find("nadam");
  ASSERT_EQ(nadam["scalars"].array.size(), 1u);
  EXPECT_EQ(nadam["scalars"].array[0]["name"].string, "mu_product");
  EXPECT_EQ(nadam["scalars"].array[0]["init"].number, 1.0);
}

TEST_F(CliTest, RulesTableNamesEveryRule) {
  const ProcessResult r = fuseopt({"rules"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& name : kBuiltinRules) {
    EXPECT_NE(r.out.find(name + ": "), std::string::npos) << name;
  }
  EXPECT_NE(r.out.find("lr=0.001"), std::string::npos);
  EXPECT_NE(r.out.find("max_exp_avg_sq (when amsgrad)"), std::string::npos);
}

TEST_F(CliTest, CheckPassesEveryBuiltinRule) {
  std::vector<std::string> args = {"check"};
  args.insert(args.end(), kBuiltinRules.begin(), kBuiltinRules.end());
  const ProcessResult r = fuseopt(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& name : kBuiltinRules) {
    EXPECT_NE(r.out.find(name + ": ok"), std::string::npos) << name << ":\n" << r.out << r.err;
  }
  EXPECT_EQ(fuseopt({"check", "--all"}).exit_code, 0);
}

TEST_F(CliTest, CheckReportsEveryErrorOfABadRule) {
  write_text("bad.opt", kBadRule);
  const ProcessResult r = fuseopt({"check", "bad.opt", "adam"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.opt:5:11: error: unknown name 'gard'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bad.opt:6:3: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("      m = m + gard\n              ^~~~\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "bad.opt: 2 errors\nadam: ok\n");
}

TEST_F(CliTest, CheckCountsWarningsWithoutFailing) {
  write_text("warn.opt", kRuleWithWarning);
  const ProcessResult r = fuseopt({"check", "warn.opt"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "warn.opt: ok, 1 warning\n");
  EXPECT_NE(r.err.find("warn.opt:3:7: warning: hyper 'unused' is never used"), std::string::npos)
      << r.err;
}

TEST_F(CliTest, UnknownRuleSuggestsABuiltin) {
  const ProcessResult r = fuseopt({"check", "adamm"});
  expect_error(r, 1, "no built-in rule 'adamm'; did you mean 'adam'?");
  EXPECT_EQ(r.out, "adamm: not checked (cannot be loaded)\n");
  expect_error(fuseopt({"emit", "sgdd", "--ir"}), 1, "did you mean 'sgd'?");
}

TEST_F(CliTest, MissingRuleFileIsAUserError) {
  expect_error(fuseopt({"check", "nothere.opt"}), 1, "nothere.opt");
  expect_error(fuseopt({"emit", "./nothere.opt", "--ir"}), 1, "nothere.opt");
}

TEST_F(CliTest, EmitPrintsTheKernel) {
  const ProcessResult r = fuseopt({"emit", "adam", "--ir"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("kernel adam_amsgrad0_maximize0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("store param"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("max_exp_avg_sq"), std::string::npos);

  const ProcessResult ams = fuseopt({"emit", "adam", "--ir", "--option", "amsgrad=true"});
  EXPECT_EQ(ams.exit_code, 0) << ams.err;
  EXPECT_NE(ams.out.find("kernel adam_amsgrad1_maximize0"), std::string::npos) << ams.out;
  EXPECT_NE(ams.out.find("max_exp_avg_sq"), std::string::npos);

  const ProcessResult passes = fuseopt({"emit", "adam", "--ir", "--passes"});
  EXPECT_EQ(passes.exit_code, 0) << passes.err;
  EXPECT_NE(passes.out.find("fold_constants"), std::string::npos) << passes.out;
  EXPECT_NE(passes.out.find("split_phases"), std::string::npos) << passes.out;
}

TEST_F(CliTest, EmitHalideDescribesThePipelines) {
  const ProcessResult halide = fuseopt({"emit", "adam", "--halide"});
  EXPECT_EQ(halide.exit_code, 0) << halide.err;
  EXPECT_NE(halide.out.find("generated by fuseopt from adam"), std::string::npos);
  EXPECT_NE(halide.out.find("GuardWithIf"), std::string::npos) << halide.out.substr(0, 2000);
  expect_error(fuseopt({"emit", "adam", "--halide", "--target", "sparc"}), 1, "sparc");
  expect_error(fuseopt({"emit", "adam", "--ir", "--target", "host"}), 2,
               "--target goes with --halide");
  // The rule's own errors come first.
  write_text("bad.opt", kBadRule);
  expect_error(fuseopt({"emit", "bad.opt", "--cuda"}), 1, "2 errors in bad.opt");
}

TEST_F(CliTest, EmitRejectsBadOptions) {
  expect_error(fuseopt({"emit", "adam", "--ir", "--option", "amsgrd=true"}), 1,
               "did you mean 'amsgrad'?");
  expect_error(fuseopt({"emit", "adam", "--ir", "--option", "amsgrad=maybe"}), 1, "'maybe'");
  expect_error(fuseopt({"emit", "adam", "--ir", "--option", "amsgrad"}), 1, "NAME=VALUE");
}

// --- run: outputs -----------------------------------------------------------------------

TEST_F(CliTest, RunWritesParamStatesAndScalars) {
  const ProcessResult r =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--steps", "3", "--backend", "interp"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  for (const char* name : {"param", "exp_avg", "exp_avg_sq"}) {
    const support::NpyArray array =
        support::read_npy_f32(path(std::string("out/") + name + ".npy"));
    EXPECT_EQ(array.shape, kShape) << name;
  }
  EXPECT_FALSE(fs::exists(path("out/max_exp_avg_sq.npy")));
  std::ifstream in(path("out/scalars.json"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto json = parse_json(text);
  ASSERT_TRUE(json.has_value()) << text;
  EXPECT_EQ((*json)["t"].number, 3);
  // Nothing but the outputs: no temporary files left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(path("out"))) ++files;
  EXPECT_EQ(files, 4u);
}

TEST_F(CliTest, RunStoresBuffersInBf16OnEveryBackend) {
  // adamw with master weights on a stochastically rounded bf16 parameter: interp and cpu
  // write the same bits; the parameter holds bf16 values, the master does not need to.
  const std::vector<std::string> flags = {"--steps",   "3",
                                          "--storage", "param=bf16-sr,grad=bf16",
                                          "--option",  "master_weights=true",
                                          "--set",     "rounding_seed=7",
                                          "--set",     "lr=0.01"};
  std::map<std::string, std::vector<float>> results[2];
  int k = 0;
  for (const char* backend : {"interp", "cpu"}) {
    std::vector<std::string> all = flags;
    all.insert(all.end(), {"--backend", backend});
    const ProcessResult r = run_rule("adamw", {7}, kParam, {7}, kGrad, all);
    ASSERT_EQ(r.exit_code, 0) << backend << ": " << r.err;
    for (const char* name : {"param", "master", "exp_avg"}) {
      results[k][name] = support::read_npy_f32(path(std::string("out/") + name + ".npy")).data;
    }
    ++k;
  }
  EXPECT_EQ(results[0], results[1]);
  for (float p : results[0]["param"]) EXPECT_EQ(p, round_to_storage(p, StorageType::kBF16));
  EXPECT_NE(results[0]["param"], results[0]["master"]);

  const ProcessResult no_seed = run_rule("adam", {7}, kParam, {7}, kGrad,
                                         {"--storage", "param=bf16", "--set", "rounding_seed=1"});
  EXPECT_EQ(no_seed.exit_code, 1);
  EXPECT_NE(no_seed.err.find("only a buffer rounded stochastically"), std::string::npos)
      << no_seed.err;
  const ProcessResult bad = run_rule("adam", {7}, kParam, {7}, kGrad, {"--storage", "param=bf8"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("bf16-sr"), std::string::npos) << bad.err;
  const ProcessResult unknown =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--storage", "momentum=bf16"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("momentum"), std::string::npos) << unknown.err;
}

TEST_F(CliTest, RunWritesScalarStates) {
  const ProcessResult r = run_rule("nadam", {7}, kParam, {7}, kGrad, {"--steps", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(path("out/scalars.json"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto json = parse_json(text);
  ASSERT_TRUE(json.has_value()) << text;
  EXPECT_EQ((*json)["t"].number, 2);
  ASSERT_EQ((*json)["mu_product"].kind, JsonValue::Kind::kNumber) << text;
  EXPECT_GT((*json)["mu_product"].number, 0);
  EXPECT_LT((*json)["mu_product"].number, 1);
}

TEST_F(CliTest, SgdWithoutMomentumIsExact) {
  const ProcessResult r = run_rule("sgd", {7}, kParam, {7}, kGrad,
                                   {"--steps", "3", "--set", "lr=0.1", "--set", "momentum=0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<float> want = kParam;
  const float lr = 0.1f;
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < want.size(); ++i) want[i] = want[i] - lr * kGrad[i];
  }
  const support::NpyArray got = support::read_npy_f32(path("out/param.npy"));
  EXPECT_EQ(got.shape, kShape);
  EXPECT_EQ(got.data, want);
}

TEST_F(CliTest, GradientWithALeadingAxisGivesEachStepItsOwn) {
  std::vector<float> grads;
  for (int step = 0; step < 3; ++step) {
    for (float g : kGrad) grads.push_back(g * static_cast<float>(step + 1) - 0.25f);
  }
  const ProcessResult r =
      run_rule("sgd", {7}, kParam, {3, 7}, grads, {"--steps", "3", "--set", "lr=0.5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<float> want = kParam;
  for (size_t step = 0; step < 3; ++step) {
    for (size_t i = 0; i < want.size(); ++i) want[i] = want[i] - 0.5f * grads[step * 7 + i];
  }
  EXPECT_EQ(support::read_npy_f32(path("out/param.npy")).data, want);
}

TEST_F(CliTest, StartingStateReplacesInit) {
  const std::vector<float> exp_avg = {1, 2, 3, 4, 5, 6, 7};
  write_f32("M.npy", kShape, exp_avg);
  const ProcessResult r =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--state", "exp_avg=" + path("M.npy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const support::NpyArray got = support::read_npy_f32(path("out/exp_avg.npy"));
  ASSERT_EQ(got.data.size(), 7u);
  for (size_t i = 0; i < 7; ++i) {
    const double want = 0.9 * exp_avg[i] + 0.1 * kGrad[i];
    EXPECT_NEAR(got.data[i], want, 1e-6 * std::max(1.0, std::abs(want))) << i;
  }
}

TEST_F(CliTest, EmptyTensorWritesEmptyArrays) {
  const ProcessResult r = run_rule("adam", {0, 3}, {}, {0, 3}, {}, {"--steps", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"param", "exp_avg", "exp_avg_sq"}) {
    const support::NpyArray array =
        support::read_npy_f32(path(std::string("out/") + name + ".npy"));
    EXPECT_EQ(array.shape, (std::vector<int64_t>{0, 3})) << name;
    EXPECT_TRUE(array.data.empty());
  }
}

TEST_F(CliTest, RunCreatesNestedOutputFolders) {
  write_f32("P.npy", kShape, kParam);
  const ProcessResult r = fuseopt({"run", "sgd", "--param", "P.npy", "--grad=P.npy", "--out",
                                   "a/b/c", "--backend=auto", "--threads", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(path("a/b/c/param.npy")));
  EXPECT_TRUE(fs::exists(path("a/b/c/momentum_buffer.npy")));
}

TEST_F(CliTest, RunOfARuleFile) {
  write_text("warn.opt", kRuleWithWarning);
  write_f32("P.npy", kShape, kParam);
  write_f32("G.npy", kShape, kGrad);
  const ProcessResult r =
      fuseopt({"run", "warn.opt", "--param", "P.npy", "--grad", "G.npy", "--out", "o"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<float> want = kParam;
  for (size_t i = 0; i < want.size(); ++i) want[i] = want[i] - 0.1f * kGrad[i];
  EXPECT_EQ(support::read_npy_f32(path("o/param.npy")).data, want);
}

// --- run: errors ------------------------------------------------------------------------

TEST_F(CliTest, RunOfABadRuleIsAUserError) {
  write_text("bad.opt", kBadRule);
  write_f32("P.npy", kShape, kParam);
  const ProcessResult r =
      fuseopt({"run", "bad.opt", "--param", "P.npy", "--grad", "P.npy", "--out", "o"});
  expect_error(r, 1, "2 errors in bad.opt");
  EXPECT_NE(r.err.find("bad.opt:5:11: error: unknown name 'gard'"), std::string::npos);
  expect_error(fuseopt({"run", "adamm", "--param", "P.npy", "--grad", "P.npy", "--out", "o"}), 1,
               "did you mean 'adam'?");
}

TEST_F(CliTest, Float64InputIsAUserError) {
  std::string data(7 * 8, '\0');
  write_text("P64.npy", npy_bytes("<f8", "(7,)", data));
  write_f32("G.npy", kShape, kGrad);
  expect_error(fuseopt({"run", "adam", "--param", "P64.npy", "--grad", "G.npy", "--out", "o"}), 1,
               "P64.npy");
  const ProcessResult r =
      fuseopt({"run", "adam", "--param", "G.npy", "--grad", "P64.npy", "--out", "o"});
  expect_error(r, 1, "float64");
  EXPECT_FALSE(fs::exists(path("o")));
}

TEST_F(CliTest, TruncatedNpyIsAUserError) {
  const std::string whole = npy_bytes("<f4", "(7,)", std::string(7 * 4, '\0'));
  write_text("T.npy", whole.substr(0, whole.size() - 5));
  write_f32("G.npy", kShape, kGrad);
  const ProcessResult r =
      fuseopt({"run", "adam", "--param", "T.npy", "--grad", "G.npy", "--out", "o"});
  expect_error(r, 1, "T.npy");
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
}

TEST_F(CliTest, NotAnNpyFileIsAUserError) {
  write_text("N.npy", "hello, this is not numpy\n");
  write_f32("G.npy", kShape, kGrad);
  expect_error(fuseopt({"run", "adam", "--param", "N.npy", "--grad", "G.npy", "--out", "o"}), 1,
               "N.npy");
  expect_error(fuseopt({"run", "adam", "--param", "G.npy", "--grad", "missing.npy", "--out", "o"}),
               1, "missing.npy");
}

TEST_F(CliTest, GradientShapeMismatchIsAUserError) {
  const ProcessResult r = run_rule("adam", {7}, kParam, {4}, {1, 2, 3, 4}, {"--steps", "2"});
  expect_error(r, 1, "(4,)");
  EXPECT_NE(r.err.find("(7,)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("out")));
}

TEST_F(CliTest, GradientWithTheWrongLeadingAxisIsAUserError) {
  const std::vector<float> grads(4 * 7, 1.0f);
  const ProcessResult r = run_rule("adam", {7}, kParam, {4, 7}, grads, {"--steps", "3"});
  expect_error(r, 1, "(4, 7)");
  EXPECT_NE(r.err.find("(3, 7)"), std::string::npos) << r.err;
}

TEST_F(CliTest, UnknownHyperIsAUserErrorWithASuggestion) {
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--set", "lrr=0.1"}), 1,
               "rule 'adam' has no hyper 'lrr'; did you mean 'lr'?");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--set", "lr=abc"}), 1, "'abc'");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--set", "lr=1e-3x"}), 1, "'1e-3x'");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--set", "lr=nan"}), 1, "'nan'");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--set", "lr=1", "--set", "lr=2"}), 1,
               "given twice");
}

TEST_F(CliTest, UnknownOrBadOptionIsAUserError) {
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--option", "amsgrd=true"}), 1,
               "did you mean 'amsgrad'?");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--option", "amsgrad=maybe"}), 1,
               "'maybe'");
}

TEST_F(CliTest, BadStateIsAUserError) {
  write_f32("M.npy", kShape, kParam);
  write_f32("M3.npy", {3}, {1, 2, 3});
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--state", "exp_avgg=" + path("M.npy")}),
               1, "rule 'adam' has no state 'exp_avgg'; did you mean 'exp_avg'?");
  expect_error(
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--state", "max_exp_avg_sq=" + path("M.npy")}), 1,
      "only when option 'amsgrad' is true");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--state", "exp_avg=" + path("M3.npy")}),
               1, "(3,)");
  // Under the option that makes it exist, the same state is fine.
  EXPECT_EQ(run_rule("adam", {7}, kParam, {7}, kGrad,
                     {"--option", "amsgrad=true", "--state", "max_exp_avg_sq=" + path("M.npy")})
                .exit_code,
            0);
}

TEST_F(CliTest, BadStepsOrThreadsAreUserErrors) {
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--steps", "0"}), 1, "--steps");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--steps", "abc"}), 1, "'abc'");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--threads", "-1"}), 1, "--threads");
}

TEST_F(CliTest, CpuBackendMatchesTheInterpreter) {
  const ProcessResult cpu =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--backend", "cpu", "--steps", "3"});
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  const auto cpu_param = support::read_npy_f32(path("out/param.npy"));
  const ProcessResult interp =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--backend", "interp", "--steps", "3"});
  ASSERT_EQ(interp.exit_code, 0) << interp.err;
  const auto interp_param = support::read_npy_f32(path("out/param.npy"));
  EXPECT_EQ(cpu_param.data, interp_param.data);
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {"--backend", "gpu"}), 1, "'gpu'");
  const ProcessResult verbose =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--backend", "cpu", "--verbose"});
  EXPECT_EQ(verbose.exit_code, 0) << verbose.err;
  EXPECT_NE(verbose.err.find("cpu backend"), std::string::npos) << verbose.err;
}

TEST_F(CliTest, OutputThatIsAFileIsAUserError) {
  write_text("out", "a file, not a folder\n");
  expect_error(run_rule("adam", {7}, kParam, {7}, kGrad, {}), 1, "output folder");
}

// --- demo -------------------------------------------------------------------------------

TEST_F(CliTest, DemoRunsAndStaysShort) {
  // Small and quick: the sections are the same whatever the size.
  const ProcessResult r = fuseopt({"demo", "--size", "65536", "--tune-budget", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_LT(std::count(r.out.begin(), r.out.end(), '\n'), 70) << r.out;
  EXPECT_NE(r.out.find("adamomentum"), std::string::npos);
  EXPECT_NE(r.out.find("it went down"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.ends_with("demo: ok\n")) << r.out;
}

// --- bench -------------------------------------------------------------------------------
// Figures are printed, never judged: only their presence and sign are checked here.

TEST_F(CliTest, BenchPrintsFiguresAndRejectsBadFlags) {
  const ProcessResult r =
      fuseopt({"bench", "adam", "--size", "4096", "--steps", "3", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string error;
  const auto json = parse_json(r.out, &error);
  ASSERT_TRUE(json) << error << "\n" << r.out;
  for (const char* key : {"ns_per_element", "gb_per_s", "bandwidth_fraction", "bytes_per_element",
                          "compile_ms", "step_ms", "triad_gb_per_s"}) {
    ASSERT_EQ((*json)[key].kind, JsonValue::Kind::kNumber) << key << "\n" << r.out;
    EXPECT_GT((*json)[key].number, 0) << key;
  }
  // param, exp_avg and exp_avg_sq read and written, grad read: 7 x 4 bytes.
  EXPECT_EQ((*json)["bytes_per_element"].number, 28);
  EXPECT_EQ((*json)["steps"].number, 3);
  EXPECT_EQ((*json)["tensors"].number, 1);
  EXPECT_EQ((*json)["size"].number, 4096);
  EXPECT_EQ((*json)["backend"].string, "cpu");

  const ProcessResult text =
      fuseopt({"bench", "sgd", "--size", "1000", "--tensors", "3", "--steps", "3", "--threads", "1",
               "--backend", "interp", "--set", "momentum=0.9"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  for (const char* word :
       {"ns/element", "bytes/element", "GB/s", "of the streaming bandwidth", "3 x 1000 elements"}) {
    EXPECT_NE(text.out.find(word), std::string::npos) << word << "\n" << text.out;
  }

  expect_error(fuseopt({"bench", "adam", "--sise", "4"}), 2, "unknown flag '--sise'");
  expect_error(fuseopt({"bench"}), 2, "needs a RULE");
  expect_error(fuseopt({"bench", "adam", "--backend", "gpu"}), 1, "'gpu'");
  expect_error(fuseopt({"bench", "adam", "--size", "0"}), 1, "--size");
  expect_error(fuseopt({"bench", "adam", "--set", "lrr=1"}), 1, "did you mean 'lr'?");
}

TEST_F(CliTest, BenchStorageCountsTwoByteBuffers) {
  // bf16 param (stochastic) and grad, one bf16 moment, one f32 moment: param 2+2, grad 2,
  // exp_avg 2+2, exp_avg_sq 4+4 bytes per element.
  const ProcessResult r = fuseopt({"bench", "adam", "--size", "4096", "--steps", "2", "--threads",
                                   "1", "--json", "--storage", "param=bf16-sr,grad=bf16",
                                   "--storage", "exp_avg=bf16", "--set", "rounding_seed=3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string error;
  const auto json = parse_json(r.out, &error);
  ASSERT_TRUE(json) << error << "\n" << r.out;
  EXPECT_EQ((*json)["bytes_per_element"].number, 18);
  EXPECT_EQ((*json)["storage"]["param"].string, "bf16-sr");
  EXPECT_EQ((*json)["storage"]["exp_avg_sq"].string, "f32");
  EXPECT_NE((*json)["kernel"].string.find("param_bf16sr"), std::string::npos) << r.out;

  expect_error(fuseopt({"bench", "adam", "--storage", "nope=bf16"}), 1, "nope");
  expect_error(fuseopt({"bench", "adam", "--storage", "param=bf17"}), 1, "bf17");
  expect_error(fuseopt({"bench", "adam", "--storage", "grad=bf16-sr"}), 1, "grad");
  expect_error(fuseopt({"bench", "adam", "--set", "rounding_seed=1"}), 1, "rounding_seed");
}

// --- cuda -------------------------------------------------------------------------------
// None of these needs a GPU: the CUDA C and NVRTC's output are made on any machine (the
// NVRTC ones skip where NVRTC is missing), and a machine without a driver is made by
// pointing fuseopt at a driver library that does not exist.

// Sets an environment variable for the processes a test starts, and restores it.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnvironment() {
    if (old_.empty()) {
      unsetenv(name_.c_str());
    } else {
      setenv(name_.c_str(), old_.c_str(), 1);
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  std::string name_;
  std::string old_;
};

constexpr const char* kMissingDriver = "/nonexistent/libcuda.so.1";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// An environment error naming `text`, on exactly one line of stderr.
void expect_one_line_environment_error(const ProcessResult& r, const std::string& text) {
  expect_error(r, 4, text);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("fuseopt: error: ")) << r.err;
}

#define SKIP_WITHOUT_NVRTC(result)                                                    \
  do {                                                                                \
    if ((result).exit_code == 4 && (result).err.find("NVRTC") != std::string::npos) { \
      GTEST_SKIP() << "no NVRTC: " << (result).err;                                   \
    }                                                                                 \
  } while (false)

TEST_F(CliTest, EmitCudaPrintsTheGeneratedSource) {
  const ProcessResult r = fuseopt({"emit", "adam", "--cuda"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Generated by fuseopt from rule 'adam'"), std::string::npos)
      << r.out.substr(0, 500);
  EXPECT_NE(r.out.find("__global__"), std::string::npos);
  const ProcessResult ams = fuseopt({"emit", "adam", "--cuda", "--option", "amsgrad=true"});
  ASSERT_EQ(ams.exit_code, 0) << ams.err;
  EXPECT_NE(ams.out, r.out);
  expect_error(fuseopt({"emit", "adam", "--cuda", "--arch", "sm_80"}), 2,
               "--arch goes with --cubin or --ptx");
  expect_error(fuseopt({"emit", "adam", "--cuda", "-o", "x.cu"}), 2, "-o goes with");
  expect_error(fuseopt({"emit", "adam", "--cuda", "--ptx"}), 2, "only one of");
}

TEST_F(CliTest, EmitCubinWritesAnElfFile) {
  const ProcessResult r = fuseopt({"emit", "adam", "--cubin", "--arch", "sm_80", "-o", "x.cubin"});
  SKIP_WITHOUT_NVRTC(r);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  const std::string cubin = read_file(path("x.cubin"));
  EXPECT_TRUE(
      cubin.starts_with("\x7f"
                        "ELF"))
      << cubin.substr(0, 16);
  // The default architecture, sm_90.
  const ProcessResult fallback = fuseopt({"emit", "sgd", "--cubin", "-o", "d.cubin"});
  ASSERT_EQ(fallback.exit_code, 0) << fallback.err;
  EXPECT_TRUE(read_file(path("d.cubin"))
                  .starts_with("\x7f"
                               "ELF"));
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
  }
  expect_error(fuseopt({"emit", "adam", "--cubin"}), 2, "give -o FILE");
  // compute_XX has PTX only.
  expect_error(fuseopt({"emit", "adam", "--cubin", "--arch", "compute_80", "-o", "y.cubin"}), 1,
               "--ptx");
  EXPECT_FALSE(fs::exists(path("y.cubin")));
}

TEST_F(CliTest, EmitPtxPrintsOrWritesIt) {
  const ProcessResult r = fuseopt({"emit", "adam", "--ptx"});
  SKIP_WITHOUT_NVRTC(r);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // compute_90 by default.
  EXPECT_NE(r.out.find(".target sm_90"), std::string::npos) << r.out.substr(0, 800);
  EXPECT_NE(r.out.find(".entry"), std::string::npos);
  EXPECT_EQ(r.out.find('\0'), std::string::npos);
  const ProcessResult to_file =
      fuseopt({"emit", "adam", "--ptx", "--arch", "compute_80", "-o", "a.ptx"});
  ASSERT_EQ(to_file.exit_code, 0) << to_file.err;
  EXPECT_EQ(to_file.out, "");
  EXPECT_NE(read_file(path("a.ptx")).find(".target sm_80"), std::string::npos);
  const ProcessResult sm = fuseopt({"emit", "lamb", "--ptx", "--arch", "sm_80"});
  ASSERT_EQ(sm.exit_code, 0) << sm.err;
  EXPECT_NE(sm.out.find(".target sm_80"), std::string::npos);
}

TEST_F(CliTest, EmitRejectsABadArchitecture) {
  const ProcessResult r = fuseopt({"emit", "adam", "--cubin", "--arch", "sm_13", "-o", "x.cubin"});
  SKIP_WITHOUT_NVRTC(r);
  expect_error(r, 1, "'sm_13'");
  EXPECT_NE(r.err.find("supports sm_"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sm_90"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("x.cubin")));
  expect_error(fuseopt({"emit", "adam", "--ptx", "--arch", "gfx90a"}), 1,
               "not a CUDA architecture");
  expect_error(fuseopt({"emit", "adam", "--ptx", "--arch", "compute_13"}), 1, "supports sm_");
  // The rule's errors still come first.
  write_text("bad.opt", kBadRule);
  expect_error(fuseopt({"emit", "bad.opt", "--ptx", "--arch", "sm_13"}), 1, "2 errors in bad.opt");
}

TEST_F(CliTest, RunOnCudaWithoutADriverIsAnEnvironmentError) {
  ScopedEnvironment no_driver("FUSEOPT_CUDA_DRIVER", kMissingDriver);
  const ProcessResult r = run_rule("adam", {7}, kParam, {7}, kGrad, {"--backend", "cuda"});
  expect_one_line_environment_error(r, "no CUDA driver (/nonexistent/libcuda.so.1 not found)");
  EXPECT_NE(r.err.find("needs an NVIDIA GPU and its driver"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("out")));
}

TEST_F(CliTest, RunAutoUsesTheCpuWithoutAGpu) {
  {
    ScopedEnvironment no_driver("FUSEOPT_CUDA_DRIVER", kMissingDriver);
    const ProcessResult r =
        run_rule("adam", {7}, kParam, {7}, kGrad, {"--steps", "3", "--verbose"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("--backend auto: running on the cpu backend"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("no CUDA driver"), std::string::npos) << r.err;
  }
  const auto automatic = support::read_npy_f32(path("out/param.npy"));
  const ProcessResult interp =
      run_rule("adam", {7}, kParam, {7}, kGrad, {"--backend", "interp", "--steps", "3"});
  ASSERT_EQ(interp.exit_code, 0) << interp.err;
  EXPECT_EQ(automatic.data, support::read_npy_f32(path("out/param.npy")).data);
  // This machine as it is (auto is the default): cpu here, cuda where a GPU works.
  const ProcessResult plain = run_rule("adam", {7}, kParam, {7}, kGrad, {});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
}

TEST_F(CliTest, BenchOnCudaWithoutADriverIsAnEnvironmentError) {
  ScopedEnvironment no_driver("FUSEOPT_CUDA_DRIVER", kMissingDriver);
  expect_one_line_environment_error(
      fuseopt({"bench", "adam", "--backend", "cuda", "--size", "1024", "--steps", "3"}),
      "no CUDA driver");
  // Flags are still checked first.
  expect_error(fuseopt({"bench", "adam", "--backend", "cuda", "--sise", "4"}), 2,
               "unknown flag '--sise'");
}

TEST_F(CliTest, HelpDescribesTheCudaBackend) {
  const ProcessResult emit = fuseopt({"emit", "--help"});
  for (const char* word : {"--cubin", "--ptx", "--arch", "sm_90", "compute_90"}) {
    EXPECT_NE(emit.out.find(word), std::string::npos) << word << "\n" << emit.out;
  }
  EXPECT_EQ(emit.out.find("not built"), std::string::npos) << emit.out;
  const ProcessResult run = fuseopt({"run", "--help"});
  EXPECT_EQ(run.out.find("not built"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("auto (the default) picks cuda where it works"), std::string::npos)
      << run.out;
  const ProcessResult bench = fuseopt({"bench", "--help"});
  EXPECT_EQ(bench.out.find("not built"), std::string::npos) << bench.out;
  EXPECT_NE(bench.out.find("device-to-device"), std::string::npos) << bench.out;
}

}  // namespace
}  // namespace fuseopt::testing
