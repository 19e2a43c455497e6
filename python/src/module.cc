// fuseopt._fuseopt: the C++ API for Python (docs/python.md). Rules, checking with the
// compiler's diagnostics, compiling, the Optimizer over borrowed array memory, tuning and
// kernel packs. C++ errors become the Python exceptions registered below, with the same
// messages; the GIL is released while compiling, tuning and stepping.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/fuseopt.h"
#include "autotune/config.h"
#include "autotune/kernel_store.h"
#include "frontend/rule.h"
#include "pack/pack_loader.h"
#include "pack/pack_reader.h"
#include "python/src/arrays.h"
#include "rules/builtin_rules.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/optimizer.h"
#include "support/diagnostics.h"
#include "support/error.h"

namespace fuseopt::python {
namespace {

using KernelPtr = std::shared_ptr<const runtime::CompiledKernel>;

// ---- Errors ------------------------------------------------------------------------------

/// One diagnostic, located, for Python.
struct DiagnosticInfo {
  std::string severity;  // "error", "warning", "note"
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string rendered;  // as `fuseopt check` prints it, with the line and caret
};

/// A rule with errors: a UserError whose message is every rendered diagnostic (as the C++
/// API's), carrying the diagnostics one by one.
class RuleError : public UserError {
 public:
  RuleError(const std::string& message, std::vector<DiagnosticInfo> diagnostics)
      : UserError(message), diagnostics_(std::move(diagnostics)) {}
  const std::vector<DiagnosticInfo>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<DiagnosticInfo> diagnostics_;
};

const char* severity_name(support::Severity severity) {
  switch (severity) {
    case support::Severity::kError: return "error";
    case support::Severity::kWarning: return "warning";
    case support::Severity::kNote: return "note";
  }
  return "error";
}

std::vector<DiagnosticInfo> describe(const support::Diagnostics& diags) {
  std::vector<DiagnosticInfo> out;
  for (const support::Diagnostic& d : diags.all()) {
    const support::LineColumn at = diags.file().locate(d.range.begin);
    out.push_back({severity_name(d.severity), diags.file().name(), at.line, at.column, d.message,
                   diags.render(d)});
  }
  return out;
}

/// The result of checking one rule.
struct CheckResult {
  std::string name;  // the rule's name when it parsed, else what was asked for
  bool ok = false;
  int errors = 0;
  int warnings = 0;
  std::vector<DiagnosticInfo> diagnostics;
  std::string rendered;  // every diagnostic, as `fuseopt check` prints them to stderr
  std::optional<frontend::Rule> rule;
};

CheckResult check_source(std::shared_ptr<const support::SourceFile> file,
                         bool every_option_combination) {
  support::Diagnostics diags(*file);
  CheckResult result;
  result.rule = frontend::Rule::check(file, diags, every_option_combination);
  result.name = result.rule ? result.rule->name() : file->name();
  result.ok = !diags.has_errors();
  result.errors = diags.error_count();
  for (const support::Diagnostic& d : diags.all()) {
    if (d.severity == support::Severity::kWarning) ++result.warnings;
  }
  result.diagnostics = describe(diags);
  result.rendered = diags.render();
  return result;
}

/// Checks and returns the rule, or throws RuleError with its diagnostics.
frontend::Rule checked_rule(std::shared_ptr<const support::SourceFile> file) {
  CheckResult result = check_source(std::move(file), true);
  if (!result.ok) throw RuleError(result.rendered, std::move(result.diagnostics));
  return std::move(*result.rule);
}

std::shared_ptr<const support::SourceFile> text_source(const std::string& text,
                                                       const std::string& name) {
  return std::make_shared<const support::SourceFile>(name, text);
}

// ---- Options -----------------------------------------------------------------------------

/// Python option values (bool or int) to the C++ API's strings.
std::map<std::string, std::string> option_strings(const py::dict& options) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : options) {
    const std::string name = py::str(key);
    if (py::isinstance<py::bool_>(value)) {
      out[name] = value.cast<bool>() ? "true" : "false";
    } else if (py::isinstance<py::int_>(value)) {
      out[name] = std::to_string(value.cast<int64_t>());
    } else if (py::isinstance<py::str>(value)) {
      out[name] = value.cast<std::string>();
    } else {
      throw UserError("option '" + name + "' takes a bool or an int, not " +
                      py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
    }
  }
  return out;
}

/// What compile() and compile_text() take beyond the options: storage, loss scaling and
/// clipping (docs/mixed-precision.md).
struct Precision {
  std::map<std::string, std::string> storage;
  bool loss_scaling = false;
  bool clip_grad_norm = false;
};

CompileOptions compile_options(const std::string& backend, const py::dict& options,
                               const std::string& cpu_target, bool tuned, int64_t size_hint,
                               int64_t tensor_count, const Precision& precision) {
  CompileOptions out;
  out.storage = precision.storage;
  out.loss_scaling = precision.loss_scaling;
  out.clip_grad_norm = precision.clip_grad_norm;
  out.backend = parse_backend(backend);
  out.options = option_strings(options);
  out.cpu_target = cpu_target;
  out.tuned = tuned;
  out.size_hint = size_hint;
  out.tensor_count = tensor_count;
  return out;
}

// ---- The Optimizer -----------------------------------------------------------------------

/// fuseopt::Optimizer plus the Python objects that own the memory of each tensor.
class PyOptimizer {
 public:
  PyOptimizer(KernelPtr kernel, const std::map<std::string, double>& hypers, int threads)
      : kernel_(kernel), optimizer_(std::move(kernel), hypers, threads) {}

  /// The C++ optimizer, for one call. fuseopt::Optimizer is not thread-safe and step()
  /// runs without the GIL, so a call from another Python thread meanwhile is refused
  /// (every call holds the GIL, which guards `stepping_`).
  Optimizer& get() {
    check_idle();
    return optimizer_;
  }
  const Optimizer& get() const {
    check_idle();
    return optimizer_;
  }
  void check_idle() const {
    if (stepping_) {
      throw UserError("this fuseopt.Optimizer is stepping in another thread; an Optimizer "
                      "takes one call at a time");
    }
  }

  /// step() or synchronize() with the GIL released.
  template <typename Call>
  void run_released(Call call) {
    check_idle();
    stepping_ = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }  // runs after the GIL is held again
    } reset{stepping_};
    py::gil_scoped_release release;
    call(optimizer_);
  }
  const KernelPtr& kernel() const { return kernel_; }
  bool device_memory() const { return kernel_->device_memory; }

  /// Checks that borrowed memory is where the kernel reads it: host memory for host
  /// kernels, the kernel's CUDA device for device kernels.
  void check_place(const Borrowed& memory, const std::string& what) const {
    if (!device_memory()) {
      if (memory.kind != MemoryKind::kHost) {
        throw UserError(what + " is in CUDA device memory, but this optimizer's kernel (" +
                        kernel_->backend + ") runs on the host; compile for backend 'cuda'");
      }
      return;
    }
    if (memory.kind != MemoryKind::kCuda) {
      throw UserError(what + " is in host memory, but this optimizer's kernel runs on " +
                      kernel_->device->name() + " and takes device memory");
    }
    const int ordinal = runtime::CudaDriver::get().device().ordinal;
    if (memory.device != ordinal) {
      throw UserError(what + " is on cuda:" + std::to_string(memory.device) +
                      ", but this optimizer's kernel runs on cuda:" + std::to_string(ordinal) +
                      " (choose it with FUSEOPT_CUDA_DEVICE)");
    }
  }

  size_t add(py::handle param, py::handle grad) {
    Borrowed p = borrow_array(param, true, "param");
    Borrowed g = borrow_array(grad, false, "grad");
    check_place(p, "param");
    check_place(g, "grad");
    check_idle();
    check_element_type(p, optimizer_.storage("param"), "param");
    check_element_type(g, optimizer_.storage("grad"), "grad");
    if (p.numel != g.numel) {
      throw UserError("param has " + std::to_string(p.numel) + " elements but grad has " +
                      std::to_string(g.numel));
    }
    if (p.numel == 0) throw UserError("param is empty; every tensor needs at least one element");
    const size_t index = optimizer_.add_tensor_raw(p.data, g.data, p.numel);
    owners_.resize(optimizer_.tensor_count());
    owners_[index] = {p.owner, p.array, g.owner, g.array};
    return index;
  }

  size_t add_owned(int64_t numel) {
    check_idle();
    if (numel <= 0) throw UserError("a tensor needs at least one element, not " + std::to_string(numel));
    const size_t index = optimizer_.add_tensor(numel);
    owners_.resize(optimizer_.tensor_count());
    return index;
  }

  void set_buffers(size_t tensor, py::handle param, py::handle grad) {
    check_idle();
    check_tensor(tensor);
    Borrowed p = borrow_array(param, true, "param");
    Borrowed g = borrow_array(grad, false, "grad");
    check_place(p, "param");
    check_place(g, "grad");
    check_element_type(p, optimizer_.storage("param"), "param");
    check_element_type(g, optimizer_.storage("grad"), "grad");
    const int64_t numel = optimizer_.numel(tensor);
    if (p.numel != numel || g.numel != numel) {
      throw UserError("tensor " + std::to_string(tensor) + " has " + std::to_string(numel) +
                      " elements; param has " + std::to_string(p.numel) + " and grad " +
                      std::to_string(g.numel));
    }
    optimizer_.set_buffers_raw(tensor, p.data, g.data);
    owners_[tensor] = {p.owner, p.array, g.owner, g.array};
  }

  // Raw addresses, for fuseopt.torch, which checks dtype (against storage()), layout and
  // device itself and keeps the tensors alive (they belong to the model and to torch's .grad).
  size_t add_address(uintptr_t param, uintptr_t grad, int64_t numel) {
    check_idle();
    if (param == 0 || grad == 0) throw UserError("null tensor address");
    if (numel <= 0) throw UserError("a tensor needs at least one element");
    const size_t index = optimizer_.add_tensor_raw(reinterpret_cast<void*>(param),
                                                   reinterpret_cast<const void*>(grad), numel);
    owners_.resize(optimizer_.tensor_count());
    return index;
  }

  void set_addresses(size_t tensor, uintptr_t param, uintptr_t grad) {
    check_idle();
    check_tensor(tensor);
    if (param == 0 || grad == 0) throw UserError("null tensor address");
    optimizer_.set_buffers_raw(tensor, reinterpret_cast<void*>(param),
                               reinterpret_cast<const void*>(grad));
    owners_[tensor] = {};
  }

  void check_tensor(size_t tensor) const {
    check_idle();
    if (tensor >= optimizer_.tensor_count()) {
      throw py::index_error("tensor " + std::to_string(tensor) + " out of range (the group has " +
                            std::to_string(optimizer_.tensor_count()) + ")");
    }
  }

 private:
  struct Owners {
    py::object param_owner, param, grad_owner, grad;
  };
  KernelPtr kernel_;
  Optimizer optimizer_;
  std::vector<Owners> owners_;
  bool stepping_ = false;
};

/// A NumPy array over `data` that keeps `base` (the Python optimizer) alive.
py::array_t<float> view(float* data, int64_t numel, py::handle base, bool writable) {
  py::array_t<float> array({numel}, {static_cast<int64_t>(sizeof(float))}, data, base);
  if (!writable) array.attr("setflags")(py::arg("write") = false);
  return array;
}

/// A NumPy array over a buffer's host memory in its storage type: float32, float16, or
/// uint16 for bfloat16 (NumPy has no bfloat16; the words are its bits). Keeps `base` alive.
py::array storage_view(void* data, StorageType storage, int64_t numel, py::handle base) {
  const char* format = storage == StorageType::kF32   ? "f"
                       : storage == StorageType::kF16 ? "e"
                                                      : "H";
  const int64_t bytes = storage_type_bytes(storage);
  return py::array(py::dtype(format), {numel}, {bytes}, data, base);
}

std::vector<float> to_floats(const py::array_t<float, py::array::c_style | py::array::forcecast>& values,
                             int64_t numel, const std::string& what) {
  if (values.size() != numel) {
    throw UserError(what + " takes " + std::to_string(numel) + " values, not " +
                    std::to_string(values.size()));
  }
  return std::vector<float>(values.data(), values.data() + values.size());
}

py::array_t<float> to_array(const std::vector<float>& values) {
  py::array_t<float> array(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), array.mutable_data());
  return array;
}

// ---- Tuning ------------------------------------------------------------------------------

const char* outcome_name(autotune::KeyReport::Outcome outcome) {
  using Outcome = autotune::KeyReport::Outcome;
  switch (outcome) {
    case Outcome::kTuned: return "tuned";
    case Outcome::kAlreadyTuned: return "already_tuned";
    case Outcome::kTunedElsewhere: return "tuned_elsewhere";
    case Outcome::kNoValidConfig: return "no_valid_config";
  }
  return "tuned";
}

std::string spelling(const autotune::Config& config) {
  return config.empty() ? "" : autotune::cpu_spelling(config);
}

py::list tune(const std::string& name_or_path, const std::vector<int64_t>& sizes,
              double budget_seconds, const py::dict& options, int64_t tensors, bool force,
              const std::string& cpu_target) {
  const frontend::Rule rule = checked_rule(frontend::load_rule_source(name_or_path));
  const auto values = rule.resolve_options(option_strings(options));
  if (budget_seconds <= 0) throw UserError("budget must be a positive number of seconds");
  if (tensors < 1) throw UserError("tensors must be at least 1");
  autotune::TuneSettings settings;
  settings.sizes = sizes.empty() ? autotune::kDefaultTuneSizes : sizes;
  for (int64_t size : settings.sizes) {
    if (size < tensors) {
      throw UserError("size " + std::to_string(size) + " cannot be split into " +
                      std::to_string(tensors) + " tensors");
    }
  }
  settings.tensors = tensors;
  settings.budget_seconds = budget_seconds;
  settings.force = force;
  settings.cpu_target = cpu_target;
  std::vector<autotune::KeyReport> reports;
  {
    py::gil_scoped_release release;
    const ir::Kernel kernel = rule.compile(values);
    reports = autotune::default_kernel_store().tune_cpu(kernel, settings);
  }
  py::list out;
  for (const autotune::KeyReport& k : reports) {
    py::dict d;
    d["rule"] = rule.name();
    d["size"] = k.size;
    d["problem_key"] = k.problem_key;
    d["outcome"] = outcome_name(k.outcome);
    d["default"] = spelling(k.default_config);
    d["winner"] = spelling(k.winner);
    d["default_ns"] = k.default_ns ? py::cast(*k.default_ns) : py::none();
    d["winner_ns"] = k.winner_ns ? py::cast(*k.winner_ns) : py::none();
    d["gain"] = k.gain;
    d["seconds"] = k.seconds;
    d["configs_measured"] = k.configs_measured;
    d["configs_rejected"] = k.configs_rejected;
    d["saved"] = k.saved;
    d["message"] = k.message;
    out.append(d);
  }
  return out;
}

// ---- Packs -------------------------------------------------------------------------------

py::dict binary_dict(const pack::BinaryEntry& b) {
  py::dict d;
  d["rule"] = b.rule;
  d["config"] = b.config;
  d["options"] = b.options;
  d["target"] = b.target;
  d["kind"] = b.kind;
  d["backend_target"] = b.backend_target;
  d["name"] = b.name;
  d["schedule"] = b.schedule;
  d["chunk_elements"] = b.chunk_elements;
  d["size"] = b.size;
  d["sha256"] = b.sha256;
  return d;
}

// ---- Exceptions --------------------------------------------------------------------------

/// A new exception class `fuseopt.<name>` deriving from every class in `bases`.
py::object make_exception(py::module_& m, const char* name, std::vector<py::handle> bases,
                          const char* doc) {
  py::tuple base_tuple(bases.size());
  for (size_t i = 0; i < bases.size(); ++i) base_tuple[i] = py::reinterpret_borrow<py::object>(bases[i]);
  const std::string qualified = std::string("fuseopt.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base_tuple.ptr(), nullptr);
  if (type == nullptr) throw py::error_already_set();
  py::object object = py::reinterpret_steal<py::object>(type);
  m.attr(name) = object;
  return object;
}

}  // namespace
}  // namespace fuseopt::python

PYBIND11_MODULE(_fuseopt, m) {
  using namespace fuseopt;          // NOLINT: the module body names the whole C++ API
  using namespace fuseopt::python;  // NOLINT
  m.doc() = "fuseopt's C++ API (use the fuseopt package, which re-exports it).";
  m.attr("__version__") = FUSEOPT_VERSION;

  // Exceptions. The classes live for the whole process; the translator reaches them through
  // these statics (pybind11 registers translators once per process).
  static py::object error = make_exception(m, "Error", {PyExc_Exception},
                                           "Base class of fuseopt's errors.");
  static py::object user_error = make_exception(
      m, "UserError", {error, PyExc_ValueError},
      "A problem with what was given: a bad rule, file, argument, array or state.");
  static py::object rule_error = make_exception(
      m, "RuleError", {user_error},
      "A rule with errors. str() is every diagnostic as `fuseopt check` prints it; "
      ".diagnostics lists them (Diagnostic objects).");
  static py::object environment_error = make_exception(
      m, "EnvironmentError", {error, PyExc_RuntimeError},
      "Something this machine lacks: a GPU, driver or NVRTC, a linker, a writable cache.");
  static py::object internal_error = make_exception(
      m, "InternalError", {error, PyExc_RuntimeError},
      "A broken invariant inside fuseopt: always a bug in fuseopt.");

  py::register_exception_translator([](std::exception_ptr thrown) {
    try {
      if (thrown) std::rethrow_exception(thrown);
    } catch (const RuleError& e) {
      py::object exception = rule_error(e.what());
      exception.attr("diagnostics") = py::cast(e.diagnostics());
      PyErr_SetObject(rule_error.ptr(), exception.ptr());
    } catch (const UserError& e) {
      PyErr_SetString(user_error.ptr(), e.what());
    } catch (const EnvironmentError& e) {
      PyErr_SetString(environment_error.ptr(), e.what());
    } catch (const InternalError& e) {
      PyErr_SetString(internal_error.ptr(), e.what());
    }
  });

  // ---- Rules and checking ----------------------------------------------------------------

  py::class_<DiagnosticInfo>(m, "Diagnostic", "One error, warning or note about a rule.")
      .def_readonly("severity", &DiagnosticInfo::severity, "'error', 'warning' or 'note'")
      .def_readonly("file", &DiagnosticInfo::file, "the rule's file name (<builtin>/adam.opt for built-ins)")
      .def_readonly("line", &DiagnosticInfo::line, "1-based")
      .def_readonly("column", &DiagnosticInfo::column, "1-based, in bytes")
      .def_readonly("message", &DiagnosticInfo::message)
      .def_readonly("rendered", &DiagnosticInfo::rendered,
                    "file:line:col: severity: message, the source line and a caret")
      .def("__str__", [](const DiagnosticInfo& d) { return d.rendered; })
      .def("__repr__", [](const DiagnosticInfo& d) {
        return "<Diagnostic " + d.file + ":" + std::to_string(d.line) + ":" +
               std::to_string(d.column) + ": " + d.severity + ": " + d.message + ">";
      });

  py::class_<frontend::Rule>(m, "Rule", "A parsed and checked rule and what it declares.")
      .def(py::init([](const std::string& name_or_path) {
             return checked_rule(frontend::load_rule_source(name_or_path));
           }),
           py::arg("name_or_path"),
           "Loads a built-in rule by name or a rule file by path (anything with a '/' or "
           "ending in .opt) and checks it; raises RuleError with the diagnostics.")
      .def_static("from_text",
                  [](const std::string& text, const std::string& name) {
                    return checked_rule(text_source(text, name));
                  },
                  py::arg("text"), py::arg("name") = "<text>",
                  "A rule from source text; `name` is used in messages.")
      .def_property_readonly("name", &frontend::Rule::name)
      .def_property_readonly("summary", &frontend::Rule::summary)
      .def_property_readonly("source", [](const frontend::Rule& r) { return r.source().text(); })
      .def_property_readonly(
          "hypers",
          [](const frontend::Rule& r) {
            py::dict d;
            for (const auto& h : r.hypers()) d[py::str(h.name)] = h.default_value;
            return d;
          },
          "{name: default} in declaration order")
      .def_property_readonly(
          "options",
          [](const frontend::Rule& r) {
            py::dict d;
            for (const auto& o : r.options()) {
              d[py::str(o.name)] = o.is_bool ? py::object(py::bool_(o.default_value != 0))
                                             : py::object(py::int_(o.default_value));
            }
            return d;
          },
          "{name: default (bool or int)} in declaration order")
      .def_property_readonly(
          "states",
          [](const frontend::Rule& r) {
            py::dict d;
            for (const auto& s : r.states()) {
              d[py::str(s.name)] = s.when.empty() ? py::object(py::none()) : py::object(py::str(s.when));
            }
            return d;
          },
          "{name: the option the state needs, or None}")
      .def_property_readonly(
          "scalars",
          [](const frontend::Rule& r) {
            py::dict d;
            for (const auto& s : r.scalars()) d[py::str(s.name)] = s.init;
            return d;
          },
          "{name: initial value} of the scalar states")
      .def("__repr__", [](const frontend::Rule& r) { return "<fuseopt.Rule " + r.name() + ">"; });

  py::class_<CheckResult>(m, "CheckResult", "What checking one rule found.")
      .def_readonly("name", &CheckResult::name)
      .def_readonly("ok", &CheckResult::ok, "True when the rule has no errors")
      .def_readonly("errors", &CheckResult::errors)
      .def_readonly("warnings", &CheckResult::warnings)
      .def_readonly("diagnostics", &CheckResult::diagnostics)
      .def_readonly("rendered", &CheckResult::rendered,
                    "every diagnostic as `fuseopt check` prints them")
      .def_readonly("rule", &CheckResult::rule, "the Rule, or None when it has errors")
      .def("__bool__", [](const CheckResult& r) { return r.ok; })
      .def("__repr__", [](const CheckResult& r) {
        return "<CheckResult " + r.name + ": " + (r.ok ? "ok" : std::to_string(r.errors) + " errors") +
               ", " + std::to_string(r.warnings) + " warnings>";
      });

  m.def("rules", [] {
    std::vector<std::string> names;
    for (const rules::BuiltinRule& rule : rules::builtin_rules()) names.push_back(rule.name);
    return names;
  }, "The names of the built-in rules, sorted.");
  m.def("rule_source",
        [](const std::string& name_or_path) { return frontend::load_rule_source(name_or_path)->text(); },
        py::arg("name_or_path"), "The text of a built-in rule or rule file.");
  m.def("check",
        [](const std::string& name_or_path, bool every_option_combination) {
          return check_source(frontend::load_rule_source(name_or_path), every_option_combination);
        },
        py::arg("name_or_path"), py::arg("every_option_combination") = true,
        "Checks a built-in rule or rule file, as `fuseopt check` does; returns a CheckResult "
        "(errors are in it, not raised). Raises UserError when the rule cannot be loaded.");
  m.def("check_text",
        [](const std::string& text, const std::string& name, bool every_option_combination) {
          return check_source(text_source(text, name), every_option_combination);
        },
        py::arg("text"), py::arg("name") = "<text>", py::arg("every_option_combination") = true,
        "Checks rule source text; returns a CheckResult.");

  // ---- Compiling ---------------------------------------------------------------------------

  py::class_<runtime::CompiledKernel, std::shared_ptr<runtime::CompiledKernel>>(
      m, "Kernel", "A rule compiled for one backend with fixed option values. Immutable; "
                   "shared by the Optimizers built from it.")
      .def_readonly("name", &runtime::CompiledKernel::name,
                    "spells the configuration, e.g. adam_amsgrad0_maximize0_cpu_v8_u2_c16384")
      .def_readonly("backend", &runtime::CompiledKernel::backend, "'interp', 'cpu' or 'cuda'")
      .def_readonly("device_memory", &runtime::CompiledKernel::device_memory,
                    "True when its Optimizers take CUDA device memory")
      .def_readonly("chunk_elements", &runtime::CompiledKernel::chunk_elements)
      .def_readonly("decides_on_device", &runtime::CompiledKernel::decides_on_device,
                    "True when its Optimizers can decide loss scaling and clipping on the device "
                    "(Optimizer.set_decide_on_device)")
      .def_property_readonly("config", [](const runtime::CompiledKernel& k) { return k.ir.config_name(); },
                             "the rule and option values, e.g. adam_amsgrad0_maximize0")
      .def_property_readonly(
          "storage",
          [](const runtime::CompiledKernel& k) {
            py::dict d;
            for (const ir::BufferDecl& b : k.ir.buffers) {
              d[py::str(b.name)] = std::string(storage_type_name(b.storage)) +
                                   (b.stochastic ? " stochastic" : "");
            }
            return d;
          },
          "{buffer: 'f32', 'bf16' or 'f16' (then ' stochastic' where stores round "
          "stochastically)} for param, grad and every state, in buffer order")
      .def("__repr__", [](const runtime::CompiledKernel& k) { return "<fuseopt.Kernel " + k.name + ">"; });

  m.def("compile",
        [](const std::string& name_or_path, const std::string& backend, py::dict options,
           const std::string& cpu_target, bool tuned, int64_t size_hint, int64_t tensor_count,
           std::map<std::string, std::string> storage, bool loss_scaling, bool clip_grad_norm) {
          const CompileOptions settings =
              compile_options(backend, options, cpu_target, tuned, size_hint, tensor_count,
                              {std::move(storage), loss_scaling, clip_grad_norm});
          checked_rule(frontend::load_rule_source(name_or_path));  // diagnostics as RuleError
          py::gil_scoped_release release;
          return std::const_pointer_cast<runtime::CompiledKernel>(compile_rule(name_or_path, settings));
        },
        py::arg("rule"), py::kw_only(), py::arg("backend") = "auto", py::arg("options") = py::dict(),
        py::arg("cpu_target") = "host", py::arg("tuned") = true, py::arg("size_hint") = 0,
        py::arg("tensor_count") = 1, py::arg("storage") = std::map<std::string, std::string>(),
        py::arg("loss_scaling") = false, py::arg("clip_grad_norm") = false,
        "Compiles a built-in rule or rule file for a backend ('interp', 'cpu', 'cuda', "
        "'auto'). `options` sets option values (bool or int). `storage` maps buffers to "
        "'f32', 'bf16' or 'f16' (optionally ' stochastic'); `loss_scaling` and "
        "`clip_grad_norm` add the grad_scale and max_grad_norm hypers (docs/mixed-precision.md). "
        "Kernels are cached in the process and binaries on disk. Raises RuleError, UserError, "
        "or EnvironmentError (no GPU, ...).");
  m.def("compile_text",
        [](const std::string& text, const std::string& name, const std::string& backend,
           py::dict options, const std::string& cpu_target, bool tuned, int64_t size_hint,
           int64_t tensor_count, std::map<std::string, std::string> storage, bool loss_scaling,
           bool clip_grad_norm) {
          const CompileOptions settings =
              compile_options(backend, options, cpu_target, tuned, size_hint, tensor_count,
                              {std::move(storage), loss_scaling, clip_grad_norm});
          checked_rule(text_source(text, name));
          py::gil_scoped_release release;
          return std::const_pointer_cast<runtime::CompiledKernel>(
              compile_rule_text(text, settings, name));
        },
        py::arg("text"), py::kw_only(), py::arg("name") = "<text>", py::arg("backend") = "auto",
        py::arg("options") = py::dict(), py::arg("cpu_target") = "host", py::arg("tuned") = true,
        py::arg("size_hint") = 0, py::arg("tensor_count") = 1,
        py::arg("storage") = std::map<std::string, std::string>(), py::arg("loss_scaling") = false,
        py::arg("clip_grad_norm") = false,
        "compile() for rule source text; `name` is used in messages.");
  m.def("clear_compiled_kernels", &clear_compiled_kernels,
        "Forgets the kernels compiled in this process (Optimizers keep theirs).");
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason,
        "Why the cuda backend cannot run in this process, or '' when it can.");
  m.def("cuda_device_ordinal", [] { return runtime::CudaDriver::get().device().ordinal; },
        "The CUDA device the cuda backend runs on (0 or $FUSEOPT_CUDA_DEVICE); "
        "EnvironmentError where it cannot run.");
  m.def("resolve_backend",
        [](const std::string& backend) { return std::string(backend_name(resolve_backend(parse_backend(backend)))); },
        py::arg("backend"), "The backend that `backend` runs on here ('auto' -> 'cuda' or 'cpu').");

  // ---- The Optimizer -----------------------------------------------------------------------

  py::class_<PyOptimizer>(m, "Optimizer",
                          "One compiled rule stepping a group of tensors (float32, or the "
                          "kernel's bf16/f16 storage) whose memory it borrows (no copies). "
                          "Not thread-safe.")
      .def(py::init([](std::shared_ptr<runtime::CompiledKernel> kernel,
                       std::map<std::string, double> hypers, int threads) {
             if (!kernel) throw UserError("kernel is None; compile one with fuseopt.compile()");
             return std::make_unique<PyOptimizer>(std::move(kernel), hypers, threads);
           }),
           py::arg("kernel"), py::arg("hypers") = std::map<std::string, double>(),
           py::arg("threads") = 0,
           "An optimizer applying `kernel` (from compile()). Hypers start at the rule's "
           "defaults, then `hypers`. threads=0 uses every core.")
      .def_property_readonly("kernel", [](const PyOptimizer& o) {
        return std::const_pointer_cast<runtime::CompiledKernel>(o.kernel());
      })
      .def("add_tensor",
           [](PyOptimizer& o, py::handle param, py::handle grad) { return o.add(param, grad); },
           py::arg("param"), py::arg("grad"),
           "Adds a tensor whose memory the caller owns: `param` (written in place) and `grad`, "
           "C-contiguous arrays of equal size in the kernel's storage types (storage('param'), "
           "storage('grad')): float32, float16, or bfloat16 (torch.bfloat16, or uint16 NumPy "
           "arrays of its bits); NumPy, torch, anything with the buffer protocol or DLPack; "
           "CUDA tensors for a cuda kernel. The optimizer keeps references to them. Returns the "
           "tensor's index.")
      .def("add_tensor", [](PyOptimizer& o, int64_t numel) { return o.add_owned(numel); },
           py::arg("numel"),
           "Adds a tensor whose zeroed param and grad the optimizer allocates.")
      .def("set_buffers",
           [](PyOptimizer& o, size_t tensor, py::handle param, py::handle grad) {
             o.set_buffers(tensor, param, grad);
           },
           py::arg("tensor"), py::arg("param"), py::arg("grad"),
           "Points a tensor at new arrays of the same size; its states are kept.")
      .def("_add_tensor_address", &PyOptimizer::add_address, py::arg("param"), py::arg("grad"),
           py::arg("numel"),
           "Internal (fuseopt.torch): adds a tensor by raw addresses the caller keeps valid.")
      .def("_set_addresses", &PyOptimizer::set_addresses, py::arg("tensor"), py::arg("param"),
           py::arg("grad"), "Internal (fuseopt.torch): set_buffers by raw addresses.")
      .def("storage",
           [](const PyOptimizer& o, const std::string& buffer) {
             return std::string(storage_type_name(o.get().storage(buffer)));
           },
           py::arg("buffer"),
           "How a buffer ('param', 'grad' or a state) is stored: 'f32', 'bf16' or 'f16'. "
           "add_tensor() and set_buffers() take param and grad memory of that type.")
      .def("data",
           [](py::object self, size_t t, const std::string& buffer) {
             PyOptimizer& o = self.cast<PyOptimizer&>();
             o.check_tensor(t);
             if (o.device_memory()) {
               throw UserError("data(): this optimizer's kernel (" + o.kernel()->backend +
                               ") keeps its buffers in device memory; use read_param(), "
                               "read_state() and their write_*() counterparts");
             }
             const StorageType storage = o.get().storage(buffer);
             return storage_view(o.get().data(t, buffer), storage, o.get().numel(t), self);
           },
           py::arg("tensor"), py::arg("buffer"),
           "A writable NumPy view of a buffer ('param', 'grad' or a state) in its storage type "
           "(host kernels): float32, float16, or uint16 holding bfloat16 bits. "
           "param(), grad() and state() are the float32 views of f32 buffers.")
      .def_property_readonly("tensor_count", [](const PyOptimizer& o) { return o.get().tensor_count(); })
      .def("__len__", [](const PyOptimizer& o) { return o.get().tensor_count(); })
      .def("numel", [](const PyOptimizer& o, size_t t) { o.check_tensor(t); return o.get().numel(t); },
           py::arg("tensor"))
      .def("param",
           [](py::object self, size_t t) {
             PyOptimizer& o = self.cast<PyOptimizer&>();
             o.check_tensor(t);
             auto span = o.get().param(t);
             return view(span.data(), static_cast<int64_t>(span.size()), self, true);
           },
           py::arg("tensor"),
           "A writable float32 NumPy view of an f32 parameter (host kernels; data() for bf16/f16, "
           "read_param() for any).")
      .def("grad",
           [](py::object self, size_t t) {
             PyOptimizer& o = self.cast<PyOptimizer&>();
             o.check_tensor(t);
             auto span = o.get().grad(t);
             return view(span.data(), static_cast<int64_t>(span.size()), self, true);
           },
           py::arg("tensor"), "A float32 NumPy view of an f32 gradient (host kernels).")
      .def("read_param", [](const PyOptimizer& o, size_t t) { o.check_tensor(t); return to_array(o.get().read_param(t)); },
           py::arg("tensor"), "A copy of the parameter, for host and device kernels.")
      .def("write_param",
           [](PyOptimizer& o, size_t t, py::array_t<float, py::array::c_style | py::array::forcecast> v) {
             o.check_tensor(t);
             const auto values = to_floats(v, o.get().numel(t), "write_param");
             o.get().write_param(t, values);
           },
           py::arg("tensor"), py::arg("values"))
      .def("read_grad", [](const PyOptimizer& o, size_t t) { o.check_tensor(t); return to_array(o.get().read_grad(t)); },
           py::arg("tensor"))
      .def("write_grad",
           [](PyOptimizer& o, size_t t, py::array_t<float, py::array::c_style | py::array::forcecast> v) {
             o.check_tensor(t);
             const auto values = to_floats(v, o.get().numel(t), "write_grad");
             o.get().write_grad(t, values);
           },
           py::arg("tensor"), py::arg("values"))
      .def("step",
           [](PyOptimizer& o) {
             bool taken = true;
             o.run_released([&](Optimizer& c) { taken = c.step(); });
             return taken;
           },
           "One step for every enabled tensor (the GIL is released meanwhile). Returns False, "
           "changing nothing, when loss scaling found an inf or NaN gradient.")
      .def("last_grad_norm", [](const PyOptimizer& o) { return o.get().last_grad_norm(); },
           "The global norm of the unscaled gradients of the last step (kernels compiled with "
           "loss_scaling or clip_grad_norm).")
      .def("last_step_skipped", [](const PyOptimizer& o) { return o.get().last_step_skipped(); },
           "Whether the last step was skipped by loss scaling; with set_decide_on_device(True) "
           "it waits for that step's own kernels if needed.")
      .def("set_decide_on_device",
           [](PyOptimizer& o, bool on) {
             o.check_idle();
             o.get().set_decide_on_device(on);
           },
           py::arg("on"),
           "Device kernels with loss scaling or clipping: decide each step on the device, "
           "with no host round trip; step() then returns True once queued and "
           "last_step_skipped() tells the outcome.")
      .def_property_readonly("decides_on_device",
                             [](const PyOptimizer& o) { return o.get().decides_on_device(); })
      .def("set_device_loss_scale",
           [](PyOptimizer& o, uintptr_t grad_scale, uintptr_t found_inf) {
             o.check_idle();
             o.get().set_device_loss_scale(reinterpret_cast<const void*>(grad_scale),
                                           reinterpret_cast<void*>(found_inf));
           },
           py::arg("grad_scale"), py::arg("found_inf"),
           "With set_decide_on_device(True): the addresses of device floats (0 for none) read "
           "instead of the grad_scale and found_inf hypers, e.g. a GradScaler's tensors' "
           "data_ptr(); found_inf is set to 1 when a step is skipped.")
      .def("check_gradients_on_device",
           [](PyOptimizer& o) { o.run_released([](Optimizer& c) { c.check_gradients_on_device(); }); },
           "With a device found_inf: queues the check of the current gradients (no step), so "
           "that an inf or NaN sets found_inf and every optimizer sharing it skips.")
      .def("synchronize", [](PyOptimizer& o) { o.run_released([](Optimizer& c) { c.synchronize(); }); },
           "Waits for the device's queued steps (nothing to wait for on the host).")
      .def("step_count", [](const PyOptimizer& o, size_t t) { o.check_tensor(t); return o.get().step_count(t); },
           py::arg("tensor") = 0, "Steps the tensor has taken.")
      .def("set_step_count",
           [](PyOptimizer& o, size_t t, int64_t steps) { o.check_tensor(t); o.get().set_step_count(t, steps); },
           py::arg("tensor"), py::arg("steps"),
           "Sets the steps taken (the next step runs with t = steps + 1), for restoring state.")
      .def("enabled", [](const PyOptimizer& o, size_t t) { o.check_tensor(t); return o.get().enabled(t); },
           py::arg("tensor"))
      .def("set_enabled",
           [](PyOptimizer& o, size_t t, bool enabled) { o.check_tensor(t); o.get().set_enabled(t, enabled); },
           py::arg("tensor"), py::arg("enabled"),
           "A disabled tensor is skipped by step(): no state init, no step count, no memory touched.")
      .def("set_hyper", [](PyOptimizer& o, const std::string& n, double v) { o.get().set_hyper(n, v); },
           py::arg("name"), py::arg("value"), "Changes a hyper for the next steps (never recompiles).")
      .def("hyper", [](const PyOptimizer& o, const std::string& n) { return o.get().hyper(n); }, py::arg("name"))
      .def_property_readonly("hyper_names", [](const PyOptimizer& o) { return o.get().hyper_names(); })
      .def_property_readonly("hypers", [](const PyOptimizer& o) {
        std::map<std::string, double> out;
        for (const std::string& n : o.get().hyper_names()) out[n] = o.get().hyper(n);
        return out;
      }, "{name: value} of every hyper")
      .def_property_readonly("state_names", [](const PyOptimizer& o) { return o.get().state_names(); },
                             "the tensor states that exist under the kernel's options")
      .def_property_readonly("scalar_names", [](const PyOptimizer& o) { return o.get().scalar_names(); })
      .def("state",
           [](py::object self, size_t t, const std::string& name) {
             PyOptimizer& o = self.cast<PyOptimizer&>();
             o.check_tensor(t);
             auto span = o.get().state(t, name);
             return view(span.data(), static_cast<int64_t>(span.size()), self, true);
           },
           py::arg("tensor"), py::arg("name"),
           "A writable float32 NumPy view of an f32 state (host kernels; data() for bf16/f16, "
           "read_state() for any). Writing it before the tensor's first step replaces the "
           "rule's initial value.")
      .def("read_state",
           [](const PyOptimizer& o, size_t t, const std::string& name) {
             o.check_tensor(t);
             return to_array(o.get().read_state(t, name));
           },
           py::arg("tensor"), py::arg("name"), "A copy of a state, for host and device kernels.")
      .def("write_state",
           [](PyOptimizer& o, size_t t, const std::string& name,
              py::array_t<float, py::array::c_style | py::array::forcecast> v) {
             o.check_tensor(t);
             const auto values = to_floats(v, o.get().numel(t), "state '" + name + "'");
             o.get().write_state(t, name, values);
           },
           py::arg("tensor"), py::arg("name"), py::arg("values"),
           "Replaces a state's values (copied), for host and device kernels.")
      .def("scalar", [](const PyOptimizer& o, size_t t, const std::string& n) { o.check_tensor(t); return o.get().scalar(t, n); },
           py::arg("tensor"), py::arg("name"))
      .def("set_scalar",
           [](PyOptimizer& o, size_t t, const std::string& n, double v) { o.check_tensor(t); o.get().set_scalar(t, n, v); },
           py::arg("tensor"), py::arg("name"), py::arg("value"))
      .def("save", [](const PyOptimizer& o, const std::string& path) { o.get().save(path); }, py::arg("path"),
           "Writes every tensor's states, scalars, step count and the hypers (not the params).")
      .def("load", [](PyOptimizer& o, const std::string& path) { o.get().load(path); }, py::arg("path"),
           "Restores what save() wrote into an optimizer of the same kernel and tensor sizes.")
      .def_property("threads", [](const PyOptimizer& o) { return o.get().threads(); },
                    [](PyOptimizer& o, int threads) { o.get().set_threads(threads); })
      .def("__repr__", [](const PyOptimizer& o) {
        return "<fuseopt.Optimizer " + o.kernel()->name + ", " +
               std::to_string(o.get().tensor_count()) + " tensors>";
      });

  // ---- Tuning and packs --------------------------------------------------------------------

  m.def("tune", &tune, py::arg("rule"), py::kw_only(), py::arg("sizes") = std::vector<int64_t>(),
        py::arg("budget") = 20.0, py::arg("options") = py::dict(), py::arg("tensors") = 1,
        py::arg("force") = false, py::arg("cpu_target") = "host",
        "Tunes a rule's CPU kernel on this machine for each size (default 64Ki, 1Mi, 16Mi "
        "elements), `budget` seconds per size, and records the winners in the cache "
        "(as `fuseopt tune`). Returns one dict per size.");

  py::class_<pack::PackReader>(m, "Pack", "A kernel pack, opened read-only (docs/packs.md).")
      .def(py::init<const std::string&, int64_t>(), py::arg("path"), py::arg("expected_abi") = 0)
      .def_property_readonly("path", &pack::PackReader::path)
      .def_property_readonly("manifest", &pack::PackReader::manifest)
      .def("rules",
           [](pack::PackReader& p) {
             std::vector<std::string> names;
             for (const pack::RuleEntry& r : p.rules()) names.push_back(r.name);
             return names;
           },
           "The names of the rules the pack holds.")
      .def("rule_source",
           [](pack::PackReader& p, const std::string& name) {
             for (const pack::RuleEntry& r : p.rules()) {
               if (r.name == name) return r.source;
             }
             throw UserError("pack " + p.path() + " has no rule '" + name + "'");
           },
           py::arg("name"))
      .def("binaries",
           [](pack::PackReader& p) {
             py::list out;
             for (const pack::BinaryEntry& b : p.binaries()) out.append(binary_dict(b));
             return out;
           },
           "One dict per binary: rule, config, options, target, kind, schedule, size, sha256...")
      .def("verify", &pack::PackReader::verify,
           "Every check `fuseopt pack verify` makes; an empty list when the pack is sound.")
      .def("content_digest", &pack::PackReader::content_digest)
      .def("load_kernel",
           [](pack::PackReader& p, const std::string& rule, py::dict options) {
             const auto values = option_strings(options);
             py::gil_scoped_release release;
             return std::const_pointer_cast<runtime::CompiledKernel>(
                 pack::load_cpu_kernel_from_pack(p, rule, values).kernel);
           },
           py::arg("rule"), py::arg("options") = py::dict(),
           "The best CPU kernel of `rule` with `options` that runs here, loaded from the pack "
           "with no compiler.");
}
